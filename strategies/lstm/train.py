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

META_FORMAT = 1


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
        return float(self.meta["decision_rule"]["min_confidence"])


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


def _check_finite(x: np.ndarray, what: str, index: pd.DatetimeIndex, ends: np.ndarray, window: int) -> None:
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        first = index[ends[bad][-1]]
        raise DataError(f"{what} windows ending as late as {first} contain NaN features (funding not yet settled "
                        f"or too little warm-up); load funding/candles from earlier or move train_end later")


def train_model(candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig, *, cost: float,
                train_end: pd.Timestamp, progress: Callable[[str], None] | None = None) -> TrainedModel:
    """Train on ``cfg.train_bars`` bars, stop early on the ``cfg.val_bars`` bars just before ``train_end``.

    ``candles``: OHLCV indexed by bar open time (UTC); ``funding``: ``funding_rate`` per settlement; ``cost``:
    round-trip cost as a log return for the labels (0.001 = 0.1 %); ``train_end``: the first bar the model will
    predict; nothing at or after it is read. ``progress`` receives one line per epoch.
    Raises DataError when the history is shorter than warm-up + window + train + validation.
    """
    data = select_training_data(candles, funding, cfg, train_end)
    plan = data.plan
    feats = compute_features(data.candles, data.funding, cfg.features, bar=data.bar)
    scaler = Scaler.fit(feats.iloc[plan.train_start:plan.val_start])
    x_all = scaler.transform(feats)                                           # (T, F) float32
    classes = (make_labels(data.candles, cfg.horizon, cost) + 1)
    tr_ends, va_ends = plan.train_ends, plan.val_ends
    tr_y = classes.iloc[tr_ends].to_numpy(np.int64)
    va_y = classes.iloc[va_ends].to_numpy(np.int64)
    _check_finite(make_windows(x_all, tr_ends, cfg.window), "training", feats.index, tr_ends, cfg.window)
    _check_finite(make_windows(x_all, va_ends, cfg.window), "validation", feats.index, va_ends, cfg.window)

    device = torch.device(cfg.device)
    train_ds = WindowDataset(x_all, tr_ends, tr_y, cfg.window)
    val_ds = WindowDataset(x_all, va_ends, va_y, cfg.window)
    weights_np = class_weights(tr_y) if cfg.class_weighting else None
    weights = None if weights_np is None else torch.from_numpy(weights_np).to(device)
    history: list[dict] = []
    rng_devices = [] if device.type == "cpu" else [device.index or 0]
    t_start = time.perf_counter()
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(cfg.seed)
        model = SignalNet.from_config(cfg, len(cfg.features)).to(device)
        generator = torch.Generator().manual_seed(cfg.seed)
        train_loader = make_loader(train_ds, cfg.batch_size, shuffle=True, generator=generator)
        val_loader = make_loader(val_ds, max(cfg.batch_size, 1024), shuffle=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        stopper, best_state = EarlyStopping(cfg.patience), None
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            train_loss, _ = run_epoch(model, train_loader, weights, device, optimizer)
            t1 = time.perf_counter()
            val_loss, val_acc = run_epoch(model, val_loader, weights, device)
            seconds = time.perf_counter() - t0
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc,
                            "seconds": seconds, "train_seconds": t1 - t0})
            if progress is not None:
                progress(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                         f"val acc {100 * val_acc:.1f}%  ({seconds:.1f} s)")
            improved, stop = stopper.update(epoch, val_loss)
            if improved:
                best_state = copy.deepcopy(model.state_dict())
            if stop:
                if progress is not None:
                    progress(f"early stop: no val loss improvement for {cfg.patience} epochs; "
                             f"keeping epoch {stopper.best_epoch} (val loss {stopper.best_loss:.4f})")
                break
        if best_state is None:
            raise ConfigError(f"training diverged: validation loss was {history[-1]['val_loss']} in every epoch; "
                              f"lower lr (now {cfg.lr})")
        model.load_state_dict(best_state)
        model.eval()
        val_probs = predict_probabilities(model, make_windows(x_all, va_ends, cfg.window))
    seconds_total = time.perf_counter() - t_start

    idx = data.candles.index
    iso = lambda ts: pd.Timestamp(ts).isoformat()  # noqa: E731
    end_ts = pd.Timestamp(train_end)
    train_seconds = sum(h["train_seconds"] for h in history)
    meta = {
        "format": META_FORMAT,
        "config": cfg.to_dict(),
        "features": list(cfg.features),
        "n_features": len(cfg.features),
        "scaler": scaler.to_dict(),
        "bar_seconds": data.bar.total_seconds(),
        "spans": {"history_start": iso(idx[0]), "train": [iso(idx[plan.train_start]), iso(idx[plan.val_start])],
                  "validation": [iso(idx[plan.val_start]), iso(end_ts)], "train_end": iso(end_ts)},
        "samples": {"train": int(len(tr_ends)), "validation": int(len(va_ends))},
        "cost": float(cost),
        "seed": cfg.seed,
        "data_sha256": data_sha256(data.candles, data.funding),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
                     "python": platform.python_version()},
        "class_weights": None if weights_np is None else [float(w) for w in weights_np],
        "train_label_balance": class_balance(tr_y),
        "validation": classification_metrics(val_probs, va_y, cfg.min_confidence),
        "training": {"epochs_run": len(history), "best_epoch": stopper.best_epoch, "best_val_loss": stopper.best_loss,
                     "history": history, "seconds": seconds_total,
                     "train_samples_per_second": len(tr_ends) * len(history) / max(train_seconds, 1e-9)},
        "decision_rule": {"rule": RULE, "min_confidence": cfg.min_confidence},
    }
    return TrainedModel(model, meta)
