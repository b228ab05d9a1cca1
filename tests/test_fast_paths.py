"""The per-bar fast paths (strategy step, broker step and value, order snapshots, the collector freeze) change no
number: runs with them and with Backtrader's own code paths give identical results, liquidations and funding
included."""

import backtrader as bt
import pandas as pd
import pytest

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from backtests import broker as broker_module
from backtests import recorder as recorder_module
from strategies import base as base_module

# BTC 1h with funding settlements; 25x makes the sma_cross positions liquidate several times in the span
SPAN = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-06-30")


def _stock_paths(monkeypatch) -> None:
    """Every fast path off: Backtrader's own strategy step, broker step, value, order clone; no collector freeze."""
    monkeypatch.setattr(base_module, "_bar_plan", lambda strategy: False)
    monkeypatch.setattr(base_module.TargetPositionStrategy, "__len__", bt.Strategy.__len__)
    monkeypatch.setattr(broker_module.FuturesBroker, "_stock_next_needed", lambda self: True)
    monkeypatch.setattr(broker_module.FuturesBroker, "_get_value", bt.brokers.BackBroker._get_value)
    monkeypatch.setattr(broker_module.FuturesBroker, "notify", bt.brokers.BackBroker.notify)
    monkeypatch.setattr(recorder_module, "_freeze_heap", lambda: False)


def _frames(result):
    return {name: getattr(result, name) for name in ("equity", "position", "target", "fills", "trades", "funding",
                                                     "fees", "rejected")}


@pytest.mark.parametrize("leverage", [25.0, 2.0])
def test_fast_paths_give_the_same_results_as_backtraders_own(monkeypatch, leverage):
    config = BacktestConfig(strategy="sma_cross", data=SPAN, broker=BrokerConfig(leverage=leverage))
    fast = run_backtest(config)
    calls = []
    with monkeypatch.context() as m:
        _stock_paths(m)
        for cls, name in ((bt.Strategy, "_oncepost"), (bt.brokers.BackBroker, "next")):
            real = getattr(cls, name)
            m.setattr(cls, name, lambda self, *a, _real=real, _name=name: calls.append(_name) or _real(self, *a))
        stock = run_backtest(config)
    assert {"_oncepost", "next"} <= set(calls)                      # Backtrader's own steps ran
    if leverage == 25.0:
        assert (fast.fills["kind"] == "liquidation").sum() > 0      # the check covers liquidations
    assert fast.funding.abs().sum() > 0                             # ... and funding settlements
    for name, frame in _frames(fast).items():
        other = _frames(stock)[name]
        if isinstance(frame, pd.Series):
            pd.testing.assert_series_equal(frame, other, check_exact=True, obj=name)
        else:
            pd.testing.assert_frame_equal(frame, other, check_exact=True, obj=name)
    assert fast.final_equity == stock.final_equity


def test_strategy_length_is_backtraders():
    seen = []

    class Probe(base_module.TargetPositionStrategy):
        def target(self):
            seen.append((len(self), bt.Strategy.__len__(self)))
            return 0.0

    config = BacktestConfig(strategy="flat", data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1h",
                                                            start="2024-03-01", end="2024-03-03"))
    run_backtest(config, strategy=Probe)
    assert seen and all(a == b for a, b in seen) and seen[-1][0] == len(seen)
