"""The three examples as a user runs them: copied into a folder outside the repository and run there through the
real ``lstmbt`` command line, in a fresh process each time (``backtest``, ``report --rerun``, ``compare`` on a
process pool, ``check-lookahead``), and from Python through ``Backtest(...)``.

- ``rsi_long_short.py``: ``RsiLongShort``, a plain indicator strategy;
- ``lstm_trend.py``: ``LSTMTrend``, a user strategy asking the model every bar, with a trend filter;
- ``my_model.py``: ``MyModel``, a user model plugged in with ``[model] kind = "my_model.py:MyModel"``.

Spans and models are tiny (six days of hours, 600 training bars, one epoch) so the module stays fast.
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
TREND_TOML = f"""name = "lstm-trend"
strategy = "lstm_trend.py:LSTMTrend"
baselines = ["rsi_long_short.py:RsiLongShort"]
{DATA}
[params]
trend = 12

{MODEL}
"""
MINE_TOML = f"""name = "my-model"
strategy = "lstm"
baselines = []
{DATA}
{MODEL}
kind = "my_model.py:MyModel"

[model.options]
hidden = 4
steps = 50
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A user's folder outside the repo (the examples and two configs), and a runner of ``lstmbt`` from there."""
    home = tmp_path_factory.mktemp("user")
    assert ROOT not in home.parents
    for name in ("rsi_long_short.py", "lstm_trend.py", "my_model.py"):
        shutil.copy(EXAMPLES / name, home / name)
    (home / "trend.toml").write_text(TREND_TOML)
    (home / "mine.toml").write_text(MINE_TOML)
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


def test_backtest_then_rerun_reproduces_each_example_byte_for_byte(user):
    home = user.home
    out = user("backtest", "--config", "trend.toml", "--out", "trend")
    assert "lstm_trend.py:LSTMTrend" in out and "rsi_long_short.py:RsiLongShort" in out
    assert {"lstm_trend.py:LSTMTrend", "rsi_long_short.py:RsiLongShort"} <= set(results(home / "trend"))
    out = user("backtest", "--config", "mine.toml", "--out", "mine")
    assert "model: user model my_model.py:MyModel" in out and "my_model step 50" in out
    manifest = json.loads((home / "mine" / "manifest.json").read_text())
    assert [c["kind"] for c in manifest["checkpoints"]] == ["my_model.py:MyModel"]
    for run in ("trend", "mine"):
        assert "metrics.json: identical to the original" in user("report", run, "--rerun", "--out", f"{run}-again")


def test_compare_on_a_process_pool_runs_the_three_examples(user):
    out = user("compare", "--config", "mine.toml", "--strategies",
               "lstm_trend.py:LSTMTrend,rsi_long_short.py:RsiLongShort,lstm,buy_hold",
               "--workers", "2", "--no-cell-reports", "--bootstrap", "100", "--out", "cmp")
    assert "4 of 4 cells ran (0 failed)" in out and "2 local worker(s)" in out
    for name in ("lstm_trend.py:LSTMTrend", "rsi_long_short.py:RsiLongShort", "lstm"):
        assert f"{name} | span | BTC/USDT:USDT: ok" in out


@pytest.mark.parametrize("args", [
    ["--config", "trend.toml"],                                   # LSTMTrend asking the LSTM
    ["--config", "mine.toml"],                                    # the model strategy driving MyModel
    ["--strategy", "rsi_long_short.py:RsiLongShort", "--symbol", "ETH/USDT:USDT", "--start", "2024-01-01",
     "--end", "2024-01-10"],
], ids=["lstm_trend", "my_model", "rsi"])
def test_check_lookahead_passes_each_example(user, args):
    out = user("check-lookahead", *args, "--bars", "3")
    assert "no lookahead found" in out and "truncated" in out


def test_backtest_from_python_on_a_dataframe_and_the_report_reruns_from_the_saved_candles(user, monkeypatch):
    from backtests import Backtest, DataConfig
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
    out = user("report", "frame", "--rerun", "--out", "frame-again")
    assert "metrics.json: identical to the original" in out and "saved candles" in out
    data = (home / "frame" / "input" / "candles.parquet")
    data.write_bytes(data.read_bytes()[:-8] + b"tampered")
    out = user("report", "frame", "--rerun", "--out", "frame-3", expect=2)
    assert len(out.strip().splitlines()) == 1 and "sha256" in out

    # LSTMTrend and MyModel from Python, on the models the CLI runs cached: LSTMTrend never trades against the LSTM
    span = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")
    trend = Backtest(span, LSTMTrend, model=TINY, params={"trend": 12}).run()
    lstm = Backtest(span, "lstm", model=TINY).run()
    assert ((trend.target == 0) | (trend.target == lstm.target)).all() and (trend.target != lstm.target).any()
    mine = Backtest(span, "lstm", model={**TINY, "kind": "my_model.py:MyModel",
                                         "options": {"hidden": 4, "steps": 50}}).run()
    assert mine.models[0]["kind"] == "my_model.py:MyModel" and mine.predictions is not None


def test_the_rsi_example_runs_as_a_python_script(user, capsys, monkeypatch):
    monkeypatch.chdir(user.home)
    monkeypatch.setattr("sys.argv", ["rsi_long_short.py"])
    runpy.run_path(str(user.home / "rsi_long_short.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Sharpe" in out and "Return [%]" in out
