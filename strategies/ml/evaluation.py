"""Classification scores of a model on labelled samples (pure numpy), stored in each checkpoint's metadata."""

from __future__ import annotations

import numpy as np

from strategies.ml.decision import decide
from strategies.signal import CLASS_NAMES, Signal


def class_balance(classes: np.ndarray) -> dict[str, float]:
    """Share of each class: classes [0, 1, 1, 2] -> {"short": 0.25, "flat": 0.5, "long": 0.25}."""
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=3)[:3]
    total = max(int(counts.sum()), 1)
    return {name: float(c) / total for name, c in zip(CLASS_NAMES, counts)}


def class_weights(classes: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights (3,) float32, mean 1 over samples: N / (3 * n_c); 0 for an absent class.

    Classes 60 % flat, 20 % short, 20 % long -> weights (1.667, 0.556, 1.667).
    """
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=3)[:3].astype(np.float64)
    weights = np.divide(counts.sum(), 3.0 * counts, out=np.zeros(3), where=counts > 0)
    return weights.astype(np.float32)


def log_loss(probabilities: np.ndarray, classes: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log probability of the true class (nats); uniform guessing over 3 classes -> 1.0986."""
    p = np.asarray(probabilities, dtype=np.float64)
    picked = p[np.arange(len(p)), np.asarray(classes, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


def classification_metrics(probabilities: np.ndarray, classes: np.ndarray, min_confidence: float) -> dict:
    """Accuracy, log-loss, label and call balance, and hit rate of LONG/SHORT calls under the decision rule.

    A call is a hit when the label agrees with it, i.e. the trade would have beaten the round-trip cost.
    ``long_hit_rate`` is None when the rule made no LONG call. Inputs: probabilities (N, 3), classes (N,) in 0..2.
    """
    classes = np.asarray(classes, dtype=np.int64)
    calls = decide(probabilities, min_confidence).astype(np.int64) + 1
    out: dict = {
        "samples": int(len(classes)),
        "accuracy": float(np.mean(np.asarray(probabilities).argmax(axis=1) == classes)) if len(classes) else None,
        "log_loss": log_loss(probabilities, classes) if len(classes) else None,
        "label_balance": class_balance(classes),
        "call_balance": class_balance(calls),
    }
    for sig in (Signal.LONG, Signal.SHORT):
        name = CLASS_NAMES[sig.class_index]
        made = calls == sig.class_index
        out[f"{name}_calls"] = int(made.sum())
        out[f"{name}_hit_rate"] = float(np.mean(classes[made] == sig.class_index)) if made.any() else None
    return out
