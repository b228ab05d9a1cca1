"""The one strict date parser of lstmbt: ``YYYY-MM-DD`` (or ISO 8601 ``YYYY-MM-DDTHH:MM[:SS]``), always UTC.

Every date a user types (``--start``, ``--end``, ``--ranges``, config files) goes through :func:`parse_date`, so
``01/02/2024`` (January or February?) and ``2024-1-2`` are refused with the same one-line message everywhere
instead of being guessed. Timestamps built by code (``pd.Timestamp``, ``datetime``) pass through, made UTC.

>>> parse_date("2024-06-30")
Timestamp('2024-06-30 00:00:00+0000', tz='UTC')
>>> parse_date("2024-06-30", is_end=True)      # a date-only end covers that whole day
Timestamp('2024-07-01 00:00:00+0000', tz='UTC')
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pandas as pd

from data_feeds.errors import DataError

FORMAT = "YYYY-MM-DD"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def is_date_only(value) -> bool:
    """True for a ``YYYY-MM-DD`` string (no time of day)."""
    return isinstance(value, str) and bool(_DATE.match(value.strip()))


def parse_date(value, *, is_end: bool = False, what: str = "date") -> pd.Timestamp:
    """UTC timestamp from ``"2024-01-31"`` or ISO 8601 ``"2024-01-31T12:00"`` (``T`` or a space, optional seconds,
    optional ``Z`` or UTC offset such as ``+00:00``, which ``str(pd.Timestamp)`` writes).

    A date-only ``is_end`` moves to the next midnight (an exclusive end), so ``"2024-06-30"`` covers all of
    30 June. ``what`` names the value in the error (``"--start"``). Raises DataError for any other spelling
    (``01/02/2024``, ``2024/01/02``, ``2024-1-2``, ``20240102``) or an impossible date (``2024-02-30``).
    """
    if isinstance(value, (pd.Timestamp, datetime, date)) and not isinstance(value, str):
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise DataError(f"{what}: not a date")
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    text = value.strip() if isinstance(value, str) else None
    if text is None or not (_DATE.match(text) or _DATETIME.match(text)):
        raise DataError(f"{what} {value!r} is not a date: write {FORMAT} (e.g. 2024-01-31), "
                        f"or {FORMAT}THH:MM for a time of day (UTC)")
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what} {value!r} is not a calendar date ({exc})") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts + pd.Timedelta(days=1) if (is_end and _DATE.match(text)) else ts


def format_date(ts) -> str:
    """The shortest spelling :func:`parse_date` reads back: ``2024-01-01`` at midnight, else ``2024-01-01T12:00``."""
    ts = parse_date(ts)
    if ts == ts.normalize():
        return f"{ts:%Y-%m-%d}"
    return f"{ts:%Y-%m-%dT%H:%M}" if ts.second == 0 else f"{ts:%Y-%m-%dT%H:%M:%S}"
