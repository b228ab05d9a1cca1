"""The model seam: what a signal model implements so the walk-forward machinery can drive it.

The framework owns the data pipeline (causal features, train-only scaler, cost-aware labels, purged spans,
folds, validation threshold, caches, lookahead audit); a model only learns class probabilities::

    class MyModel:
        input_kind = "rows"                      # or "windows", or "sequence" (below)
        def __init__(self, spec: ModelSpec): ...
        def fit(self, train: FitData, val: FitData, *, seed: int, progress=None) -> dict | None: ...
        def predict_proba(self, x: np.ndarray) -> np.ndarray: ...        # (N, 3): SHORT, FLAT, LONG
        def state(self) -> tuple[dict[str, np.ndarray | torch.Tensor], dict]: ...
        @classmethod
        def from_state(cls, spec: ModelSpec, tensors: dict, meta: dict) -> "MyModel": ...

Inputs are scaled float32 features. ``"windows"`` models get ``x`` of shape (N, window, F): the ``window`` rows
ending at each decision bar, oldest first (sequence models: LSTM, GRU, Transformer). ``"rows"`` models get
(N, F): the feature row of the decision bar alone (tabular models: logistic regression). Either way the
sample for decision bar t reads nothing after t's close, and the decision bars are the same (the span plan
reserves a window of history for every kind), so models compared on one config see identical samples. Class k of ``y`` and of ``predict_proba`` columns is
``Signal(k - 1)``: 0 SHORT, 1 FLAT, 2 LONG (:data:`strategies.signal.CLASS_NAMES`).

``"sequence"`` models (stateful recurrent nets: kinds ``lstm_stateful``, ``gru_stateful``) carry a state bar to
bar instead of rereading a window. ``x`` is (T, F): contiguous feature rows, oldest first, and ``predict_proba``
returns (T, 3), row r's probabilities from a state started at zero on row 0 and carried through rows 0..r (so row
r reads nothing after row r). They also implement ``predict_sequence(x, state) -> (probs, state)``: the same
computation resumed from ``state`` (None: zero), so ``predict_sequence(x[:a])`` then ``predict_sequence(x[a:],
state)`` equals ``predict_proba(x)``; the Predictor's online mode calls it with one row per bar. For ``fit``,
``train.x`` holds the rows from ``window - 1`` bars before the first training decision bar up to the validation
span, ``val.x`` the rows after them up to ``train_end`` (validation continues the training state), and ``y`` has
one entry per row: the class index, or -1 where the row has no label (burn-in, purged tail). The state of a
sequence model starts ``window - 1`` bars before the first bar it is asked about, in training and inference
alike (:mod:`strategies.ml.predictor`).

``state()`` returns the learned arrays (numpy arrays or torch tensors, saved with ``torch.save`` of a plain dict
and read back with ``weights_only=True``) and a JSON-able dict; ``from_state`` rebuilds an equal model from
them. Nothing is pickled. The framework calls ``__init__`` and ``fit`` inside a scope seeded with ``seed``
(``torch.manual_seed``); a numpy model should draw from ``np.random.default_rng(seed)``. Same seed, same data:
identical predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np

INPUT_KINDS = ("windows", "rows", "sequence")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    """What a model is built for: ``n_features`` inputs per bar, ``window`` bars per sample (windows models),
    the feature names, the run's :class:`~strategies.ml.config.ModelConfig` (``hidden``, ``layers``, ``epochs``,
    ``lr``... read what applies) and the free-form ``[model.options]`` table (``options``)."""

    n_features: int
    window: int
    features: tuple[str, ...]
    config: Any
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FitData:
    """Samples of one span: ``x`` (N, window, F) or (N, F) float32, ``y`` (N,) int64 class indices 0..2 (sequence
    models: -1 on rows without a label), and
    ``class_weights`` (3,) float32 inverse-frequency weights of the training labels (None: unweighted)."""

    x: np.ndarray
    y: np.ndarray
    class_weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@runtime_checkable
class Model(Protocol):
    """A classifier of decision bars into SHORT / FLAT / LONG (see the module docstring)."""

    input_kind: ClassVar[str]

    def fit(self, train: FitData, val: FitData, *, seed: int, progress: Progress | None = None) -> dict | None:
        """Learn from ``train``; ``val`` may drive early stopping or model selection. Returns plain JSON
        numbers about the fit (``epochs_run``, ``best_epoch``, ``best_val_loss``, ``history``...) or None."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) float64 probabilities (rows sum to 1) for inputs shaped as :attr:`input_kind` says."""

    def state(self) -> tuple[dict[str, Any], dict]:
        """(arrays or tensors by name, JSON-able dict): everything :meth:`from_state` needs."""

    @classmethod
    def from_state(cls, spec: ModelSpec, tensors: dict[str, Any], meta: dict) -> "Model":
        """The model :meth:`state` described, for ``spec``; raise ValueError when they do not fit."""


@runtime_checkable
class SequenceModel(Model, Protocol):
    """A model with ``input_kind = "sequence"``: it also resumes from a state (see the module docstring)."""

    def predict_sequence(self, x: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        """((T, 3) float64 probabilities for rows ``x`` (T, F), the state after the last row), resumed from
        ``state`` (None: zero state); chaining calls over consecutive rows equals one call over all of them."""
