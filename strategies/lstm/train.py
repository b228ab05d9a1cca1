"""``train_model``: fit one SignalNet on the bars before ``train_end`` and return it with its metadata.

The span layout and purge are in :mod:`strategies.lstm.spans`. Training is reproducible: randomness is scoped to
the call (``torch.random.fork_rng`` + ``manual_seed(cfg.seed)`` for initial weights and dropout, a seeded
``torch.Generator`` for the batch order) and the thread count is fixed to ``cfg.threads`` for the call, so the
same seed and data give identical weights on the same machine.
"""

from __future__ import annotations

import copy
import hashlib
import platform
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from data_feeds.errors import DataError
from strategies.lstm.config import ModelConfig
from strategies.lstm.dataset import WindowDataset, make_loader, make_windows
from strategies.lstm.decision import RULE
from strategies.lstm.errors import ConfigError
from strategies.lstm.evaluation import class_balance, class_weights, classification_metrics
from strategies.lstm.features import Scaler, compute_features, infer_bar, warmup_bars
from strategies.lstm.inference import predict_probabilities, torch_threads
from strategies.lstm.labels import make_labels
from strategies.lstm.model import SignalNet
from strategies.lstm.spans import TrainingPlan, plan_spans
from strategies.lstm.threshold import NO_TRADE_CONFIDENCE, next_bar_returns, tune_min_confidence

META_FORMAT = 2   # 2: validation scores of trivial baselines, threshold trust


@dataclass
class TrainedModel:
    """A trained net (eval mode) and its JSON-able metadata: config, features, scaler, spans, data hash, metrics."""

    model: SignalNet
    meta: dict

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


def weighted_loss_sums(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of w_i * CE_i, sum of w_i) for a batch: logits (B, 3), y (B,); w = 1 when ``weights`` is None."""
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    w = torch.ones_like(losses) if weights is None else weights[y]
    return (w * losses).sum(), w.sum()


def run_epoch(model: SignalNet, loader, weights: torch.Tensor | None, device: torch.device,
              optimizer: torch.optim.Optimizer | None = None) -> tuple[float, float]:
    """One pass over ``loader``; trains when given an optimizer, else evaluates without gradients.

    Returns (class-weighted mean cross-entropy, accuracy) over the whole pass. Train and validation share it.
    """
    training = optimizer is not None
    model.train(training)
    loss_sum, weight_sum, correct, count = 0.0, 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            wl, w = weighted_loss_sums(logits, y, weights)
            if training:
                optimizer.zero_grad(set_to_none=True)
                (wl / w).backward()
                optimizer.step()
            loss_sum += float(wl.detach())
            weight_sum += float(w.detach())
            correct += int((logits.argmax(dim=1) == y).sum())
            count += len(y)
    return loss_sum / max(weight_sum, 1e-12), correct / max(count, 1)


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for ``patience`` epochs in a row; remembers the best epoch.

    Losses 1.0, 0.9, 0.95, 0.93 with patience 2: epoch 2 is best and training stops after epoch 4.
    """

    patience: int
    best_loss: float = float("inf")
    best_epoch: int = 0
    stale: int = 0

    def update(self, epoch: int, loss: float) -> tuple[bool, bool]:
        """Record an epoch's loss; returns (improved, stop)."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            return True, False
        self.stale += 1
        return False, self.stale >= self.patience


def _check_finite(x: np.ndarray, what: str, index: pd.DatetimeIndex, ends: np.ndarray) -> None:
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{what} windows ending as late as {index[ends[bad][-1]]} contain NaN features (funding "
                        f"not yet settled or too little warm-up); load funding/candles from earlier or move "
                        f"train_end later")


@dataclass(frozen=True)
class Samples:
    """Scaled features of the used rows, the fitted scaler, and the purged sample ends with their class indices."""

    x: np.ndarray            # (T, F) float32, scaled with ``scaler``
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


def fit(samples: Samples, cfg: ModelConfig, progress: Callable[[str], None] | None
        ) -> tuple[SignalNet, EarlyStopping, list[dict]]:
    """The training loop: Adam, class-weighted cross-entropy, early stopping on the validation loss.

    Must run inside the caller's seeded RNG scope. Returns the net holding its best epoch's weights (eval mode),
    the stopper (best epoch and loss) and one history row per epoch.
    """
    device = torch.device(cfg.device)
    train_ds = WindowDataset(samples.x, samples.train_ends, samples.train_y, cfg.window)
    val_ds = WindowDataset(samples.x, samples.val_ends, samples.val_y, cfg.window)
    weights = torch.from_numpy(class_weights(samples.train_y)).to(device) if cfg.class_weighting else None
    model = SignalNet.from_config(cfg, len(cfg.features)).to(device)
    train_loader = make_loader(train_ds, cfg.batch_size, shuffle=True,
                               generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = make_loader(val_ds, max(cfg.batch_size, 1024), shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopper, best_state, history = EarlyStopping(cfg.patience), None, []
    say = progress or (lambda line: None)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, _ = run_epoch(model, train_loader, weights, device, optimizer)
        t1 = time.perf_counter()
        val_loss, val_acc = run_epoch(model, val_loader, weights, device)
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc,
                        "seconds": seconds, "train_seconds": t1 - t0})
        say(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
            f"val acc {100 * val_acc:.1f}%  ({seconds:.1f} s)")
        improved, stop = stopper.update(epoch, val_loss)
        if improved:
            best_state = copy.deepcopy(model.state_dict())
        if stop:
            say(f"early stop: no val loss improvement for {cfg.patience} epochs; "
                f"keeping epoch {stopper.best_epoch} (val loss {stopper.best_loss:.4f})")
            break
    if best_state is None:
        raise ConfigError(f"training diverged: validation loss was {history[-1]['val_loss']} in every epoch; "
                          f"lower lr (now {cfg.lr})")
    model.load_state_dict(best_state)
    return model.eval(), stopper, history


def train_model(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig, *, cost: float,
                train_end: pd.Timestamp, progress: Callable[[str], None] | None = None) -> TrainedModel:
    """Train on ``cfg.train_bars`` bars, stop early on the ``cfg.val_bars`` bars just before ``train_end``.

    ``candles``: OHLCV indexed by bar open time (UTC); ``funding``: ``funding_rate`` per settlement; ``cost``:
    round-trip cost as a log return for the labels (0.001 = 0.1 %); ``train_end``: the first bar the model will
    predict; nothing at or after it is read. ``progress`` receives one line per epoch. With the defaults on
    hourly BTC (17,515 training windows of 48 bars) an epoch takes about 0.5 s on one CPU thread.
    With ``cfg.tune_threshold`` the decision threshold is chosen on the validation span
    (:func:`strategies.lstm.threshold.tune_min_confidence`) and stored in ``meta["decision_rule"]`` with its table.
    Raises DataError when the history is shorter than warm-up + window + train + validation.
    """
    data = select_training_data(candles, funding, cfg, train_end)
    samples = prepare_samples(data, cfg, cost)
    rng_devices = [] if torch.device(cfg.device).type == "cpu" else [torch.device(cfg.device).index or 0]
    t_start = time.perf_counter()
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(cfg.seed)
        model, stopper, history = fit(samples, cfg, progress)
        val_probs = predict_probabilities(model, make_windows(samples.x, samples.val_ends, cfg.window))
    seconds = time.perf_counter() - t_start
    train_seconds = sum(h["train_seconds"] for h in history)
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
    meta["training"] = {"epochs_run": len(history), "best_epoch": stopper.best_epoch,
                        "best_val_loss": stopper.best_loss, "history": history, "seconds": seconds,
                        "train_samples_per_second": len(samples.train_ends) * len(history) / max(train_seconds, 1e-9)}
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
