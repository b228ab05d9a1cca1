"""``Backtest(data, Strategy).run()``: a user's frame or a DataConfig, a class or a spec, metrics and a report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtests import Backtest, BacktestConfig, BrokerConfig, DataConfig, run_backtest
from data_feeds import DataError, load
from strategies import Signal, TargetPositionStrategy
from strategies.baselines import SmaCross
from conftest import make_candles

ETH = DataConfig(symbol="ETH/USDT:USDT", timeframe="1h", start="2024-01-01", end="2024-01-10")


class LongAfterRise(TargetPositionStrategy):
    """Long after a rising bar, short after a falling one (defined in a test module, not in a file spec)."""

    params = (("scale", 1.0),)

    def target(self) -> float:
        if len(self) < 2:                   # no previous bar yet (close[-1] would wrap to the data's last bar)
            return Signal.FLAT
        return self.p.scale * (Signal.LONG if self.data.close[0] > self.data.close[-1] else Signal.SHORT)


def test_a_class_on_a_user_frame_gives_metrics_equity_trades_and_a_report(tmp_path):
    candles = load("binanceusdm", "ETH/USDT:USDT", "1h", "2024-01-01", "2024-01-10")
    run = Backtest(candles, LongAfterRise, broker=BrokerConfig(leverage=3), params={"scale": 0.5}).run()
    assert isinstance(run.metrics, pd.Series) and np.isfinite(run.metrics["Sharpe"])
    assert run.equity.index.equals(candles.index) and len(run.trades) > 10
    assert run.name == "LongAfterRise" and run.config.broker.leverage == 3
    assert run.metrics["Trades"] == len(run.trades)
    page = run.report(tmp_path / "report")
    assert page.name == "report.html" and page.exists()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["results"][0]["name"] == "LongAfterRise"
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["strategies"][0]["file"].endswith("test_python_api.py")


def test_a_data_config_and_a_registered_name_match_run_backtest():
    run = Backtest(ETH, "sma_cross", params={"fast": 5, "slow": 20}, broker={"leverage": 2}).run()
    direct = run_backtest(BacktestConfig(strategy="sma_cross", data=ETH, params={"fast": 5, "slow": 20},
                                         broker=BrokerConfig(leverage=2)))
    pd.testing.assert_series_equal(run.equity, direct.equity)
    assert run.name == "sma_cross"


def test_run_backtest_takes_a_strategy_class():
    config = BacktestConfig(strategy="sma_cross", data=ETH)
    by_class = run_backtest(config, strategy=SmaCross)
    by_name = run_backtest(config)
    pd.testing.assert_series_equal(by_class.equity, by_name.equity)
    assert by_class.name == "sma_cross"
    other = run_backtest(config.replace(params={"fast": 5, "slow": 20}), strategy=LongAfterRise)
    assert other.name == "LongAfterRise" and other.config["params"] == {}     # params belong to config.strategy


def test_a_frame_with_a_timestamp_column_in_milliseconds_is_read_and_its_timeframe_inferred():
    candles = make_candles(100 + np.sin(np.arange(60) / 3), freq="4h")
    frame = candles.reset_index()
    frame["timestamp"] = candles.index.as_unit("ms").asi8              # epoch milliseconds, as in a CSV
    run = Backtest(frame, "buy_hold", symbol="ETH/USDT:USDT").run()
    assert run.timeframe == "4h" and len(run.equity) == 60 and run.symbol == "ETH/USDT:USDT"


def test_bad_candles_are_refused_like_a_data_file():
    candles = make_candles(np.linspace(100, 110, 20))
    candles.iloc[5, candles.columns.get_loc("close")] = np.nan
    with pytest.raises(DataError, match="NaN or missing values, first at 2024-01-01 05:00"):
        Backtest(candles, "flat")
    with pytest.raises(DataError, match="missing column"):
        Backtest(candles.drop(columns="volume"), "flat")
    with pytest.raises(TypeError, match="DataFrame of candles"):
        Backtest([1, 2, 3], "flat")
