"""Reuse a trained model from a cache directory instead of retraining, keyed by config, data and cost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

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
            trained = load_checkpoint(where, expect_config=cfg, expect_data_hash=data_hash, expect_cost=cost)
            say(f"using cached model {where}")
            return trained, where
        except CheckpointError as exc:
            say(f"cached model refused ({exc}); retraining")
    trained = train_model(candles, funding, cfg, cost=cost, train_end=train_end, progress=progress)
    save_checkpoint(trained, where)
    return trained, where
