"""Content hashes of frames, for manifests and model caches."""

from __future__ import annotations

import hashlib

import pandas as pd


def frame_sha256(df: pd.DataFrame) -> str:
    """SHA-256 over a frame's nanosecond timestamps, column names and float64 values (independent of file format)."""
    h = hashlib.sha256()
    h.update(df.index.as_unit("ns").asi8.tobytes())
    h.update(",".join(map(str, df.columns)).encode())
    h.update(df.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()
