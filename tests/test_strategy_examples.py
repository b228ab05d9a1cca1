"""The example strategies run as a user runs them: copied into a folder outside the repository, through the CLI
(backtest, report --rerun, compare, check-lookahead) and from Python."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import pandas as pd
import pytest

from backtests import Backtest, BacktestConfig, DataConfig
from backtests.cli import main
from backtests.compare import resolve_spec, run_comparison
from backtests.executors import InlineExecutor
from backtests.lookahead import audit_lookahead
from strategies import get_strategy

EXAMPLES = Path(__file__).resolve().parents[1] / "strategies" / "examples"
TINY = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
TINY_TOML = """name = "lstm-trend"
strategy = "lstm_trend.py:LSTMTrend"
baselines = []

[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2024-03-01"
end = "2024-03-06"

[params]
trend = 12

[model]
window = 8
hidden = 4
train_bars = 600
val_bars = 200
epochs = 1
"""


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    for name in ("rsi_long_short.py", "lstm_trend.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "trend.toml").write_text(TINY_TOML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_rsi_example_runs_as_a_python_script(user_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["rsi_long_short.py"])
    runpy.run_path(str(user_dir / "rsi_long_short.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Sharpe" in out and "Return [%]" in out


def test_the_lstm_trend_example_filters_the_lstm_through_cli_python_compare_and_audit(user_dir, capsys):
    cache = str(user_dir / "models")
    assert main(["backtest", "--config", "trend.toml", "--cache-dir", cache, "--out", "run"]) == 0
    metrics = json.loads((user_dir / "run" / "metrics.json").read_text())["results"]
    names = [r["name"] for r in metrics if r["role"] != "buy_and_hold"]
    assert names == ["lstm_trend.py:LSTMTrend"]
    capsys.readouterr()
    assert main(["report", "run", "--rerun", "--out", "again"]) == 0
    assert "metrics.json: identical to the original" in capsys.readouterr().out

    # from Python, on the same cached model: trades only with the trend, so never against the LSTM
    cls = get_strategy("lstm_trend.py:LSTMTrend")
    data = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")
    run = Backtest(data, cls, model=TINY, params={"trend": 12}, cache_dir=cache).run()
    lstm = Backtest(data, "lstm", model=TINY, cache_dir=cache).run()
    assert run.name == "lstm_trend.py:LSTMTrend" and run.predictions is not None
    filtered, raw = run.target, lstm.target
    assert ((filtered == 0) | (filtered == raw)).all() and (filtered != raw).any()
    assert len(run.models) == 1 and run.models[0]["weights_sha256"] == lstm.models[0]["weights_sha256"]

    config = BacktestConfig(model=TINY, cache_dir=cache, params={"lstm_trend.py:LSTMTrend": {"trend": 12}})
    spec = resolve_spec(config.replace(data=data.__dict__), {
        "strategies": ["lstm_trend.py:LSTMTrend", "lstm"], "cell_reports": False, "bootstrap": 200})
    outcomes = run_comparison(spec, InlineExecutor(), show_bar=False)
    assert [o.ok for o in outcomes] == [True, True]
    pd.testing.assert_series_equal(outcomes[0].result.equity, run.equity)

    report = audit_lookahead(BacktestConfig(strategy="lstm_trend.py:LSTMTrend", model=TINY, cache_dir=cache,
                                            params={"trend": 12}, data=data), bars=2, seed=0)
    assert report.ok and list(report.components) == ["features", "scaler", "predictor", "target", "truncated"]
