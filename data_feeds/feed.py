"""The Backtrader feed: OHLCV plus funding and mark-price lines, served from preloaded arrays.

Stock ``PandasData`` reads a pandas cell per line per bar. This feed converts every column to a Python
list once; when Backtrader preloads (the engine's default) it hands over each whole column in one call
instead of one bar per ``_load``, and it skips Backtrader's per-bar "tick" bookkeeping, which only live
feeds and replay need (the broker then prices fills from the bar itself, as it does without ticks).

Extra lines, per bar labelled by its open time t:

- ``funding_rate``: the rate settled exactly at the bar's open ``t``, 0 where none. It is paid on the position
  held through ``t`` (before the open's fills) at the mark close of the bar before (the mark price at ``t``).
- ``funding_inside``: ``sum(rate x mark price)`` over the settlements strictly inside ``(t, t + bar)`` (on bars
  longer than the funding interval: a 1d bar holds 08:00 and 16:00 of an 8h market, five of a 4h one). They are
  paid on the position held after the open's fills, at the mark price of each instant
  (:func:`settlement_prices`).
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
    at_open, inside, _ = split_settlements(candle_index, funding, timeframe)
    return at_open + inside


def split_settlements(candle_index: pd.DatetimeIndex, funding: pd.DataFrame, timeframe: str,
                      prices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bar: (rate settled at its open, sum of rates settled strictly inside it, sum of ``rate x price`` of
    those inside ones); ``prices`` holds one price per funding row (NaN counts as 0 in the last array).

    A 1d bar opening 00:00 on an 8h market: the 00:00 rate in the first array, 08:00 + 16:00 in the second.
    Settlements in a missing bar (a gap in the candles) belong to no bar and are dropped.
    """
    n = len(candle_index)
    at_open, inside, value = np.zeros(n), np.zeros(n), np.zeros(n)
    if funding is None or funding.empty or n == 0:
        return at_open, inside, value
    step = timeframe_delta(timeframe)
    pos = candle_index.searchsorted(funding.index, side="right") - 1
    starts = candle_index[np.clip(pos, 0, None)]
    held = (pos >= 0) & (funding.index < starts + step)
    on_open = held & (funding.index == starts)
    within = held & ~on_open
    rates = funding["funding_rate"].to_numpy(dtype="float64")
    np.add.at(at_open, pos[on_open], rates[on_open])
    np.add.at(inside, pos[within], rates[within])
    if prices is not None:
        priced = np.nan_to_num(rates * np.asarray(prices, dtype="float64"), nan=0.0)
        np.add.at(value, pos[within], priced[within])
    return at_open, inside, value


def settlement_prices(market: MarketData) -> np.ndarray:
    """The mark price at each funding settlement instant of ``market.funding``, NaN where unknown.

    In order: the funding row's own ``mark_price`` column (the loader fills it from the finest mark candles it
    has: the close of the mark candle ending at the instant), else the close of the market's mark (or, without
    mark data, last-price) candle ending exactly at the instant. A settlement inside a long bar without finer
    data stays NaN; :func:`feed_arrays` then prices it at the bar's open and :func:`unpriced_settlements` names it.
    """
    funding = market.funding
    if funding is None or funding.empty:
        return np.zeros(0)
    out = np.full(len(funding), np.nan)
    if "mark_price" in funding.columns:
        out = funding["mark_price"].to_numpy(dtype="float64").copy()
    c = market.candles
    source = market.mark if market.mark is not None else c
    ends = source.index + timeframe_delta(market.timeframe)
    where = ends.get_indexer(funding.index)
    hit = (where >= 0) & ~np.isfinite(out)
    out[hit] = source["close"].to_numpy(dtype="float64")[where[hit]]
    return out


def unpriced_settlements(market: MarketData) -> pd.DatetimeIndex:
    """Settlements strictly inside a bar whose mark price at the instant is unknown (priced at the bar's open)."""
    funding = market.funding
    if funding is None or funding.empty or market.candles.empty:
        return pd.DatetimeIndex([], tz="UTC")
    idx = market.candles.index
    pos = idx.searchsorted(funding.index, side="right") - 1
    starts = idx[np.clip(pos, 0, None)]
    within = (pos >= 0) & (funding.index < starts + timeframe_delta(market.timeframe)) & (funding.index != starts)
    return funding.index[within & ~np.isfinite(settlement_prices(market))]


def feed_arrays(market: MarketData) -> dict[str, np.ndarray]:
    """Column arrays for :class:`FuturesData`, aligned on the candle index."""
    c = market.candles
    arrays = {col: c[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close", "volume")}
    arrays["datetime"] = to_bt_dates(c.index)
    prices = settlement_prices(market)
    if len(prices):  # a settlement inside a bar with no price at its instant: the bar's open (named in a warning)
        pos = np.clip(c.index.searchsorted(market.funding.index, side="right") - 1, 0, None)
        prices = np.where(np.isfinite(prices), prices, arrays["open"][pos] if len(c) else np.nan)
    arrays["funding_rate"], _, arrays["funding_inside"] = split_settlements(c.index, market.funding,
                                                                           market.timeframe, prices)
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

    lines = ("funding_rate", "mark_high", "mark_low", "mark_close", "funding_inside")
    params = (("market", None),)
    _COLUMNS = ("datetime", "open", "high", "low", "close", "volume", "funding_rate", "mark_high", "mark_low",
                "mark_close", "funding_inside")

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
