"""Walk-forward: one model per fold, each trading only its own test span, behind the Predictor interface.

:func:`train_walk_forward` trains (or loads from the cache) the model of every fold with
``train_end = fold.train_end`` (its first test bar), so each model reads nothing at or after the bars it will
predict; the purge inside each fold is :mod:`strategies.ml.spans`'. :class:`WalkForwardPredictor` answers
``signal(i)`` / ``probabilities(i)`` for bar i of the span with the model of the fold whose test span holds
that bar. Each fold's first windows are seeded with the trailing bars before its test span (window history
and feature warm-up, from the end of its validation span): they are read as inputs only, never as labels.

>>> folds = walk_forward_folds(candles.index, cfg.replace(walk_forward_test_bars=720), t0)     # doctest: +SKIP
>>> models = train_walk_forward(candles, funding, cfg, folds, cost=0.001, cache_dir="models")  # doctest: +SKIP
>>> p = WalkForwardPredictor(models); p.attach(candles, funding, t0); p.signal(0)              # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from data_feeds.errors import DataError
from strategies.ml.cache import train_or_load
from strategies.ml.config import ModelConfig
from strategies.ml.errors import ConfigError
from strategies.ml.features import warmup_bars
from strategies.ml.folds import Fold, make_folds
from strategies.ml.predictor import MODES, AttachedSpan, Predictor
from strategies.ml.train import TrainedModel, train_model
from strategies.signal import CLASS_NAMES, Signal

Progress = Callable[[str], None]


def walk_forward_folds(index: pd.DatetimeIndex, cfg: ModelConfig, span_start: pd.Timestamp) -> list[Fold]:
    """The folds ``cfg`` asks for over ``index`` from ``span_start`` on: ``cfg.train_bars`` training and
    ``cfg.val_bars`` validation bars before each test span of ``cfg.walk_forward_test_bars`` bars (sliding, or
    expanding with ``cfg.walk_forward_expanding``). Raises ConfigError when walk-forward is off (0 test bars)."""
    if cfg.walk_forward_test_bars < 1:
        raise ConfigError("walk-forward is off (walk_forward_test_bars = 0); set it to the bars each model trades")
    return make_folds(index, cfg.train_bars, cfg.val_bars, cfg.walk_forward_test_bars,
                      expanding=cfg.walk_forward_expanding, start=span_start)


def fold_config(cfg: ModelConfig, fold: Fold) -> ModelConfig:
    """``cfg`` with this fold's training and validation lengths (they grow per fold when expanding)."""
    return cfg.replace(train_bars=fold.train_bars, val_bars=fold.val_bars)


def _check_fold_fits(index: pd.DatetimeIndex, fold: Fold) -> None:
    end = int(index.searchsorted(fold.train_end, side="left"))
    val_start, train_start = end - fold.val_bars, end - fold.val_bars - fold.train_bars
    if (end >= len(index) or index[end] != fold.train_end or train_start < 0
            or index[val_start] != fold.val_span[0] or index[train_start] != fold.train_span[0]):
        raise DataError(f"{fold.name} does not fit these candles (made on another index, or bars are missing "
                        f"inside its spans); make the folds from these candles' index")


def train_walk_forward(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig, folds: list[Fold], *,
                       cost: float, cache_dir: str | os.PathLike | None = None, progress: Progress | None = None
                       ) -> list[tuple[Fold, TrainedModel]]:
    """Train (or load from ``cache_dir/<fold name>/<cache key>``) one model per fold; returns (fold, model) pairs.

    ``cost``: round-trip cost as a log return for the labels; ``cache_dir`` None trains without caching.
    ``progress`` gets a line per fold, then that fold's per-epoch lines.
    """
    if not folds:
        raise DataError("no folds to train; the span has no bars")
    say = progress or (lambda line: None)
    out: list[tuple[Fold, TrainedModel]] = []
    for k, fold in enumerate(folds, start=1):
        _check_fold_fits(candles.index, fold)
        fcfg = fold_config(cfg, fold)
        say(f"fold {k}/{len(folds)} {fold.name}: train {fold.train_span[0]:%Y-%m-%d %H:%M} .. "
            f"{fold.train_span[1]:%Y-%m-%d %H:%M}, validation .. {fold.val_span[1]:%Y-%m-%d %H:%M}, "
            f"test {fold.test_span[0]:%Y-%m-%d %H:%M} .. {fold.test_span[1]:%Y-%m-%d %H:%M} ({fold.test_bars} bars)")
        if cache_dir is None:
            trained = train_model(candles, funding, fcfg, cost=cost, train_end=fold.train_end, progress=progress)
        else:
            trained, _ = train_or_load(Path(cache_dir) / fold.name, candles, funding, fcfg, cost=cost,
                                       train_end=fold.train_end, progress=progress)
        out.append((fold, trained))
    return out


class WalkForwardPredictor(AttachedSpan):
    """:class:`Predictor`'s interface over several folds: bar i is answered by the model whose test span holds it.

    ``fold_boundaries`` lists the first bar of each fold inside the attached span (the first is the span start).
    Both modes of :class:`Predictor` are supported and give the same answers.
    """

    def __init__(self, models: list[tuple[Fold, TrainedModel]], mode: str = "batched", *, chunk: int = 512,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"predictor mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not models:
            raise ConfigError("a walk-forward predictor needs at least one trained fold")
        starts = [fold.train_end for fold, _ in models]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ConfigError("walk-forward folds must be in time order with distinct test starts")
        self.models = list(models)
        self.mode = mode
        self.chunk = chunk
        self.cache_dir = cache_dir  # each fold's batched predictions are cached under their own key
        self._starts = pd.DatetimeIndex(starts)
        self._parts: list[Predictor] = []
        self._offsets = np.zeros(0, dtype=np.int64)
        self._part_of = np.zeros(0, dtype=np.int64)          # (N,) which part answers span bar i
        self._index: pd.DatetimeIndex | None = None
        self.fold_boundaries: list[pd.Timestamp] = []

    def attach(self, candles: pd.DataFrame, funding: pd.DataFrame, span_start: pd.Timestamp) -> None:
        """Prepare every bar at or after ``span_start``, each with its fold's model (see :meth:`Predictor.attach`).

        Raises DataError when a bar lies before the first fold's test span or after the last one's.
        """
        span_start = pd.Timestamp(span_start)
        idx = candles.index
        start = int(idx.searchsorted(span_start, side="left"))
        if start >= len(idx):
            raise DataError(f"no candles at or after span_start {span_start}; the data ends at {idx[-1]}")
        first_fold, last_fold = self.models[0][0], self.models[-1][0]
        if idx[start] < first_fold.train_end:
            raise DataError(f"bar {idx[start]} is before the first fold's test span ({first_fold.train_end}); "
                            f"start the folds at or before the span start")
        if idx[-1] > last_fold.test_span[1]:
            raise DataError(f"bars after {last_fold.test_span[1]} (up to {idx[-1]}) have no fold; make the folds "
                            f"over all the candles")
        fold_of = self._starts.searchsorted(idx[start:], side="right") - 1         # (N,) fold per bar, ascending
        parts, offsets, boundaries = [], [], []
        for k in np.unique(fold_of):
            rows = np.flatnonzero(fold_of == k)
            lo, hi = start + int(rows[0]), start + int(rows[-1]) + 1
            trained = self.models[k][1]
            seed = trained.config.window - 1 + warmup_bars(trained.feature_names)    # bars read, never predicted
            part = Predictor(trained, self.mode, chunk=self.chunk, cache_dir=self.cache_dir)
            part.attach(candles.iloc[max(lo - seed, 0):hi], funding, idx[lo])
            parts.append(part)
            offsets.append(int(rows[0]))
            boundaries.append(idx[lo])
        self._parts, self._offsets = parts, np.asarray(offsets, dtype=np.int64)
        self._part_of = np.repeat(np.arange(len(parts)), np.diff(np.append(self._offsets, len(fold_of))))
        self._index = idx[start:]
        self.fold_boundaries = boundaries

    def probabilities(self, i: int) -> np.ndarray:
        """(3,) probabilities (short, flat, long) for span bar i from its fold's model."""
        part, local = self._route(i)
        return part.probabilities(local)

    def signal(self, i: int) -> Signal:
        """The decision for span bar i under its fold's model and that model's ``min_confidence``."""
        part, local = self._route(i)
        return part.signal(local)

    def probability_frame(self) -> pd.DataFrame:
        """Probabilities per span bar (columns short, flat, long); in online mode only the bars queried so far."""
        self._require_attached()
        frames = [p.probability_frame() for p in self._parts]
        return pd.concat(frames) if frames else pd.DataFrame(columns=list(CLASS_NAMES))

    def _route(self, i: int) -> tuple[Predictor, int]:
        i = self._check(i)
        k = int(self._part_of[i])
        return self._parts[k], i - int(self._offsets[k])
