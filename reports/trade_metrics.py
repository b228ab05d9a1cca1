"""Trade statistics: pure functions of the round trips in ``BacktestResult.trades`` (one row per trade).

A trade *wins* when its net ``pnl`` (USDT, after fees and funding) is above zero and *loses* when it is below;
a trade at exactly zero breaks both streaks, as quantstats' ``consecutive_wins`` / ``consecutive_losses`` do on
returns. Directions are +1 (long) and -1 (short); ``return_pct`` is in percent (1.5 = +1.5 %).

Worked example: net PnLs ``[+10, +5, -3, -2, -1, +4]`` give 3 wins of 6 (win rate 50 %), a longest winning
streak of 2 and a longest losing streak of 3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_HOUR = pd.Timedelta(hours=1)


def longest_streak(flags: np.ndarray) -> int:
    """Length of the longest run of ``True`` in a boolean array: ``[1, 1, 0, 1, 1, 1]`` -> 3; empty -> 0."""
    padded = np.r_[False, np.asarray(flags, dtype=bool), False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[0::2]).max()) if edges.size else 0


def _column(trades: pd.DataFrame, name: str) -> np.ndarray:
    if not len(trades):
        return np.array([], dtype="float64")
    return pd.to_numeric(trades[name], errors="coerce").to_numpy(dtype="float64")


def _side_metrics(label: str, pnl: np.ndarray, ret: np.ndarray) -> dict[str, object]:
    n = int(pnl.size)
    return {
        f"{label} trades": n,
        f"{label} win rate [%]": float((pnl > 0).mean() * 100) if n else np.nan,
        f"{label} avg trade [%]": float(ret.mean()) if n else np.nan,
        f"{label} PnL [USDT]": float(pnl.sum()),
    }


def holding_hours(trades: pd.DataFrame) -> np.ndarray:
    """Hours from entry fill to exit fill per trade (an open trade counts up to the last bar's open)."""
    if not len(trades) or not {"entry_time", "exit_time"} <= set(trades.columns):
        return np.array([], dtype="float64")
    entry = pd.to_datetime(trades["entry_time"], utc=True)
    exit_ = pd.to_datetime(trades["exit_time"], utc=True)
    return ((exit_ - entry) / _HOUR).to_numpy(dtype="float64")


def _payoff(pnl: np.ndarray) -> float:
    """Average winning PnL over the average losing PnL (both positive): wins of +10 and +20 against losses of -5
    give 15 / 5 = 3.0; inf without a losing trade, NaN without a winning one."""
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    if not wins.size:
        return np.nan
    return float(wins.mean() / -losses.mean()) if losses.size else np.inf


def trade_metrics(trades: pd.DataFrame) -> dict[str, object]:
    """Trade statistics with units in the keys, NaN where undefined (no trades, no losing trade...).

    ``trades`` needs ``pnl`` and ``return_pct``; ``bars``, ``direction`` and ``entry_time``/``exit_time`` add the
    duration, long/short and holding-time figures when present. Profit factor = gross profit / gross loss (inf
    when no trade lost). "Avg win [%]" / "Avg loss [%]" average ``return_pct`` over winning / losing trades.
    Expectancy = mean net PnL per trade (USDT); payoff ratio = mean win / |mean loss| (USDT); SQN (Van Tharp's
    system quality number) = sqrt(N) x mean(PnL) / std(PnL, ddof=1).
    """
    n = int(len(trades))
    pnl, ret = _column(trades, "pnl"), _column(trades, "return_pct")
    gross_profit, gross_loss = float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = np.inf if gross_profit > 0 else np.nan
    wins, losses = pnl > 0, pnl < 0
    hours = holding_hours(trades)
    out: dict[str, object] = {
        "Trades": n,
        "Win rate [%]": float(wins.mean() * 100) if n else np.nan,
        "Best trade [%]": float(ret.max()) if n else np.nan,
        "Worst trade [%]": float(ret.min()) if n else np.nan,
        "Avg trade [%]": float(ret.mean()) if n else np.nan,
        "Avg win [%]": float(ret[wins].mean()) if wins.any() else np.nan,
        "Avg loss [%]": float(ret[losses].mean()) if losses.any() else np.nan,
        "Avg trade PnL [USDT]": float(pnl.mean()) if n else np.nan,
        "Avg trade duration [bars]": float(_column(trades, "bars").mean()) if n and "bars" in trades else np.nan,
        "Avg holding time [hours]": float(hours.mean()) if hours.size else np.nan,
        "Max consecutive wins": longest_streak(wins),
        "Max consecutive losses": longest_streak(losses),
        "Profit factor": profit_factor,
        "Expectancy [USDT]": float(pnl.mean()) if n else np.nan,
        "Payoff ratio": _payoff(pnl),
        "SQN": float(np.sqrt(n) * pnl.mean() / pnl.std(ddof=1)) if n >= 2 and pnl.std(ddof=1) > 0 else np.nan,
    }
    direction = _column(trades, "direction") if n and "direction" in trades else np.zeros(n)
    for label, side in (("Long", direction > 0), ("Short", direction < 0)):
        out.update(_side_metrics(label, pnl[side], ret[side]))
    return out


def traded_notional(fills: pd.DataFrame | None) -> float:
    """Sum of ``|notional|`` over fills in USDT (``|size| x price`` when there is no notional column)."""
    if fills is None or not len(fills):
        return 0.0
    if "notional" in fills:
        return float(np.abs(_column(fills, "notional")).sum())
    return float(np.abs(_column(fills, "size") * _column(fills, "price")).sum())
