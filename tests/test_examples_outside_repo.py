"""The three examples as a user runs them: copied into a folder outside the repository and run there through the
real ``lstmbt`` command line, in a fresh process each time (``backtest``, ``report --rerun``, ``compare`` on a
process pool, ``check-lookahead``), and from Python through ``Backtest(...)``.

- ``rsi_long_short.py``: ``RsiLongShort``, a plain indicator strategy;
- ``lstm_trend.py``: ``LSTMTrend``, a user strategy asking the model every bar, with a trend filter;
- ``my_model.py``: ``MyModel``, a user model plugged in with ``[model] kind = "my_model.py:MyModel"``.

One config runs all three on the command line (LSTMTrend asks MyModel there; from Python it asks the LSTM). Spans and models are tiny (six days of hours, 600 training bars, one epoch) so the module stays fast.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "strategies" / "examples"
TINY = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
DATA = """
[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2024-03-01"
end = "2024-03-06"
"""
MODEL = "\n".join(["[model]", *(f"{k} = {v}" for k, v in TINY.items())])
USER_TOML = f"""# LSTMTrend asks the model strategy's model every bar; here that model is the user's MyModel
name = "examples"
strategy = "lstm_trend.py:LSTMTrend"
baselines = ["rsi_long_short.py:RsiLongShort", "lstm"]
{DATA}
{MODEL}
kind = "my_model.py:MyModel"

[model.options]
hidden = 4
steps = 50
"""
NAMES = ("lstm_trend.py:LSTMTrend", "rsi_long_short.py:RsiLongShort", "lstm")


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A user's folder outside the repo (the examples and two configs), and a runner of ``lstmbt`` from there."""
    home = tmp_path_factory.mktemp("user")
    assert ROOT not in home.parents
    for name in ("rsi_long_short.py", "lstm_trend.py", "my_model.py"):
        shutil.copy(EXAMPLES / name, home / name)
    (home / "user.toml").write_text(USER_TOML)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(home / "cache"),
           "LSTMBT_DATA_DIR": str(home / "store"), "LSTMBT_LEDGER": str(home / "ledger.jsonl")}

    def lstmbt(*args: str, expect: int = 0) -> str:
        proc = subprocess.run([sys.executable, "-m", "backtests.cli", *args], cwd=home, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == expect, f"lstmbt {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    lstmbt.home = home
    return lstmbt


def results(folder: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((folder / "metrics.json").read_text())["results"]}


def test_backtest_then_rerun_reproduces_the_three_examples_byte_for_byte(user):
    out = user("backtest", "--config", "user.toml", "--out", "run")
    assert "model: user model my_model.py:MyModel" in out and "my_model step 50" in out
    assert set(NAMES) <= set(results(user.home / "run"))
    manifest = json.loads((user.home / "run" / "manifest.json").read_text())
    assert {c["kind"] for c in manifest["checkpoints"]} == {"my_model.py:MyModel"}
    assert {Path(s["file"]).name for s in manifest["strategies"]} >= {"lstm_trend.py", "rsi_long_short.py"}
    assert "metrics.json: identical to the original" in user("report", "run", "--rerun", "--out", "run-again")


def test_compare_on_a_process_pool_runs_the_three_examples(user):
    out = user("compare", "--config", "user.toml", "--strategies", ",".join(NAMES), "--workers", "2",
               "--no-cell-reports", "--bootstrap", "100", "--out", "cmp")
    assert "3 of 3 cells ran (0 failed)" in out and "2 local worker(s)" in out
    for name in NAMES:
        assert f"{name} | span | BTC/USDT:USDT: ok" in out


def test_check_lookahead_passes_the_user_strategy_asking_the_user_model(user):
    # (the RSI example's audit runs in test_readme_snippets, as the README writes it)
    out = user("check-lookahead", "--config", "user.toml", "--bars", "3")
    assert "no lookahead found" in out and "truncated" in out and "lstm_trend.py:LSTMTrend" in out


def test_backtest_from_python_on_a_dataframe_and_the_report_reruns_from_the_saved_candles(user, monkeypatch, capsys):
    from backtests import Backtest, DataConfig
    from backtests.cli import main
    from data_feeds import load_market

    home = user.home
    monkeypatch.chdir(home)
    monkeypatch.syspath_prepend(str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("LSTMBT_LEDGER", str(home / "ledger.jsonl"))
    from lstm_trend import LSTMTrend
    from rsi_long_short import RsiLongShort

    candles = load_market("binanceusdm", "ETH/USDT:USDT", "1h", "2024-01-01", "2024-01-10").candles
    frame = candles.reset_index()                      # a user's frame: a timestamp column, OHLCV
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    run = Backtest(frame, RsiLongShort, symbol="ETH/USDT:USDT", params={"period": 10}).run()
    assert run.name == "RsiLongShort" and len(run.trades) > 0
    run.report(home / "frame")
    assert main(["report", "frame", "--rerun", "--out", "frame-again"]) == 0      # (in this process: faster)
    out = capsys.readouterr().out
    assert "metrics.json: identical to the original" in out and "saved candles" in out
    data = (home / "frame" / "input" / "candles.parquet")
    data.write_bytes(data.read_bytes()[:-8] + b"tampered")
    assert main(["report", "frame", "--rerun", "--out", "frame-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "candles.parquet" in err[0]

    # LSTMTrend and MyModel from Python, on the models the CLI runs cached: LSTMTrend never trades against the LSTM
    span = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")
    trend = Backtest(span, LSTMTrend, model=TINY, params={"trend": 12}).run()
    lstm = Backtest(span, "lstm", model=TINY).run()
    assert ((trend.target == 0) | (trend.target == lstm.target)).all() and (trend.target != lstm.target).any()
    mine = Backtest(span, "lstm", model={**TINY, "kind": "my_model.py:MyModel",
                                         "options": {"hidden": 4, "steps": 50}}).run()
    assert mine.models[0]["kind"] == "my_model.py:MyModel" and mine.predictions is not None
    if (home / "run").is_dir():           # the CLI's run of the same model, when that test ran first
        cli = json.loads((home / "run" / "manifest.json").read_text())["checkpoints"][0]
        assert mine.models[0]["weights_sha256"] == cli["weights_sha256"]


def test_the_rsi_example_runs_as_a_python_script(user, capsys, monkeypatch):
    monkeypatch.chdir(user.home)
    monkeypatch.setattr("sys.argv", ["rsi_long_short.py"])
    runpy.run_path(str(user.home / "rsi_long_short.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Sharpe" in out and "Return [%]" in out
