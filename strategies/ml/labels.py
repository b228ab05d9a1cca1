"""Training targets: what the trade started by a decision at bar t would have earned, net of costs.

A decision at bar t (made on t's close) executes at bar t+1's open and is held ``horizon`` bars, so its label is
the log return r = log(open[t+1+horizon] / open[t+1]). LONG when r > cost, SHORT when r < -cost, FLAT otherwise,
where ``cost`` is the round-trip cost as a log return (``2 * (taker_fee + slippage)``: 0.0004 fee and 0.0001
slippage -> 0.001). The last ``horizon + 1`` bars have no label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_feeds.errors import DataError
from strategies.signal import Signal


def round_trip_cost(taker_fee: float, slippage: float) -> float:
    """Round-trip cost as a log return: entry and exit each pay fee + slippage. 0.0004 + 0.0001 -> 0.001."""
    return 2.0 * (taker_fee + slippage)


def forward_returns(candles: pd.DataFrame, horizon: int) -> pd.Series:
    """log(open[t+1+horizon] / open[t+1]) per bar t; NaN for the last ``horizon + 1`` bars.

    Opens 100, 101, 102, 103 with horizon 1: bar 0 -> log(102/101) = 0.00985, bar 1 -> log(103/102), bars 2-3 NaN.
    """
    if horizon < 1:
        raise DataError(f"label horizon must be at least 1 bar, got {horizon}")
    logo = np.log(candles["open"].to_numpy(np.float64))
    out = np.full(len(logo), np.nan)
    n = len(logo) - horizon - 1
    if n > 0:
        out[:n] = logo[1 + horizon:] - logo[1:1 + n]
    return pd.Series(out, index=candles.index, name="forward_return")


def classify_returns(returns: np.ndarray, cost: float) -> np.ndarray:
    """Signal values (-1, 0, 1) as float64 for each return, NaN stays NaN: r > cost -> 1, r < -cost -> -1."""
    if not cost >= 0:
        raise DataError(f"label cost must be a non-negative log return, got {cost}")
    out = np.where(returns > cost, float(Signal.LONG),
                   np.where(returns < -cost, float(Signal.SHORT), float(Signal.FLAT)))
    return np.where(np.isnan(returns), np.nan, out)


def make_labels(candles: pd.DataFrame, horizon: int, cost: float) -> pd.Series:
    """Label per bar as a nullable ``Int8`` Series of Signal values (SHORT=-1, FLAT=0, LONG=1), <NA> at the end.

    Model class indices are ``label + 1`` (:attr:`Signal.class_index`). A move of exactly ``cost`` is FLAT.
    """
    r = forward_returns(candles, horizon).to_numpy()
    values = classify_returns(r, cost)
    return pd.Series(pd.array(np.where(np.isnan(values), 0, values).astype(np.int8), dtype="Int8"),
                     index=candles.index, name="label").mask(np.isnan(values))
