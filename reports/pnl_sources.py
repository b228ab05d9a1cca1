"""PnL attribution over time: per-bar contributions to the change in equity, in USDT, from the result's parts.

The terms follow :mod:`backtests.attribution` (whose run totals are ``BacktestResult.attribution``), with the
two fee kinds merged:

- ``fees``: minus the trading fee of every fill except liquidations;
- ``slippage``: minus what each fill lost against its reference price;
- ``funding``: minus funding paid (plus funding received);
- ``liquidation``: for a liquidation fill, the realised PnL from the average entry to the liquidation price,
  minus its fee;
- ``price``: the rest of the bar's equity change (price moves at the reference prices).

Per bar the terms sum to the equity change (the first bar's from ``initial_cash``), so their cumulative sums
end at ``final equity - initial cash``. Worked example: a bar where equity rises 9.8 with a 0.1 fee and 0.2 of
slippage on its fill has price +10.1, fees -0.1, slippage -0.2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.errors import ReportError

SOURCES = ("price", "fees", "funding", "slippage", "liquidation")


def _liquidation_pnl(fills: pd.DataFrame) -> np.ndarray:
    """Realised PnL of each liquidation fill against the position's average entry (0 for other fills)."""
    out = np.zeros(len(fills))
    pos = avg = 0.0
    kinds = fills["kind"].astype(str).to_numpy() if "kind" in fills else np.full(len(fills), "market")
    sizes, prices = fills["size"].to_numpy(dtype="float64"), fills["price"].to_numpy(dtype="float64")
    for i, (size, price, kind) in enumerate(zip(sizes, prices, kinds)):
        if kind == "liquidation" and pos != 0.0:
            out[i] = min(abs(size), abs(pos)) * (price - avg) * np.sign(pos)
        new = pos + size
        if abs(new) <= 1e-12:
            pos, avg = 0.0, 0.0
        elif pos == 0.0 or np.sign(new) != np.sign(pos):
            pos, avg = new, price
        elif np.sign(size) == np.sign(pos):
            pos, avg = new, (avg * pos + size * price) / new
        else:
            pos = new
    return out


def pnl_by_source(equity: pd.Series, fills: pd.DataFrame, funding: pd.Series, initial_cash: float) -> pd.DataFrame:
    """Per-bar contributions to the equity change (USDT), columns :data:`SOURCES`, indexed like ``equity``.

    ``fills`` needs ``time``, ``size``, ``price``, ``fee``, ``slippage`` (``kind`` marks liquidations); fills
    stamped between bars count on the bar at or before them. ``funding`` is USDT paid per bar (positive = paid).
    """
    if not isinstance(equity.index, pd.DatetimeIndex) or equity.empty:
        raise ReportError("equity must be a non-empty Series indexed by bar times")
    index = equity.index
    change = np.diff(np.r_[float(initial_cash), equity.to_numpy(dtype="float64")])
    out = pd.DataFrame(0.0, index=index, columns=list(SOURCES))
    if len(fills):
        times = pd.DatetimeIndex(pd.to_datetime(fills["time"], utc=True))
        where = np.clip(index.searchsorted(times, side="right") - 1, 0, len(index) - 1)
        liq = (fills["kind"].astype(str) == "liquidation").to_numpy() if "kind" in fills else np.zeros(len(fills), bool)
        fee = fills["fee"].to_numpy(dtype="float64")
        per_fill = {"fees": np.where(liq, 0.0, -fee),
                    "slippage": -fills["slippage"].to_numpy(dtype="float64"),
                    "liquidation": np.where(liq, _liquidation_pnl(fills) - fee, 0.0)}
        for name, values in per_fill.items():
            out[name] = np.bincount(where, weights=values, minlength=len(index))
    out["funding"] = -funding.reindex(index, fill_value=0.0).to_numpy(dtype="float64")
    out["price"] = change - out[["fees", "funding", "slippage", "liquidation"]].sum(axis=1).to_numpy()
    return out


def period_rule(index: pd.DatetimeIndex) -> tuple[str, str]:
    """``(pandas rule, label)`` for grouping a span into about 5-30 bars: months over 120 days, weeks over 21
    days, else days."""
    days = (index[-1] - index[0]) / pd.Timedelta(days=1) if len(index) else 0
    if days > 120:
        return "MS", "month"
    if days > 21:
        return "W-MON", "week"
    return "D", "day"
