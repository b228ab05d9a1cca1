"""Checks on candle and funding frames, and the gap report.

All checks raise :class:`DataError` with a one-line message naming the first bad row, so a user
can find it in their file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_feeds.errors import DataError
from data_feeds.timeframes import timeframe_delta

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("funding_rate",)


def _first(index: pd.Index, mask: np.ndarray) -> str:
    return str(index[np.flatnonzero(mask)[0]])


def check_frame(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Columns present, index UTC, strictly increasing, no NaN. ``what`` names the source in messages."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {', '.join(missing)}; expected timestamp,{','.join(columns)}")
    if not isinstance(df.index, pd.DatetimeIndex) or str(df.index.tz) != "UTC":
        raise DataError(f"{what}: index must be UTC timestamps")
    dup = df.index.duplicated()
    if dup.any():
        raise DataError(f"{what}: {int(dup.sum())} duplicate timestamp(s), first at {_first(df.index, dup)}")
    if not df.index.is_monotonic_increasing:
        raise DataError(f"{what}: timestamps are not in increasing order")
    values = df[list(columns)].to_numpy(dtype="float64")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} row(s) with NaN or missing values, first at {_first(df.index, bad)}")


def check_candles(df: pd.DataFrame, what: str) -> None:
    """:func:`check_frame` plus OHLC sanity: low <= open, close <= high; low > 0; volume >= 0."""
    check_frame(df, CANDLE_COLUMNS, what)
    o, h, l, c, v = (df[col].to_numpy(dtype="float64") for col in CANDLE_COLUMNS)
    bad = (l > np.minimum(o, c)) | (h < np.maximum(o, c)) | (l <= 0) | (v < 0)
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} candle(s) violate low <= open,close <= high, low > 0, volume >= 0; "
            f"first at {_first(df.index, bad)}"
        )


def find_gaps(index: pd.DatetimeIndex, timeframe: str) -> pd.DataFrame:
    """Missing bars between consecutive timestamps.

    Returns one row per gap: ``after`` (last bar before it), ``before`` (first bar after it) and
    ``missing`` (number of absent bars). Bars 00:00, 01:00, 04:00 at "1h" give one gap of 2 bars.
    """
    step = timeframe_delta(timeframe)
    if len(index) < 2:
        return pd.DataFrame({"after": [], "before": [], "missing": []})
    diffs = index[1:] - index[:-1]
    where = np.flatnonzero(diffs > step)
    return pd.DataFrame(
        {
            "after": index[where],
            "before": index[where + 1],
            "missing": (diffs[where] // step - 1).astype("int64"),
        }
    )

