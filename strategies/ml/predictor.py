"""``Predictor``: what the strategy asks each bar. "The window ending at bar i" is the only thing it reads.

Two modes give the same answers (the tests hold them to 1e-6):

- ``"batched"``: :meth:`Predictor.attach` runs every window (or row, for a rows model) of the span through the
  model once, in chunks, and each later query is an array lookup (O(1)).
- ``"online"``: each query runs the model on its window at call time, as a live system would.

A sequence (stateful) model runs from a zero state ``window - 1`` bars before ``span_start``: batched, one pass
over those rows and the span; online, the burn-in rows at the first query, then one recurrent step per bar with
the state carried from query to query (a later bar steps through the bars in between; an earlier bar is answered
from what was computed). The start is fixed by ``span_start``, not by the data, so both modes read nothing after
the bar asked about.

Features are computed over all candles passed to ``attach`` (they are causal: a row depends only on its own
trailing window), scaled with the training scaler stored in the model's metadata, never refitted.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from data_feeds.errors import DataError
from strategies.ml.decision import decide
from strategies.ml.errors import ConfigError
from strategies.ml.features import compute_features, warmup_bars
from strategies.ml.inference import batch_threads, model_device, torch_threads
from strategies.ml.prediction_cache import load_predictions, prediction_key, save_predictions
from strategies.ml.train import TrainedModel, check_probabilities, model_inputs
from strategies.signal import CLASS_NAMES, Signal

MODES = ("batched", "online")


class AttachedSpan:
    """The span a predictor is attached to: its length, its bar open times and the check of a bar number (shared
    by :class:`Predictor` and :class:`~strategies.ml.walkforward.WalkForwardPredictor`)."""

    _index: pd.DatetimeIndex | None = None

    def __len__(self) -> int:
        """Bars in the attached span."""
        return 0 if self._index is None else len(self._index)

    @property
    def index(self) -> pd.DatetimeIndex:
        """Open times of the span bars (bar i is ``index[i]``)."""
        self._require_attached()
        return self._index

    def _require_attached(self) -> None:
        if self._index is None:
            raise RuntimeError(f"call {type(self).__name__}.attach(candles, funding, span_start) before asking "
                               f"for predictions")

    def _check(self, i: int) -> int:
        self._require_attached()
        i = int(i)
        if not 0 <= i < len(self._index):
            raise IndexError(f"bar {i} is outside the attached span of {len(self._index)} bars")
        return i


class Predictor(AttachedSpan):
    """Per-bar probabilities and signals of a trained model over a span of candles.

    >>> p = Predictor(trained)                              # doctest: +SKIP
    >>> p.attach(candles, funding, pd.Timestamp("2024-01-01", tz="UTC"))   # doctest: +SKIP
    >>> p.probabilities(0), p.signal(0)     # bar 2024-01-01 00:00, decided on its close   # doctest: +SKIP
    (array([0.31, 0.22, 0.47]), <Signal.LONG: 1>)
    """

    def __init__(self, trained: TrainedModel, mode: str = "batched", *, chunk: int = 512,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"predictor mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.trained = trained
        self.mode = mode
        self.chunk = chunk
        self.cache_dir = cache_dir          # batched mode: reuse predictions stored there (prediction_cache.py)
        self.cache_hit = False
        cfg = trained.config
        self.window = cfg.window
        self.threads = cfg.threads
        self.min_confidence = trained.min_confidence
        self.input_kind = trained.input_kind     # "windows" or "rows" (see strategies.ml.protocol)
        self._scaler = trained.scaler
        self._x: np.ndarray | None = None          # (T, F) scaled features of all attached candles
        self._start = 0                             # row of the first span bar
        self._index: pd.DatetimeIndex | None = None
        self._probs: np.ndarray | None = None       # batched: (N, 3); online: rows filled as queried
        self._signals: list[Signal] = []
        self._queried: dict[int, None] = {}
        self._state = None                          # online sequence model: state after row self._next - 1
        self._next = 0                              # online sequence model: the next row to step

    def attach(self, candles: pd.DataFrame, funding: pd.DataFrame, span_start: pd.Timestamp) -> None:
        """Prepare predictions for every candle at or after ``span_start``.

        ``candles`` must include warm-up history before ``span_start``: ``window - 1`` bars for the first window
        plus the features' warm-up (167 bars with ``vol_z``; with window 48, 214 bars in all). Raises DataError
        saying where the data must start when there is less. Bar i of the span is ``candles`` row
        ``searchsorted(span_start) + i``.
        """
        span_start = pd.Timestamp(span_start)
        names = self.trained.feature_names
        feats = compute_features(candles, funding, names, bar=self.trained.bar)
        x = self._scaler.transform(feats)
        start = int(candles.index.searchsorted(span_start, side="left"))
        if start >= len(candles):
            raise DataError(f"no candles at or after span_start {span_start}; the data ends at {candles.index[-1]}")
        first = start - (self.window - 1)
        needed = self.window - 1 + warmup_bars(names)
        if first < 0 or not np.isfinite(x[first:]).all():
            raise DataError(
                f"not enough history before {span_start} to predict it: need {needed} bars of warm-up "
                f"({self.window - 1} window + {needed - self.window + 1} feature warm-up) with funding already "
                f"settled, have {start}; load candles and funding from {span_start - needed * self.trained.bar} "
                f"or earlier")
        self._x, self._start, self._index = x, start, candles.index[start:]
        n = len(self._index)
        if self.mode == "batched":
            inputs = (x[first:start + n] if self.input_kind == "sequence"
                      else model_inputs(x, np.arange(start, start + n), self.window, self.input_kind))
            # one big batched pass on the cores free right now (on 2 quiet cores 1.7x faster than 1 thread, but two
            # threads sharing a busy core stall); per-bar online calls stay on cfg.threads, where small calls run
            # fastest
            # a sequence model's pass is one recurrence, step after step: a second thread only adds hand-offs
            # (a 250k-bar pass, hidden 32: 0.8 us/bar on 1 thread, 1.8 on 2), so it keeps cfg.threads
            threads = self.threads if self.input_kind == "sequence" else batch_threads()
            probs, key = None, None
            if self.cache_dir is not None:
                source = self.trained.meta.get("model", {}).get("source_sha256")   # a user model's file version
                key = prediction_key(f"{self.trained.kind}:{source}:{self.trained.weights_sha256}", candles, funding,
                                     span_start, window=self.window, chunk=self.chunk,
                                     device=_device_of(self.trained.model))
                probs = load_predictions(self.cache_dir, key, n)
            self.cache_hit = probs is not None
            if probs is None:
                with torch_threads(threads):
                    probs = self._predict(inputs, self.chunk)
                if key is not None:
                    save_predictions(self.cache_dir, key, probs)
            probs.flags.writeable = False
            self._probs = probs
            members = {int(member): member for member in Signal}   # the same members, looked up once
            self._signals = [members[v] for v in decide(probs, self.min_confidence).tolist()]
        else:
            self._probs = np.full((n, 3), np.nan)
            self._queried = {}
            self._state, self._next = None, first

    def probabilities(self, i: int) -> np.ndarray:
        """(3,) probabilities (short, flat, long) for span bar i, from the window ending at that bar's close."""
        i = self._check(i)
        if self.mode == "batched":
            return self._probs[i]
        if self.input_kind == "sequence":
            return self._step_to(i)
        end = self._start + i
        x = model_inputs(self._x, np.array([end]), self.window, self.input_kind)     # (1, window, F) or (1, F)
        with torch_threads(self.threads):
            p = self._predict(x, 1)[0]
        self._probs[i] = p
        self._queried[i] = None
        return p

    def signal(self, i: int) -> Signal:
        """The decision for span bar i: argmax class, FLAT when its probability is below ``min_confidence``."""
        if self.mode == "batched":
            return self._signals[self._check(i)]
        return Signal(int(decide(self.probabilities(i)[None], self.min_confidence)[0]))

    def probability_frame(self) -> pd.DataFrame:
        """Probabilities per span bar (columns short, flat, long); in online mode only the bars queried so far."""
        self._require_attached()
        if self.mode == "batched":
            return pd.DataFrame(self._probs, index=self._index, columns=list(CLASS_NAMES))
        rows = np.array(sorted(self._queried), dtype=np.int64)
        return pd.DataFrame(self._probs[rows], index=self._index[rows], columns=list(CLASS_NAMES))

    def _step_to(self, i: int) -> np.ndarray:
        """Online sequence model: step the state one row at a time up to span bar i (the burn-in rows first, at
        the first query) and return bar i's probabilities; bars already stepped are answered from memory."""
        end = self._start + i
        model, who = self.trained.model, type(self.trained.model).__name__
        with torch_threads(self.threads):
            if self._next < self._start:                         # burn-in: read, never answered
                rows = self._x[self._next:self._start]
                p, self._state = model.predict_sequence(rows, self._state)
                check_probabilities(p, len(rows), who)
                self._next = self._start
            while self._next <= end:
                p, self._state = model.predict_sequence(self._x[self._next:self._next + 1], self._state)
                self._probs[self._next - self._start] = check_probabilities(p, 1, who)[0]
                self._next += 1
        self._queried[i] = None
        return self._probs[i]

    def _predict(self, inputs: np.ndarray, chunk: int) -> np.ndarray:
        """(N, 3) float64 probabilities of the model for ``inputs``, ``chunk`` samples per call, checked. A sequence
        model reads ``inputs`` (burn-in rows, then the span rows) in one pass and answers the span rows."""
        if self.input_kind == "sequence":
            probs = self.trained.model.predict_proba(inputs)
            return check_probabilities(probs, len(inputs), type(self.trained.model).__name__)[self.window - 1:]
        model, out = self.trained.model, np.empty((len(inputs), 3), dtype=np.float64)
        for a in range(0, len(inputs), chunk):
            part = inputs[a:a + chunk]
            out[a:a + len(part)] = check_probabilities(model.predict_proba(part), len(part), type(model).__name__)
        return out


def _device_of(model) -> str:
    """``"cuda"`` or ``"cpu"``: where a torch model's weights live (models of other kinds run on the CPU)."""
    try:
        return model_device(getattr(model, "net", model)).type
    except (AttributeError, StopIteration, TypeError):
        return "cpu"
