"""Test helpers: hand-made markets and strategies that replay given positions through the real broker."""

from __future__ import annotations

from dataclasses import dataclass

import backtrader as bt
import numpy as np
import pandas as pd

from backtests.attribution import Attribution
from backtests.broker import BrokerConfig, FuturesBroker, make_broker
from backtests.recorder import Recorder
from data_feeds.feed import FuturesData
from data_feeds.loader import MarketData
from data_feeds.timeframes import timeframe_delta
from strategies.base import TargetPositionStrategy


def make_market(bars, *, funding: dict[int, float] | None = None, mark=None, volume=1_000.0,
                timeframe: str = "1h", start: str = "2024-01-01", symbol: str = "BTC/USDT:USDT",
                settlements: list[tuple] | None = None) -> MarketData:
    """A :class:`MarketData` from rows of (open, high, low, close); ``funding`` maps a bar index to the rate
    settled at that bar's open; ``mark`` is rows of (open, high, low, close) mark prices or None.
    ``settlements`` (instead of ``funding``): rows of (time, rate, mark price at that instant or None)."""
    bars = np.asarray(bars, dtype="float64")
    index = pd.date_range(start, periods=len(bars), freq=timeframe_delta(timeframe), tz="UTC", name="timestamp")
    candles = pd.DataFrame(bars, index=index, columns=["open", "high", "low", "close"])
    candles["volume"] = np.broadcast_to(np.asarray(volume, dtype="float64"), len(bars))
    funding = funding or {}
    fund_index = pd.DatetimeIndex([index[i] for i in sorted(funding)], name="timestamp")
    fund = pd.DataFrame({"funding_rate": [funding[i] for i in sorted(funding)]}, index=fund_index, dtype="float64")
    if settlements is not None:
        fund = pd.DataFrame({"funding_rate": [r for _, r, _ in settlements],
                             "mark_price": [float("nan") if m is None else m for _, _, m in settlements]},
                            index=pd.DatetimeIndex(pd.to_datetime([t for t, _, _ in settlements], utc=True),
                                                   name="timestamp"), dtype="float64")
    mark_frame = None
    if mark is not None:
        mark_frame = pd.DataFrame(np.asarray(mark, dtype="float64"), index=index,
                                  columns=["open", "high", "low", "close"])
        mark_frame["volume"] = 0.0
    return MarketData("binanceusdm", symbol, timeframe, candles, fund, mark_frame, "hand-made")


class ReplayStrategy(TargetPositionStrategy):
    """Holds ``sizes[i]`` contracts after bar i's close: one market order for the difference when it differs
    from the position (so a refused order is sent again at the next close)."""

    params = (("sizes", ()),)

    def next(self):
        target = float(self.p.sizes[len(self) - 1])
        self.targets.append(target)
        if target != self.position.size:
            self.order_target_size(target=target)


class FractionReplay(TargetPositionStrategy):
    """The production sizing path: target ``fractions[i]`` in [-1, 1] at bar i (sized by the base class)."""

    params = (("fractions", ()),)

    def target(self) -> float:
        return float(self.p.fractions[len(self) - 1])


FILL_DETAIL_COLUMNS = ["time", "size", "price", "notional", "fee", "slippage", "kind", "liquidity",
                       "reference_price", "pnl"]


@dataclass
class Run:
    """What a Cerebro run on a hand-made market produced, as plain objects."""

    equity: np.ndarray
    position: np.ndarray
    fills: pd.DataFrame
    rejected: list
    funding: list
    attribution: Attribution | None
    broker: FuturesBroker
    strategy: bt.Strategy


def run_cerebro(market: MarketData, config: BrokerConfig, strategy=ReplayStrategy, *, symbol: str | None = None,
                broker: bt.brokers.BackBroker | None = None, rules=None, **params) -> Run:
    """Run ``strategy`` with ``params`` on ``market`` through :func:`make_broker` (or a given ``broker``);
    ``rules`` (TradingRules) or ``symbol`` pick the market rules, else the market's own symbol does."""
    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    cerebro.adddata(FuturesData(market=market))
    made, comminfo = make_broker(config, symbol=symbol, rules=rules)
    if broker is not None:
        broker.setcash(config.cash)
        broker.addcommissioninfo(comminfo)
        made = broker
    cerebro.broker = made
    cerebro.addstrategy(strategy, **params)
    cerebro.addanalyzer(Recorder if broker is None else EquityOnly, _name="recorder")
    strat = cerebro.run()[0]
    rec = strat.analyzers.recorder
    fills = pd.DataFrame(getattr(rec, "fill_log", []), columns=FILL_DETAIL_COLUMNS)
    return Run(np.asarray(rec.equity), np.asarray(rec.position), fills, list(strat.rejected),
               [paid for _, paid in comminfo.funding_log], getattr(rec, "attribution", None), made, strat)


class EquityOnly(bt.Analyzer):
    """Account value and position per bar, for brokers that keep no fill log (Backtrader's stock one)."""

    def start(self):
        self.equity, self.position = [], []

    def next(self):
        self.equity.append(self.strategy.broker.getvalue())
        self.position.append(self.strategy.position.size)
