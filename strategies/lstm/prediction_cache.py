"""Batched predictions kept on disk, keyed by the model's weights and the exact input rows.

A second backtest or a comparison over the same span then reads the probabilities instead of running the
network again. The key covers everything the numbers depend on: the weights, the candles and funding handed to
the Predictor, the span start, the window, the inference chunk and the device type (CPU and CUDA kernels differ in
the last float32 bits). Not the thread count: CPU results are bit-identical on 1 and N threads
(``tests/test_inference_threads.py``), so a pass run on whatever cores were free is reused by the next run. Files are plain ``.npy`` arrays read with ``allow_pickle=False``; an unreadable or
mismatched file is ignored and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data_feeds.files import atomic_path


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over a model's tensors in ``state_dict`` order (names and float bytes): equal weights, equal hash."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def prediction_key(weights: str, candles: pd.DataFrame, funding: pd.DataFrame, span_start: pd.Timestamp, *,
                   window: int, chunk: int, device: str = "cpu") -> str:
    """Cache key of one batched pass (see the module docstring)."""
    h = hashlib.sha256(f"{weights}|{pd.Timestamp(span_start).isoformat()}|{window}|{chunk}|{device}".encode())
    for frame in (candles, funding):
        h.update(frame.index.as_unit("ns").asi8.tobytes())
        h.update(frame.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()[:32]


def load_predictions(folder: str | os.PathLike, key: str, rows: int) -> np.ndarray | None:
    """The cached (rows, 3) probabilities for ``key``, or None when absent, unreadable or of another shape."""
    path = Path(folder) / f"{key}.npy"
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return probs if probs.shape == (rows, 3) and probs.dtype == np.float64 else None


def save_predictions(folder: str | os.PathLike, key: str, probs: np.ndarray) -> Path:
    """Store ``probs`` under ``key`` atomically; returns the file's path."""
    path = Path(folder) / f"{key}.npy"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(probs, dtype=np.float64), allow_pickle=False)
    return path
