"""Reuse a trained model from a cache directory instead of retraining, keyed by config, data and cost."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import pandas as pd

from data_feeds.files import atomic_write

from strategies.ml.checkpoint import META_FILE, cache_key, load_checkpoint, save_checkpoint
from strategies.ml.config import ModelConfig
from strategies.ml.errors import CheckpointError
from strategies.ml.train import TrainedModel, train_model, training_data_hash


def train_or_load(cache_dir: str | os.PathLike, candles: pd.DataFrame, funding: pd.DataFrame, cfg: ModelConfig, *,
                  cost: float, train_end: pd.Timestamp, progress: Callable[[str], None] | None = None
                  ) -> tuple[TrainedModel, Path]:
    """The model :func:`train_model` would return, loaded from ``cache_dir/<cache_key>`` when it is there.

    Otherwise (or when the cached copy is refused) trains and saves it there. Returns (model, its directory).
    """
    data_hash = training_data_hash(candles, funding, cfg, train_end)
    where = Path(cache_dir) / cache_key(cfg, data_hash, cost)
    say = progress or (lambda line: None)
    if (where / META_FILE).exists():
        try:
            _verify_checksums(where)
            trained = load_checkpoint(where, expect_config=cfg, expect_data_hash=data_hash, expect_cost=cost)
            say(f"using cached model {where}")
            return trained, where
        except CheckpointError as exc:
            say(f"warning: cached model refused ({exc}); retraining")
    trained = train_model(candles, funding, cfg, cost=cost, train_end=train_end, progress=progress)
    save_checkpoint(trained, where)
    _record_checksums(where)
    return trained, where


CHECKSUM_FILE = "sha256.json"
"""Next to a cached checkpoint: the sha256 of each of its files at write, verified before it is loaded."""


def _record_checksums(where: Path) -> None:
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(where.iterdir())
            if p.is_file() and p.name != CHECKSUM_FILE and not p.name.startswith(".")}
    atomic_write(where / CHECKSUM_FILE, json.dumps(sums, indent=1, sort_keys=True) + "\n")


def _verify_checksums(where: Path) -> None:
    """Raise CheckpointError unless every file recorded in ``sha256.json`` has the bytes it had when written."""
    try:
        sums = json.loads((where / CHECKSUM_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{where / CHECKSUM_FILE} is missing or unreadable, so the checkpoint cannot be "
                              "verified") from None
    if not isinstance(sums, dict) or not sums:
        raise CheckpointError(f"{where / CHECKSUM_FILE} records no checksums")
    for name, digest in sums.items():
        path = where / str(name)
        if path.parent != where or not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise CheckpointError(f"{path} does not match its checksum recorded at write (corrupt or modified)")
