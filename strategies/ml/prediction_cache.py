"""Batched predictions kept on disk, keyed by the model's weights and the exact input rows.

A second backtest or a comparison over the same span then reads the probabilities instead of running the
network again. The key covers everything the numbers depend on: the weights, the candles and funding handed to
the Predictor, the span start, the window, the inference chunk and the device type (CPU and CUDA kernels differ in
the last float32 bits; not the thread count: CPU results are bit-identical on 1 and N threads). Files are plain ``.npy`` arrays read with ``allow_pickle=False``; an unreadable or
mismatched file is ignored and recomputed, never trusted. Next to each ``<key>.npy`` a ``<key>.sha256`` records
the file's checksum at write; an entry whose bytes do not match it (overwritten, truncated, half-copied) is
recomputed and a warning says so (logger ``lstmbt.cache``, printed by the CLI).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data_feeds.files import atomic_path, atomic_write

log = logging.getLogger("lstmbt.cache")


def state_sha256(tensors: dict) -> str:
    """sha256 over a model's state arrays in key order (names and bytes): equal weights, equal hash.

    Values are torch tensors or numpy arrays; for a torch net this is its ``state_dict``.
    """
    h = hashlib.sha256()
    for key, value in tensors.items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous().numpy()
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def weights_sha256(model) -> str:
    """:func:`state_sha256` of a model: a :class:`~strategies.ml.protocol.Model` (its ``state()`` arrays) or a
    torch ``nn.Module`` (its ``state_dict``)."""
    if isinstance(model, torch.nn.Module):
        return state_sha256(model.state_dict())
    return state_sha256(model.state()[0])


def prediction_key(weights: str, candles: pd.DataFrame, funding: pd.DataFrame, span_start: pd.Timestamp, *,
                   window: int, chunk: int, device: str = "cpu") -> str:
    """Cache key of one batched pass (see the module docstring)."""
    h = hashlib.sha256(f"{weights}|{pd.Timestamp(span_start).isoformat()}|{window}|{chunk}|{device}".encode())
    for frame in (candles, funding):
        h.update(frame.index.as_unit("ns").asi8.tobytes())
        h.update(frame.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()[:32]


def load_predictions(folder: str | os.PathLike, key: str, rows: int) -> np.ndarray | None:
    """The cached (rows, 3) probabilities for ``key``, or None when absent, unreadable, of another shape or not
    matching the checksum recorded at write (then a warning names the entry: it will be recomputed)."""
    path = Path(folder) / f"{key}.npy"
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        recorded = path.with_suffix(".sha256").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        recorded = None
    if recorded != hashlib.sha256(blob).hexdigest():
        log.warning("prediction cache entry %s does not match its recorded checksum (corrupt or modified); "
                    "recomputing it", path)
        return None
    try:
        import io

        probs = np.load(io.BytesIO(blob), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        log.warning("prediction cache entry %s is unreadable; recomputing it", path)
        return None
    if probs.shape != (rows, 3) or probs.dtype != np.float64 or not np.isfinite(probs).all():
        log.warning("prediction cache entry %s holds %s %s, not (%d, 3) finite float64; recomputing it", path,
                    probs.shape, probs.dtype, rows)
        return None
    return probs


def save_predictions(folder: str | os.PathLike, key: str, probs: np.ndarray) -> Path:
    """Store ``probs`` under ``key`` atomically, with its checksum in ``<key>.sha256``; returns the file's path."""
    path = Path(folder) / f"{key}.npy"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(probs, dtype=np.float64), allow_pickle=False)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        atomic_write(path.with_suffix(".sha256"), digest + "\n")
    return path
