"""Which stretches of a run's span lack funding settlements or mark prices: named, never silently zero or stale.

Pure functions over a :class:`~data_feeds.loader.MarketData`; the engine turns their answers into notices (CLI
warning, report banner, metrics.json).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_feeds.loader import MarketData
from data_feeds.timeframes import timeframe_delta


def funding_interval(funding: pd.DataFrame, default: pd.Timedelta = pd.Timedelta(hours=8)) -> pd.Timedelta:
    """The market's funding interval as the data shows it (the most common spacing: 8h, 4h or 1h)."""
    if funding is None or len(funding) < 2:
        return default
    return pd.Series(funding.index[1:] - funding.index[:-1]).mode().iloc[0]


def funding_gaps(market: MarketData) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Stretches of the candles' span ``[first open, last open + bar)`` longer than 1.5 funding intervals with no
    settlement: before the first one, between two, after the last one (the whole span when there is none)."""
    c = market.candles
    if c.empty:
        return []
    start, end = c.index[0], c.index[-1] + timeframe_delta(market.timeframe)
    funding = market.funding
    times = funding.index[(funding.index >= start) & (funding.index < end)] if funding is not None and len(funding) \
        else []
    if len(times) == 0:
        return [(start, end)]
    step = funding_interval(funding)
    edges = [start - step, *times, end]     # a settlement is due within one interval of the span's start
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b - a > 1.5 * step:
            out.append((max(a + step, start), b))
    return out


def mark_gaps(market: MarketData) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Stretches of bars without a mark-price candle (liquidation checks and funding use last prices there)."""
    c = market.candles
    if c.empty:
        return []
    bar = timeframe_delta(market.timeframe)
    if market.mark is None or market.mark.empty:
        return [(c.index[0], c.index[-1] + bar)]
    missing = ~c.index.isin(market.mark.index)
    out = []
    idx = np.flatnonzero(missing)
    if len(idx):
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        out = [(c.index[r[0]], c.index[r[-1]] + bar) for r in runs]
    return out


def describe(gaps: list[tuple[pd.Timestamp, pd.Timestamp]], limit: int = 3) -> str:
    """``2024-01-01 00:00 .. 2024-01-03 00:00, ... (5 stretches)``"""
    text = ", ".join(f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M}" for a, b in gaps[:limit])
    return text + (f", ... ({len(gaps)} stretches)" if len(gaps) > limit else "")
