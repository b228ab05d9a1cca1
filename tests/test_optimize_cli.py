"""``lstmbt optimize`` from the command line: a tiny LSTM search on the shipped BTC 1h data is killed with
SIGKILL mid-search and resumed; the winner's best.toml runs with ``lstmbt backtest``; bad [search] entries are one
line and exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from backtests.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_LSTM = """name = "tiny-lstm"
strategy = "lstm"
seed = 7

[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2023-02-01"
end = "2023-02-28"

[model]
window = 8
hidden = 8
train_bars = 400
val_bars = 120
epochs = 1
patience = 1

[search]
"model.hidden" = { choices = [4, 8] }
"model.window" = { choices = [8, 16] }
"model.cell" = { choices = ["lstm", "gru"] }
"model.lr" = { type = "float", low = 1e-4, high = 1e-2, log = true }

[optimize]
trials = 2
folds = 2
"""


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path, monkeypatch):
    """Every search records its trials in the trial ledger: keep it in the test's folder."""
    monkeypatch.setenv("LSTMBT_LEDGER", str(tmp_path / "ledger.jsonl"))


def _write(tmp_path: Path, text: str, name: str = "search.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_killed_lstm_search_resumes_and_its_winner_runs_as_a_backtest(tmp_path):
    config = _write(tmp_path, TINY_LSTM)
    out, cache = tmp_path / "study", tmp_path / "models"
    cmd = [sys.executable, "-m", "backtests.cli", "optimize", "--config", str(config), "--out", str(out),
           "--cache-dir", str(cache), "--workers", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not list((out / "trials").glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)                       # mid-search: one trial done, the next one running
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = sorted(p.name for p in (out / "trials").glob("*.npz"))
    assert len(first) == 1

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming" in again.stdout
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 2
    assert {f"{n:05d}.npz" for n in trials.loc[trials["state"] == "COMPLETE", "number"]} >= set(first)
    cut = trials[trials["error"].fillna("").str.startswith("cut off")]
    assert len(cut) <= 1 and (trials["retry_of"].dropna().astype(int).tolist() == cut["number"].tolist())
    for name in ("report.html", "best.toml", "trials.csv", "summary.json", "history.png", "pbo.png"):
        assert (out / name).stat().st_size > 0
    assert "PBO" in again.stdout and "final span" in again.stdout

    best = tomllib.loads((out / "best.toml").read_text())
    assert set(best["model"]) >= {"hidden", "window", "cell", "lr"}
    assert main(["backtest", "--config", str(out / "best.toml"), "--out", str(tmp_path / "winner"),
                 "--cache-dir", str(cache), "--baselines", ""]) == 0
    assert (tmp_path / "winner" / "report.html").exists()


@pytest.mark.parametrize("entry, message", [
    ('"model.hiden" = { choices = [4, 8] }', "the model has no field 'hiden'"),
    ('"model.window" = { type = "float", low = 8.0, high = 32.0 }', "takes int values"),
    ('"params.fast" = { type = "int", low = 5, high = 30 }', "has no parameter 'fast'"),
    ('"model.lr" = { type = "float", low = 0.0, high = 0.1, log = true }', "log = true needs low > 0"),
    ('"model.cell" = { choices = ["lstm", 3] }', "must all be strings"),
    ('"model.hidden" = { type = "int", low = 64, high = 16 }', "low must be below high"),
    ('"model.hidden" = { type = "int", low = 16, high = 64, stride = 16 }', "unknown key(s) stride"),
    ('"hidden" = { choices = [4, 8] }', 'must be "params.<name>" or "model.<field>"'),
    ('"model.hidden" = { type = "int", low = 0, high = 64 }', "hidden must be a whole number >= 1"),
    ('"model.cell" = { choices = ["lstm", "rnn"] }', "unknown cell 'rnn'"),
    ('"model.label_cost" = { choices = ["wide", "narrow"] }', "takes float or int values, the search draws str"),
    ('"model.label_cost" = { type = "float", low = -0.01, high = 0.01 }', "label_cost must be a log return"),
    ('"model.kind" = { choices = ["lstm", "xgboost"] }', "unknown model kind 'xgboost'"),
])
def test_a_bad_search_entry_is_one_line_and_exit_2(tmp_path, capsys, entry, message):
    text = TINY_LSTM.split("[search]")[0] + "[search]\n" + entry + "\n"
    config = _write(tmp_path, text)
    assert main(["optimize", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_bad_optimize_settings_are_one_line_and_exit_2(tmp_path, capsys):
    config = _write(tmp_path, TINY_LSTM)
    for flags, message in ((["--objectives=-sharpe"], "higher is better"),
                           (["--final-fraction", "1.5"], "final_fraction must be a number in [0, 1)"),
                           (["--study", "../evil"], "letters, digits")):
        assert main(["optimize", "--config", str(config), "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    config = _write(tmp_path, TINY_LSTM.replace("folds = 2", "folds = 2\ncpcv_refit = \"yes\""), "refit.toml")
    assert main(["optimize", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cpcv_refit must be true or false" in err, err
