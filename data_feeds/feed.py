"""The Backtrader feed: OHLCV plus funding and mark-price lines, served from preloaded arrays.

Stock ``PandasData`` reads a pandas cell per line per bar. This feed converts every column to a Python
list once; when Backtrader preloads (the engine's default) it hands over each whole column in one call
instead of one bar per ``_load``, and it skips Backtrader's per-bar "tick" bookkeeping, which only live
feeds and replay need (the broker then prices fills from the bar itself, as it does without ticks).

Extra lines, per bar labelled by its open time t:

- ``funding_rate``: sum of the funding rates settled in ``[t, t + bar)``, 0 where none; at 1h and
  shorter bars a settlement falls on exactly one bar's open.
- ``mark_high``, ``mark_low``, ``mark_close``: the mark-price candle, or the last-price candle where
  no mark prices are known (used for liquidation checks and funding notional).
"""

from __future__ import annotations

from array import array

import backtrader as bt
import numpy as np
import pandas as pd

from data_feeds.loader import MarketData
from data_feeds.timeframes import timeframe_delta, timeframe_seconds

_EPOCH_ORDINAL = 719163.0  # datetime.date(1970, 1, 1).toordinal(): Backtrader's float dates count days from 0001-01-01


def to_bt_dates(index: pd.DatetimeIndex) -> np.ndarray:
    """Backtrader's float date numbers (days since 0001-01-01, fraction = time of day) for a UTC index."""
    ns = index.as_unit("ns").asi8
    return _EPOCH_ORDINAL + ns / 86_400e9


def funding_per_bar(candle_index: pd.DatetimeIndex, funding: pd.DataFrame, timeframe: str) -> np.ndarray:
    """Funding rate settled during each bar ``[t, t + bar)``, summed; 0.0 for bars without a settlement."""
    out = np.zeros(len(candle_index))
    if funding is None or funding.empty or len(candle_index) == 0:
        return out
    step = timeframe_delta(timeframe)
    pos = candle_index.searchsorted(funding.index, side="right") - 1
    inside = (pos >= 0) & (funding.index < candle_index[np.clip(pos, 0, None)] + step)
    np.add.at(out, pos[inside], funding["funding_rate"].to_numpy(dtype="float64")[inside])
    return out


def feed_arrays(market: MarketData) -> dict[str, np.ndarray]:
    """Column arrays for :class:`FuturesData`, aligned on the candle index."""
    c = market.candles
    arrays = {col: c[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close", "volume")}
    arrays["datetime"] = to_bt_dates(c.index)
    arrays["funding_rate"] = funding_per_bar(c.index, market.funding, market.timeframe)
    mark = market.mark.reindex(c.index) if market.mark is not None else None
    for col in ("high", "low", "close"):
        values = arrays[col].copy()
        if mark is not None:
            m = mark[col].to_numpy(dtype="float64")
            values = np.where(np.isfinite(m), m, values)
        arrays[f"mark_{col}"] = values
    return arrays


class FuturesData(bt.feed.DataBase):
    """A Backtrader data feed over a :class:`MarketData` (pass it as ``market=``).

    >>> data = FuturesData(market=market)          # doctest: +SKIP
    >>> cerebro.adddata(data)                      # doctest: +SKIP
    """

    lines = ("funding_rate", "mark_high", "mark_low", "mark_close")
    params = (("market", None),)
    _COLUMNS = ("datetime", "open", "high", "low", "close", "volume", "funding_rate", "mark_high", "mark_low",
                "mark_close")

    def __init__(self):
        market = self.p.market
        minutes = timeframe_seconds(market.timeframe) // 60
        self.p.timeframe, self.p.compression = bt.TimeFrame.Minutes, minutes
        self._timeframe, self._compression = bt.TimeFrame.Minutes, minutes
        arrays = feed_arrays(market)
        # 8 bytes a value (a list of Python floats would hold 32): one array('d') per column
        self._columns = [array("d", np.ascontiguousarray(arrays[name], dtype="float64").tobytes())
                         for name in self._COLUMNS]
        self._lines = [getattr(self.lines, name) for name in self._COLUMNS]
        self._n = len(market.candles)
        self._i = 0
        self._preloaded = None  # (every line, line 0, datetime line) once preloaded into unbounded buffers

    def start(self):
        super().start()
        self._i = 0
        self._preloaded = None
        if self._columns is None:  # started again after a preload: take the values back from the line buffers
            self._columns = [array("d", line.array[:self._n]) for line in self._lines]

    def preload(self) -> None:
        """Every bar at once: extend each line's buffer with its whole column (same state as bar-by-bar loading)."""
        for line, column in zip(self._lines, self._columns):
            line.array.extend(column)
        for line in self.lines:
            if len(line.array) < self._n:
                line.array.extend([float("nan")] * (self._n - len(line.array)))
        self._i = self._n
        self._columns = None  # the line buffers hold every value now: free the copies
        self._last()
        self.home()
        self._tick_nullify()
        every = list(self.lines)
        if all(line.mode == line.UnBounded for line in every):  # qbuffer (exactbars) keeps Backtrader's own path
            self._preloaded = (every, self.lines[0], self.lines.datetime)

    def advance(self, size=1, datamaster=None, ticks=True):
        """Move to the next bar without tick bookkeeping (bars here are whole; see the module docstring).

        Preloaded, it moves each line's index directly: the same state as ``LineBuffer.advance`` on every line,
        without Backtrader's per-line proxy calls."""
        if datamaster is None and self._preloaded is not None:
            for line in self._preloaded[0]:
                line._idx += size
                line.lencount += size
            return
        super().advance(size, datamaster, ticks=False)

    def advance_peek(self) -> float:
        """The next bar's date number, ``inf`` after the last (Backtrader's ``advance_peek`` without proxies)."""
        if self._preloaded is None:
            return super().advance_peek()
        _, first, dt = self._preloaded
        if first.lencount < len(first.array) - first.extension:
            return dt.array[dt._idx + 1]
        return float("inf")

    def _load(self) -> bool:
        i = self._i
        if i >= self._n:
            return False
        for line, column in zip(self._lines, self._columns):
            line[0] = column[i]
        self._i = i + 1
        return True
