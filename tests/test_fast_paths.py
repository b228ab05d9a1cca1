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
    monkeypatch.setattr(base_module.TargetPositionStrategy, "_addnotification", bt.Strategy._addnotification)
    monkeypatch.setattr(broker_module.FuturesBroker, "_stock_next_needed", lambda self: True)
    monkeypatch.setattr(broker_module.FuturesBroker, "_get_value", bt.brokers.BackBroker._get_value)
    monkeypatch.setattr(broker_module.FuturesBroker, "notify", bt.brokers.BackBroker.notify)
    monkeypatch.setattr(recorder_module, "_freeze_heap", lambda: False)


def _frames(result):
    return {name: getattr(result, name) for name in ("equity", "position", "target", "fills", "trades", "funding",
                                                     "fees", "rejected")}


@pytest.mark.parametrize("strategy, leverage", [("sma_cross", 25.0),
                                                ("strategies.examples.rsi_long_short:RsiLongShort", 3.0)])
def test_fast_paths_give_the_same_results_as_backtraders_own(monkeypatch, strategy, leverage):
    """sma_cross at 25x (liquidations); the RSI example (an indicator built from indicators) at 3x."""
    config = BacktestConfig(strategy=strategy, data=SPAN, broker=BrokerConfig(leverage=leverage))
    fast = run_backtest(config)
    calls = []
    with monkeypatch.context() as m:
        _stock_paths(m)
        for cls, name in ((bt.Strategy, "_oncepost"), (bt.brokers.BackBroker, "next")):
            real = getattr(cls, name)
            m.setattr(cls, name, lambda self, *a, _real=real, _name=name: calls.append(_name) or _real(self, *a))
        stock = run_backtest(config)
    assert {"_oncepost", "next"} <= set(calls)                      # Backtrader's own steps ran
    if leverage > 20:
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


def test_a_strategy_listening_to_trades_still_gets_them():
    closed = []

    class Listener(base_module.TargetPositionStrategy):
        def target(self):
            return 1.0 if len(self) % 10 < 5 else -1.0

        def notify_trade(self, trade):
            if trade.isclosed:
                closed.append(trade.pnl)

    config = BacktestConfig(strategy="flat", data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1h",
                                                            start="2024-03-01", end="2024-03-03"))
    result = run_backtest(config, strategy=Listener)
    assert len(closed) == len(result.trades) - 1 > 0        # every closed trade but the one open at the end


def test_the_run_leaves_no_object_frozen_even_after_a_run_that_died():
    import gc

    config = BacktestConfig(strategy="flat", data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1h",
                                                            start="2024-03-01", end="2024-03-02"))
    assert gc.get_freeze_count() == 0
    assert recorder_module._freeze_heap()             # as a run that raised before its end would leave it
    run_backtest(config)
    assert gc.get_freeze_count() == 0


def test_delivered_order_notices_are_not_archived_for_the_whole_run(monkeypatch):
    """Backtrader's ``Strategy.clear`` appends every delivered order notice to ``_orders``, which nothing reads:
    memory grew with the orders of a run (the 1M-bar LSTM benchmark peaked at about 1.5 GB with it, 1.0 GB without)."""
    strategies = []
    real_clear = base_module.TargetPositionStrategy.clear
    monkeypatch.setattr(base_module.TargetPositionStrategy, "clear",
                        lambda self: strategies.append(self) or real_clear(self))
    result = run_backtest(BacktestConfig(strategy="sma_cross", data=SPAN))
    assert len(result.fills) > 10 and strategies                      # orders were sent and notices delivered
    assert all(not s._orders and not s._orderspending for s in strategies)
