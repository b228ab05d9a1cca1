"""``train_model``: fit one model (any :class:`~strategies.ml.protocol.Model` kind) on the bars before
``train_end`` and return it with its metadata.

The framework side of the seam: the span layout and purge (:mod:`strategies.ml.spans`), causal features with a
scaler fitted on the training span only, cost-aware labels, the model's inputs (windows or rows), the
validation threshold and the metadata every checkpoint stores. Training is reproducible: randomness is scoped
to the call (``torch.random.fork_rng`` + ``manual_seed(cfg.seed)`` around the model's construction and fit; the
model gets ``seed`` for its own generators) and the thread count is fixed to ``cfg.threads`` for the call, so the
same seed and data give identical weights on the same machine.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from data_feeds.errors import DataError
from strategies.ml.config import ModelConfig
from strategies.ml.dataset import make_windows
from strategies.ml.decision import RULE
from strategies.ml.evaluation import class_balance, class_weights, classification_metrics
from strategies.ml.features import Scaler, compute_features, infer_bar, warmup_bars
from strategies.ml.inference import torch_threads
from strategies.ml.kinds import ModelError, model_class, source_sha256
from strategies.ml.labels import make_labels
from strategies.ml.protocol import FitData, Model, ModelSpec
from strategies.ml.spans import TrainingPlan, plan_spans
from strategies.ml.threshold import NO_TRADE_CONFIDENCE, next_bar_returns, tune_min_confidence

META_FORMAT = 3   # 3: validation scores of trivial baselines, threshold trust; 2: any model kind (``model`` record,
#   ``model_state`` JSON); 1 was the LSTM only


@dataclass
class TrainedModel:
    """A trained model (a :class:`~strategies.ml.protocol.Model`) and its JSON-able metadata: config, features,
    scaler, spans, data hash, metrics."""

    model: Model
    meta: dict

    @property
    def kind(self) -> str:
        return self.meta["config"].get("kind", "lstm")

    @property
    def input_kind(self) -> str:
        return type(self.model).input_kind

    @property
    def weights_sha256(self) -> str:
        """sha256 over the model's state arrays in key order (see :func:`strategies.ml.prediction_cache.state_sha256`)."""
        from strategies.ml.prediction_cache import state_sha256

        return state_sha256(self.model.state()[0])

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.meta["config"])

    @property
    def scaler(self) -> Scaler:
        return Scaler.from_dict(self.meta["scaler"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.meta["features"])

    @property
    def data_hash(self) -> str:
        return self.meta["data_sha256"]

    @property
    def bar(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.meta["bar_seconds"])

    @property
    def min_confidence(self) -> float:
        """The decision threshold: the one tuned on validation when training tuned one, else the configured one."""
        rule = self.meta["decision_rule"]
        return float(rule.get("tuned_min_confidence", rule["min_confidence"]))


@dataclass(frozen=True)
class TrainingData:
    """The exact candles and funding rows a training run reads, and its plan (positions into ``candles``)."""

    candles: pd.DataFrame
    funding: pd.DataFrame
    plan: TrainingPlan
    bar: pd.Timedelta


def select_training_data(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig,
                         train_end: pd.Timestamp) -> TrainingData:
    """Cut the candles to the rows the plan reads (nothing at or after ``train_end``) and funding to the rows
    whose settlement a used bar can see: from the last settlement at or before the first used bar's close up to
    the close of the last used bar (= ``train_end`` for contiguous bars)."""
    train_end = pd.Timestamp(train_end)
    if train_end.tzinfo is None:
        raise DataError(f"train_end {train_end} has no time zone; pass a UTC timestamp")
    bar = infer_bar(candles.index)
    plan = plan_spans(candles.index, train_end, cfg, warmup_bars(cfg.features), bar)
    used = candles.iloc[plan.history_start:plan.end]
    shifted = TrainingPlan(0, plan.train_start - plan.history_start, plan.val_start - plan.history_start,
                           plan.end - plan.history_start, plan.horizon)
    first_close, last_close = used.index[0] + bar, used.index[-1] + bar
    settled = funding.index[funding.index <= first_close]
    lo = settled[-1] if len(settled) else first_close
    used_funding = funding[(funding.index >= lo) & (funding.index <= last_close)]
    return TrainingData(used, used_funding, shifted, bar)


def data_sha256(candles: pd.DataFrame, funding: pd.DataFrame) -> str:
    """sha256 (hex) of the candles' open times and OHLCV and the funding times and rates, as little-endian bytes."""
    h = hashlib.sha256()
    for frame, cols in ((candles, ["open", "high", "low", "close", "volume"]), (funding, ["funding_rate"])):
        h.update(",".join(cols).encode())
        h.update(np.ascontiguousarray(frame.index.as_unit("ns").asi8, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(frame[cols].to_numpy(np.float64), dtype="<f8").tobytes())
    return h.hexdigest()


def training_data_hash(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig,
                       train_end: pd.Timestamp) -> str:
    """The ``data_sha256`` that :func:`train_model` would store for these arguments, without training."""
    data = select_training_data(candles, funding, cfg, train_end)
    return data_sha256(data.candles, data.funding)


def model_spec(cfg: ModelConfig) -> ModelSpec:
    """What a model of ``cfg`` is built for (features, window, hyperparameters, ``[model.options]``)."""
    return ModelSpec(len(cfg.features), cfg.window, tuple(cfg.features), cfg, dict(cfg.options))


def model_inputs(x: np.ndarray, ends: np.ndarray, window: int, input_kind: str) -> np.ndarray:
    """A model's inputs for decision bars ``ends`` of the scaled features ``x`` (T, F): windows (N, window, F)
    ending at each bar (a read-only view when ``ends`` is a contiguous run), or rows (N, F) of the bars alone.
    Sequence models read contiguous rows with a burn-in instead (:func:`fit_data`, the Predictor)."""
    if input_kind == "sequence":
        raise ModelError("a sequence (stateful) model reads contiguous rows from its burn-in on, not samples at "
                         "chosen bars; this path supports windows and rows models only")
    return make_windows(x, ends, window) if input_kind == "windows" else x[np.asarray(ends, dtype=np.int64)]


def fit_data(samples: "Samples", window: int, input_kind: str, weights: np.ndarray | None
             ) -> tuple[FitData, FitData]:
    """The training and validation :class:`FitData` of ``samples`` for a model reading ``input_kind``.

    Windows and rows models get one sample per purged decision bar. Sequence models get contiguous rows: training
    from ``window - 1`` bars before the first training decision bar up to the validation span, validation from
    there up to ``train_end`` (it continues the training state), ``y`` -1 on rows without a label.
    """
    if input_kind != "sequence":
        return (FitData(model_inputs(samples.x, samples.train_ends, window, input_kind), samples.train_y, weights),
                FitData(model_inputs(samples.x, samples.val_ends, window, input_kind), samples.val_y, weights))
    first, val_start = int(samples.train_ends[0]) - (window - 1), int(samples.val_ends[0])
    parts = []
    for lo, hi, ends, y in ((first, val_start, samples.train_ends, samples.train_y),
                            (val_start, len(samples.x), samples.val_ends, samples.val_y)):
        labels = np.full(hi - lo, -1, dtype=np.int64)
        labels[ends - lo] = y
        parts.append(FitData(samples.x[lo:hi], labels, weights))
    return parts[0], parts[1]


def validation_probabilities(model: Model, train: FitData, val: FitData, samples: "Samples", who: str) -> np.ndarray:
    """(N_val, 3) checked probabilities of the validation samples; a sequence model's state runs on from the
    training rows through the validation rows, as in its ``fit``."""
    if type(model).input_kind != "sequence":
        return check_probabilities(model.predict_proba(val.x), len(val), who)
    rows = np.concatenate([train.x, val.x])
    probs = check_probabilities(model.predict_proba(rows), len(rows), who)
    return probs[len(train.x) + samples.val_ends - int(samples.val_ends[0])]


def check_probabilities(probs: Any, rows: int, who: str) -> np.ndarray:
    """``probs`` as a (rows, 3) float64 array of finite probabilities summing to 1 per row, else ModelError."""
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{who}.predict_proba returned {type(probs).__name__}, not an (N, 3) array") from exc
    if p.shape != (rows, 3):
        raise ModelError(f"{who}.predict_proba returned shape {p.shape}, expected ({rows}, 3) "
                         f"(columns SHORT, FLAT, LONG)")
    if rows and (not np.isfinite(p).all() or (p < 0).any() or np.abs(p.sum(axis=1) - 1.0).max() > 1e-4):
        raise ModelError(f"{who}.predict_proba returned values that are not probabilities (each row must be "
                         f">= 0 and sum to 1)")
    return p


def _check_finite(x: np.ndarray, what: str, index: pd.DatetimeIndex, ends: np.ndarray) -> None:
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{what} windows ending as late as {index[ends[bad][-1]]} contain NaN features (funding "
                        f"not yet settled or too little warm-up); load funding/candles from earlier or move "
                        f"train_end later")


@dataclass(frozen=True)
class Samples:
    """Scaled features of the used rows, the fitted scaler, and the purged sample ends with their class indices."""

    x: np.ndarray            # (T, F) float32 contiguous, scaled with ``scaler``
    scaler: Scaler
    train_ends: np.ndarray   # (N_train,) decision bars
    train_y: np.ndarray      # (N_train,) class indices 0..2
    val_ends: np.ndarray
    val_y: np.ndarray


def prepare_samples(data: TrainingData, cfg: ModelConfig, cost: float) -> Samples:
    """Features, scaler (fitted on the training span's rows only), labels and purged sample positions."""
    plan = data.plan
    feats = compute_features(data.candles, data.funding, cfg.features, bar=data.bar)
    tr_ends, va_ends = plan.train_ends, plan.val_ends
    raw = feats.to_numpy()
    _check_finite(make_windows(raw, tr_ends, cfg.window), "training", feats.index, tr_ends)
    _check_finite(make_windows(raw, va_ends, cfg.window), "validation", feats.index, va_ends)
    scaler = Scaler.fit(feats.iloc[plan.train_start:plan.val_start])
    x = scaler.transform(feats)
    classes = make_labels(data.candles, cfg.horizon, cost) + 1
    return Samples(x, scaler, tr_ends, classes.iloc[tr_ends].to_numpy(np.int64),
                   va_ends, classes.iloc[va_ends].to_numpy(np.int64))


def train_model(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig, *, cost: float,
                train_end: pd.Timestamp, progress: Callable[[str], None] | None = None) -> TrainedModel:
    """Train a ``cfg.kind`` model on ``cfg.train_bars`` bars, validate on the ``cfg.val_bars`` bars just before
    ``train_end``.

    ``candles``: OHLCV indexed by bar open time (UTC); ``funding``: ``funding_rate`` per settlement; ``cost``:
    round-trip cost as a log return for the labels (0.001 = 0.1 %); ``train_end``: the first bar the model will
    predict; nothing at or after it is read. ``progress`` receives one line per epoch. With the defaults on
    hourly BTC (17,515 training windows of 48 bars) an epoch takes about 0.5 s on one CPU thread.
    With ``cfg.tune_threshold`` the decision threshold is chosen on the validation span
    (:func:`strategies.ml.threshold.tune_min_confidence`) and stored in ``meta["decision_rule"]`` with its table.
    Raises DataError when the history is shorter than warm-up + window + train + validation.
    """
    data = select_training_data(candles, funding, cfg, train_end)
    samples = prepare_samples(data, cfg, cost)
    cls = model_class(cfg.kind)
    who = cls.__name__
    weights = class_weights(samples.train_y) if cfg.class_weighting else None
    train, val = fit_data(samples, cfg.window, cls.input_kind, weights)
    rng_devices = [] if torch.device(cfg.device).type == "cpu" else [torch.device(cfg.device).index or 0]
    t_start = time.perf_counter()
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(cfg.seed)
        model = cls(model_spec(cfg))
        info = model.fit(train, val, seed=cfg.seed, progress=progress) or {}
        val_probs = validation_probabilities(model, train, val, samples, who)
    seconds = time.perf_counter() - t_start
    history = list(info.get("history", []))
    train_seconds = sum(h.get("train_seconds", 0.0) for h in history) or seconds
    epochs_run = int(info.get("epochs_run", len(history) or 1))
    meta = _metadata(data, samples, cfg, cost, pd.Timestamp(train_end))
    min_confidence = cfg.min_confidence
    if cfg.tune_threshold:
        returns = next_bar_returns(data.candles["open"].to_numpy(np.float64), samples.val_ends)
        choice = tune_min_confidence(val_probs, returns, cost)
        min_confidence = choice.min_confidence if choice.trusted else NO_TRADE_CONFIDENCE
        meta["decision_rule"].update(min_confidence=min_confidence, tuned_min_confidence=min_confidence,
                                     tuning=choice.to_dict())
        if not choice.trusted:
            (progress or (lambda line: None))(
                f"threshold not trusted: {choice.min_confidence:.2f} traded {choice.trades} time(s) on the validation "
                f"span (fewer than {choice.min_trades}); this model stays flat")
    meta["validation"] = classification_metrics(val_probs, samples.val_y, min_confidence,
                                               class_balance(samples.train_y))
    meta["training"] = {**{k: v for k, v in info.items() if k not in ("history", "epochs_run")},
                        "epochs_run": epochs_run, "best_epoch": info.get("best_epoch", epochs_run),
                        "best_val_loss": info.get("best_val_loss"), "history": history, "seconds": seconds,
                        "train_samples_per_second": len(samples.train_ends) * epochs_run / max(train_seconds, 1e-9)}
    meta["model"] = {"kind": cfg.kind, "class": f"{cls.__module__}.{cls.__qualname__}",
                     "input_kind": cls.input_kind, "source_sha256": source_sha256(cfg.kind)}
    return TrainedModel(model, meta)


def _metadata(data: TrainingData, samples: Samples, cfg: ModelConfig, cost: float, train_end: pd.Timestamp) -> dict:
    """The JSON-able record of what was trained on what (metrics and timings are added by the caller)."""
    idx, plan = data.candles.index, data.plan
    iso = lambda ts: pd.Timestamp(ts).isoformat()  # noqa: E731
    return {
        "format": META_FORMAT,
        "config": cfg.to_dict(),
        "features": list(cfg.features),
        "n_features": len(cfg.features),
        "scaler": samples.scaler.to_dict(),
        "bar_seconds": data.bar.total_seconds(),
        "spans": {"history_start": iso(idx[0]), "train": [iso(idx[plan.train_start]), iso(idx[plan.val_start])],
                  "validation": [iso(idx[plan.val_start]), iso(train_end)], "train_end": iso(train_end)},
        "samples": {"train": int(len(samples.train_ends)), "validation": int(len(samples.val_ends))},
        "cost": float(cost),
        "seed": cfg.seed,
        "data_sha256": data_sha256(data.candles, data.funding),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
                     "python": platform.python_version()},
        "class_weights": [float(w) for w in class_weights(samples.train_y)] if cfg.class_weighting else None,
        "train_label_balance": class_balance(samples.train_y),
        "decision_rule": {"rule": RULE, "min_confidence": cfg.min_confidence},
    }
