"""The torch training loop shared by the shipped networks (LSTM, GRU, Transformer): Adam, class-weighted
cross-entropy, early stopping on the validation loss. Train and validation share one step function."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from strategies.ml.dataset import make_loader
from strategies.ml.errors import ConfigError
from strategies.ml.protocol import FitData


class ArrayDataset(Dataset):
    """Samples (x[k] float32, y[k] int64) of a :class:`~strategies.ml.protocol.FitData`; ``x`` may be a
    read-only window view. ``__getitems__`` gathers a whole batch with one numpy index."""

    def __init__(self, data: FitData) -> None:
        self.x = data.x
        self.targets = torch.as_tensor(np.asarray(data.y), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.x[k], dtype=np.float32)), self.targets[k]

    def __getitems__(self, ks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(ks, dtype=np.int64)
        return torch.from_numpy(np.array(self.x[idx], dtype=np.float32)), self.targets[torch.from_numpy(idx)]


def weighted_loss_sums(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of w_i * CE_i, sum of w_i) for a batch: logits (B, 3), y (B,); w = 1 when ``weights`` is None."""
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    w = torch.ones_like(losses) if weights is None else weights[y]
    return (w * losses).sum(), w.sum()


def run_epoch(model: nn.Module, loader, weights: torch.Tensor | None, device: torch.device,
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


def fit_network(model: nn.Module, train: FitData, val: FitData, cfg, seed: int,
                progress: Callable[[str], None] | None) -> tuple[nn.Module, EarlyStopping, list[dict]]:
    """Train ``model`` (already on ``cfg.device``; built inside the caller's seeded RNG scope) on ``train``.

    ``cfg`` gives epochs, patience, batch_size, lr, weight_decay; ``seed`` the batch order. Returns the net holding
    its best epoch's weights (eval mode), the stopper (best epoch and loss) and one history row per epoch.
    """
    device = torch.device(cfg.device)
    train_ds, val_ds = ArrayDataset(train), ArrayDataset(val)
    weights = loss_weights(train, device)
    train_loader = make_loader(train_ds, cfg.batch_size, shuffle=True,
                               generator=torch.Generator().manual_seed(seed))
    val_loader = make_loader(val_ds, max(cfg.batch_size, 1024), shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return train_epochs(model, cfg, progress,
                        train_epoch=lambda: run_epoch(model, train_loader, weights, device, optimizer)[0],
                        validate=lambda: run_epoch(model, val_loader, weights, device))


def loss_weights(train: FitData, device: torch.device) -> torch.Tensor | None:
    """The training span's class weights as a (3,) float32 tensor on ``device`` (None: unweighted)."""
    if train.class_weights is None:
        return None
    return torch.from_numpy(np.asarray(train.class_weights, dtype=np.float32)).to(device)


def train_epochs(model: nn.Module, cfg, progress: Callable[[str], None] | None, *,
                 train_epoch: Callable[[], float], validate: Callable[[], tuple[float, float]]
                 ) -> tuple[nn.Module, EarlyStopping, list[dict]]:
    """The epoch loop every shipped net shares: up to ``cfg.epochs`` epochs of ``train_epoch()`` (returns the
    training loss) then ``validate()`` (returns validation loss and accuracy), early stopping after
    ``cfg.patience`` epochs without a better validation loss, a progress line and a history row per epoch.

    Returns the net holding its best epoch's weights (eval mode), the stopper and the history.
    """
    stopper, best_state, history = EarlyStopping(cfg.patience), None, []
    say = progress or (lambda line: None)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch()
        t1 = time.perf_counter()
        val_loss, val_acc = validate()
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
