"""Timeframe strings ("1m", "15m", "1h", "4h", "1d") and what follows from them."""

from __future__ import annotations

import difflib

import pandas as pd

from data_feeds.errors import DataError

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SUPPORTED = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
SECONDS_PER_YEAR = 365 * 86400  # crypto trades 24/7: a year is 365 full days


def did_you_mean(timeframe) -> str:
    """``"; did you mean '1h'?"`` for ``"1H"`` or ``"60m"``, case ignored (minutes are lower-case ``m``: ``"1M"``
    suggests ``"1m"``); empty when nothing is close."""
    text = str(timeframe).strip()
    seconds = {tf: int(tf[:-1]) * _UNITS[tf[-1]] for tf in SUPPORTED}
    if text.lower() in seconds:
        return f"; did you mean {text.lower()!r}?"
    if len(text) > 1 and text[:-1].isdigit() and text[-1].lower() in _UNITS:   # 60m -> 1h, 24h -> 1d
        same = [tf for tf, sec in seconds.items() if sec == int(text[:-1]) * _UNITS[text[-1].lower()]]
        if same:
            return f"; did you mean {same[0]!r}?"
    close = difflib.get_close_matches(text.lower(), SUPPORTED, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def timeframe_seconds(timeframe: str) -> int:
    """Length of one bar in seconds: ``timeframe_seconds("1h") == 3600``."""
    if timeframe not in SUPPORTED:
        raise DataError(f"unknown timeframe {timeframe!r}{did_you_mean(timeframe)}; use one of {', '.join(SUPPORTED)}")
    return int(timeframe[:-1]) * _UNITS[timeframe[-1]]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """Length of one bar as a Timedelta."""
    return pd.Timedelta(seconds=timeframe_seconds(timeframe))


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year of a 24/7 market: 8,760 for "1h", 525,600 for "1m"."""
    return SECONDS_PER_YEAR / timeframe_seconds(timeframe)
