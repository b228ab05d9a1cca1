"""Metric values as text (terminal and HTML tables) and as JSON-ready plain data.

Text: ``"Return [%]"`` 12.345 -> ``"12.35"``, ``"Fees paid [USDT]"`` 1234.5 -> ``"1,234.50"``, ``"Trades"`` 42 ->
``"42"``, NaN -> ``"-"``. JSON keeps *undefined* and *infinite* apart: NaN (undefined: a Sharpe ratio without
spread) becomes ``null``, +/-inf (unbounded: a profit factor without a losing trade) the strings ``"inf"`` /
``"-inf"``; timestamps are ISO 8601 strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from reports.metrics import result_metrics

if TYPE_CHECKING:
    from backtests.result import BacktestResult

SUMMARY_KEYS = ("Return [%]", "CAGR [%]", "Sharpe", "Max drawdown [%]", "Trades", "Win rate [%]",
                "Fees paid [USDT]", "Funding paid [USDT]")
"""Rows of :func:`format_metrics_table`: the figures a trader reads first."""


def format_value(key: str, value: object, missing: str = "-") -> str:
    """One metric as text, its precision chosen by the unit in ``key`` (2 decimals for % and USDT, 1 for days)."""
    if value is None or value is pd.NaT:
        return missing
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").strftime("%Y-%m-%d %H:%M") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return missing
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if key.endswith("[days]") or key.endswith("[bars]"):
            return f"{v + 0.0:,.1f}" if abs(v) >= 0.05 else "0.0"
        return f"{v:,.2f}" if abs(v) >= 0.005 else "0.00"      # never "-0.00"
    return str(value)


def _named_metrics(results: Sequence) -> list[tuple[str, pd.Series]]:
    """``(name, metrics)`` for each item: a BacktestResult-like object (metrics computed) or a ready pair."""
    out = []
    for item in results:
        if isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]), item[1]))
        else:
            out.append((str(item.name), result_metrics(item)))
    return out


def format_metrics_table(results: Sequence["BacktestResult"] | Sequence[tuple[str, pd.Series]],
                         keys: Sequence[str] = SUMMARY_KEYS) -> str:
    """A plain-text table for the terminal: one row per key metric, one column per result (its name).

    ``results`` holds BacktestResult objects or ``(name, metrics Series)`` pairs. Example::

        metric               lstm  buy & hold
        Return [%]          12.35       45.00
        Trades                 42           0
    """
    named = _named_metrics(results)
    header = ["metric", *[name for name, _ in named]]
    rows = [[key, *[format_value(key, m.get(key, np.nan)) for _, m in named]] for key in keys]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def jsonable(value: object) -> object:
    """Plain JSON data from metrics, configs and spans: NaN -> None, inf -> ``"inf"`` (``"-inf"``), Timestamp -> ISO
    string, numpy -> Python.

    ``{"Sharpe": np.float64("nan"), "Profit factor": np.inf, "Start": pd.Timestamp("2024-01-01", tz="UTC")}``
    gives ``{"Sharpe": None, "Profit factor": "inf", "Start": "2024-01-01T00:00:00+00:00"}``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.Series):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return [jsonable(v) for v in items]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v if math.isfinite(v) else None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return None if ts is pd.NaT else ts.isoformat()
    if isinstance(value, (pd.Timedelta, np.timedelta64)):
        td = pd.Timedelta(value)
        return None if td is pd.NaT else td.isoformat()
    if isinstance(value, str):
        return value
    return str(value)
