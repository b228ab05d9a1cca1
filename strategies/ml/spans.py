"""Where training and validation samples lie before ``train_end``, with the purge that keeps labels in their span.

Positions count candle rows. With p = the number of candles before ``train_end`` (the first predicted bar):

    history_start ... train_start ......... val_start ......... p (= train_end, not used)
    |- warm-up + window-1 -|- train_bars ------|- val_bars -------|

A label at decision bar t reads open[t+1+horizon]. Purge: a training sample needs t+1+horizon < val_start, a
validation sample t+1+horizon < p, so the last ``horizon + 1`` bars of each span are decision bars without a
sample and no label reads bar p (train_end) or later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_feeds.errors import DataError
from strategies.ml.errors import ConfigError


@dataclass(frozen=True)
class TrainingPlan:
    """Row positions of one training run (see the module docstring); ``end`` is exclusive."""

    history_start: int
    train_start: int
    val_start: int
    end: int
    horizon: int

    @property
    def train_ends(self) -> np.ndarray:
        """Decision bars of the training samples, purged: t + 1 + horizon < val_start."""
        return np.arange(self.train_start, self.val_start - 1 - self.horizon, dtype=np.int64)

    @property
    def val_ends(self) -> np.ndarray:
        """Decision bars of the validation samples, purged: t + 1 + horizon < end."""
        return np.arange(self.val_start, self.end - 1 - self.horizon, dtype=np.int64)


def plan_spans(index: pd.DatetimeIndex, train_end: pd.Timestamp, cfg, warmup: int,
               bar: pd.Timedelta) -> TrainingPlan:
    """The plan for ``cfg`` (train_bars, val_bars, window, horizon) ending before ``train_end``.

    Needs ``warmup + window - 1 + train_bars + val_bars`` candles before ``train_end``: with the defaults
    (vol_z warm-up 167, window 48) 167 + 47 + 17520 + 2880 = 20,614 hourly bars, about 859 days.
    Raises DataError saying how much earlier the data must start when there are fewer.
    """
    for name, bars in (("train_bars", cfg.train_bars), ("val_bars", cfg.val_bars)):
        if bars <= cfg.horizon + 1:
            raise ConfigError(f"model config: {name}={bars} leaves no sample after purging a {cfg.horizon}-bar "
                              f"label horizon; use {name} > {cfg.horizon + 1}")
    if len(index) == 0:
        raise DataError("no candles to train on")
    if train_end > index[-1] + bar:
        raise DataError(f"train_end {train_end} is after the last candle ({index[-1]}); "
                        f"load data up to train_end or choose an earlier train_end")
    end = int(index.searchsorted(train_end, side="left"))
    needed = warmup + cfg.window - 1 + cfg.train_bars + cfg.val_bars
    if end < needed:
        raise DataError(
            f"not enough history to train before {train_end}: need {needed} bars ({warmup} feature warm-up + "
            f"{cfg.window - 1} window + {cfg.train_bars} train + {cfg.val_bars} validation), have {end}; "
            f"load data from {train_end - needed * bar} or move train_end to {index[0] + needed * bar} or later")
    val_start = end - cfg.val_bars
    train_start = val_start - cfg.train_bars
    return TrainingPlan(train_start - (cfg.window - 1) - warmup, train_start, val_start, end, cfg.horizon)
