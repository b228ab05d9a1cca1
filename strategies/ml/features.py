"""Causal model inputs: one row per bar, computed from that bar's close and earlier data only.

A row labelled with bar t's open time uses candles up to and including bar t (whose close is known when the bar
ends) and the funding settlements at or before that close. Every feature here is a function of a fixed trailing
window of rows, so a row never changes when later candles are added or removed; the tests check it by truncation.

Features (name: definition, warm-up rows that are NaN at the start):

- ``ret_1``, ``ret_4``, ``ret_24``: log(close[t] / close[t-k]); k rows of warm-up. 1 % up in the bar -> 0.00995.
- ``range``: (high - low) / close of the bar; high 101, low 99, close 100 -> 0.02.
- ``vol_z``: z-score of log(1 + volume) against the trailing 168 bars including this one (population std; 0 when
  the window is constant); 167 rows of warm-up.
- ``volatility_24``: standard deviation of the last 24 one-bar log returns; 24 rows of warm-up.
- ``funding``: the most recent settled funding rate (fraction per interval, 0.0001 = 0.01 %) whose settlement
  time s is at or before the bar's close (open + bar length). NaN before the first settlement in ``funding``;
  0.0 everywhere when ``funding`` is empty (no funding data means zero funding, as the data loader does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from data_feeds.errors import DataError

VOLUME_WINDOW = 168
VOLATILITY_WINDOW = 24


@dataclass(frozen=True)
class FeatureInputs:
    """Numpy views of the candles and funding that feature functions read (all float64, nanosecond times)."""

    open_ns: np.ndarray       # (T,) bar open times
    bar_ns: int               # bar length
    high: np.ndarray          # (T,)
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    funding_ns: np.ndarray    # (S,) settlement times, sorted
    funding_rate: np.ndarray  # (S,)


@dataclass(frozen=True)
class FeatureSpec:
    """A registered feature: the function, its warm-up in rows and a one-line description."""

    fn: Callable[[FeatureInputs], np.ndarray]
    warmup: int
    doc: str


def log_return(close: np.ndarray, k: int) -> np.ndarray:
    """log(close[t] / close[t-k]) with NaN for the first k rows: ``log_return([100, 110], 1) -> [nan, 0.0953]``."""
    out = np.full(close.shape, np.nan)
    logc = np.log(close)
    out[k:] = logc[k:] - logc[:-k]
    return out


def trailing_zscore(x: np.ndarray, n: int) -> np.ndarray:
    """(x[t] - mean(x[t-n+1..t])) / std(x[t-n+1..t]) (population std), 0 where the std is 0, NaN for t < n-1.

    Each value depends only on its own n-row window, so it does not depend on where the series starts:
    ``trailing_zscore([1, 2, 3], 3)[2] == 1.2247``.
    """
    out = np.full(x.shape, np.nan)
    if len(x) < n:
        return out
    win = sliding_window_view(x, n)
    # rows in blocks: std's (rows, n) temporary stays ~20 MB instead of n x 8 bytes per bar (1.3 KB at n=168);
    # each row's value is computed exactly as in one piece
    step = max(1, 2_500_000 // n)
    for a in range(0, len(win), step):
        block = win[a:a + step]
        mean = block.mean(axis=1)
        std = block.std(axis=1)
        out[n - 1 + a:n - 1 + a + len(block)] = np.divide(x[n - 1 + a:n - 1 + a + len(block)] - mean, std,
                                                          out=np.zeros_like(mean), where=std > 1e-12)
    return out


def trailing_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population std of x over the trailing n rows (NaN while any of them is NaN or missing)."""
    out = np.full(x.shape, np.nan)
    if len(x) < n:
        return out
    win = sliding_window_view(x, n)
    step = max(1, 2_500_000 // n)  # blocks of rows, as in trailing_zscore
    for a in range(0, len(win), step):
        block = win[a:a + step]
        out[n - 1 + a:n - 1 + a + len(block)] = block.std(axis=1)
    return out


def latest_settled(bar_close_ns: np.ndarray, funding_ns: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Rate of the last settlement at or before each bar close; NaN before the first; 0.0 with no settlements.

    Settlement at 08:00, 1h bars: the bar opening 07:00 (closing 08:00) already sees it, the bar opening 06:00 does not.
    """
    if len(funding_ns) == 0:
        return np.zeros(len(bar_close_ns))
    pos = np.searchsorted(funding_ns, bar_close_ns, side="right") - 1
    return np.where(pos >= 0, rate[np.clip(pos, 0, None)], np.nan)


FEATURES: dict[str, FeatureSpec] = {
    "ret_1": FeatureSpec(lambda d: log_return(d.close, 1), 1, "log return of close over 1 bar"),
    "ret_4": FeatureSpec(lambda d: log_return(d.close, 4), 4, "log return of close over 4 bars"),
    "ret_24": FeatureSpec(lambda d: log_return(d.close, 24), 24, "log return of close over 24 bars"),
    "range": FeatureSpec(lambda d: (d.high - d.low) / d.close, 0, "(high - low) / close"),
    "vol_z": FeatureSpec(lambda d: trailing_zscore(np.log1p(d.volume), VOLUME_WINDOW), VOLUME_WINDOW - 1,
                         "z-score of log(1+volume) over the trailing 168 bars"),
    "volatility_24": FeatureSpec(lambda d: trailing_std(log_return(d.close, 1), VOLATILITY_WINDOW), VOLATILITY_WINDOW,
                                 "std of 1-bar log returns over the trailing 24 bars"),
    "funding": FeatureSpec(lambda d: latest_settled(d.open_ns + d.bar_ns, d.funding_ns, d.funding_rate), 0,
                           "last funding rate settled at or before the bar close"),
}


def check_feature_names(names) -> tuple[str, ...]:
    """The names as a tuple; raises DataError listing the valid names for an unknown one."""
    names = tuple(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise DataError(f"unknown feature(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                        f"valid: {', '.join(FEATURES)}")
    return names


def warmup_bars(names) -> int:
    """Rows at the start of a series that are NaN for these features: 167 with ``vol_z``, 24 with ``ret_24``.

    Funding adds no fixed warm-up but is NaN before the first settlement in the data.
    """
    return max(FEATURES[n].warmup for n in check_feature_names(names))


def infer_bar(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common step between consecutive bars (raises DataError with fewer than 2 bars)."""
    if len(index) < 2:
        raise DataError("need at least 2 candles to tell the bar length")
    steps = np.diff(index.as_unit("ns").asi8)
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def feature_inputs(candles: pd.DataFrame, funding: pd.DataFrame, bar: pd.Timedelta | None = None) -> FeatureInputs:
    """Check the frames and convert them once to numpy (see :class:`FeatureInputs`)."""
    missing = [c for c in ("high", "low", "close", "volume") if c not in candles.columns]
    if missing:
        raise DataError(f"candles lack column(s) {', '.join(missing)}; need open, high, low, close, volume")
    if not isinstance(candles.index, pd.DatetimeIndex) or not isinstance(funding.index, pd.DatetimeIndex):
        raise DataError("candles and funding need a DatetimeIndex (bar open time / settlement time, UTC)")
    if "funding_rate" not in funding.columns:
        raise DataError("funding lacks the funding_rate column")
    bar = infer_bar(candles.index) if bar is None else bar
    f_ns = funding.index.as_unit("ns").asi8
    if len(f_ns) > 1 and np.any(np.diff(f_ns) <= 0):
        raise DataError("funding settlements must be sorted by time without duplicates")
    return FeatureInputs(
        open_ns=candles.index.as_unit("ns").asi8,
        bar_ns=int(bar.value),
        high=candles["high"].to_numpy(np.float64),
        low=candles["low"].to_numpy(np.float64),
        close=candles["close"].to_numpy(np.float64),
        volume=candles["volume"].to_numpy(np.float64),
        funding_ns=f_ns,
        funding_rate=funding["funding_rate"].to_numpy(np.float64),
    )


def compute_features(candles: pd.DataFrame, funding: pd.DataFrame, names, *,
                     bar: pd.Timedelta | None = None) -> pd.DataFrame:
    """Causal feature frame: same index as ``candles``, one float64 column per name, NaN during warm-up.

    ``bar`` is the bar length (inferred from the index when None). Raises DataError for unknown names, listing
    the valid ones. Shape: (T bars, len(names)).
    """
    names = check_feature_names(names)
    data = feature_inputs(candles, funding, bar)
    return pd.DataFrame({n: FEATURES[n].fn(data) for n in names}, index=candles.index)


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature standardisation fitted on the training rows only: x_scaled = (x - mean) / std.

    A feature with std 0 (a constant) keeps std 1, so it scales to 0 instead of dividing by zero.
    """

    names: tuple[str, ...]
    mean: np.ndarray   # (F,)
    std: np.ndarray    # (F,)

    @classmethod
    def fit(cls, features: pd.DataFrame) -> "Scaler":
        """Fit on the given rows (pass the training slice only); NaN rows are an error."""
        values = features.to_numpy(np.float64)
        if len(values) == 0 or not np.isfinite(values).all():
            raise DataError("scaler: training features are empty or contain NaN; supply more history")
        std = values.std(axis=0)
        return cls(tuple(features.columns), values.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """Scaled float32 array (T, F); columns are taken in the fitted order."""
        values = features[list(self.names)].to_numpy(np.float64)
        return ((values - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-able form; floats survive the JSON round trip exactly."""
        return {"names": list(self.names), "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict) -> "Scaler":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["names"]), np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64))
