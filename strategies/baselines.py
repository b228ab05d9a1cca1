"""Baselines every model should beat: flat, buy-and-hold and a long/short moving-average cross."""

from __future__ import annotations

import backtrader as bt

from strategies.base import TargetPositionStrategy
from strategies.contract import Prepared
from strategies.signal import Signal


class Flat(TargetPositionStrategy):
    """Never trades: the final equity equals the starting cash exactly."""

    def target(self) -> float:
        return Signal.FLAT


class BuyAndHold(TargetPositionStrategy):
    """Long from the first bar's close (filled at the second bar's open) to the end."""

    def target(self) -> float:
        return Signal.LONG


class SmaCross(TargetPositionStrategy):
    """Long while the fast simple moving average of the close is above the slow one, short while below.

    ``fast=20, slow=50`` on 1h bars compares the last 20 and 50 closes; flat until 50 bars are known.
    """

    params = (("fast", 20), ("slow", 50))

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> Prepared:
        prepared = super().prepare(config, market, span_start, progress)
        slow = prepared.params.get("slow", cls.params.slow)
        bars = int((market.candles.index >= span_start).sum())
        if bars < slow:  # the slow average's first value is at bar `slow`: one decision at least
            raise ValueError(f"sma_cross needs at least slow={slow} bars in the span, got {bars}; "
                             f"use a longer span or a smaller slow period")
        return prepared

    def __init__(self):
        super().__init__()
        if not 0 < self.p.fast < self.p.slow:
            raise ValueError(f"sma_cross needs 0 < fast < slow, got fast={self.p.fast} slow={self.p.slow}")
        self.fast_ma = bt.indicators.SMA(self.data.close, period=self.p.fast)
        self.slow_ma = bt.indicators.SMA(self.data.close, period=self.p.slow)

    def target(self) -> float:
        return Signal.LONG if self.fast_ma[0] > self.slow_ma[0] else Signal.SHORT
