"""The decision rule that turns class probabilities into a Signal, shared by the Predictor and validation metrics."""

from __future__ import annotations

import numpy as np

from strategies.signal import Signal

RULE = "argmax; FLAT unless the winning probability >= min_confidence"


def decide(probabilities: np.ndarray, min_confidence: float) -> np.ndarray:
    """Signal values (N,) int8 from probabilities (N, 3) ordered (short, flat, long).

    The most probable class wins (ties go to the earlier class), but a LONG or SHORT win below ``min_confidence``
    becomes FLAT: (0.2, 0.35, 0.45) -> LONG at min_confidence 0.4, FLAT at 0.5.
    """
    p = np.asarray(probabilities)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must be (N, 3), got shape {p.shape}")
    best = p.argmax(axis=1)
    confident = p[np.arange(len(p)), best] >= min_confidence
    return np.where(confident, best - 1, int(Signal.FLAT)).astype(np.int8)
