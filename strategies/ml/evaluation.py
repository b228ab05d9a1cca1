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


def class_prior(balance: dict[str, float] | np.ndarray) -> np.ndarray:
    """(3,) class shares (short, flat, long) from a :func:`class_balance` dict or an array of shares."""
    if isinstance(balance, dict):
        return np.array([float(balance[name]) for name in CLASS_NAMES])
    return np.asarray(balance, dtype=np.float64)


def trivial_baselines(classes: np.ndarray, train_prior: dict[str, float] | np.ndarray) -> dict:
    """Scores of two models that know nothing but the training labels' shares ``train_prior`` (a
    :func:`class_balance` of the training labels), on ``classes`` (the evaluated span).

    - ``majority_accuracy``: always answer the training span's most frequent class (``majority_class``).
    - ``prior_log_loss``: always answer the training span's class shares as probabilities (the class prior;
      a class absent from training gets a tiny probability, so the loss stays finite).

    Training labels 60 % flat, 20 % short, 20 % long evaluated on 50 % flat, 30 % short, 20 % long:
    majority accuracy 0.50, prior log-loss -(0.5 ln 0.6 + 0.3 ln 0.2 + 0.2 ln 0.2) = 1.0150.
    """
    classes = np.asarray(classes, dtype=np.int64)
    prior = class_prior(train_prior)
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(3, 1.0 / 3.0)
    majority = int(np.argmax(prior))
    n = len(classes)
    return {
        "majority_class": CLASS_NAMES[majority],
        "majority_accuracy": float(np.mean(classes == majority)) if n else None,
        "prior_log_loss": log_loss(np.tile(prior, (n, 1)), classes) if n else None,
    }


def compare_with_baselines(metrics: dict) -> dict:
    """Flags from :func:`classification_metrics` output holding both model and baseline scores:
    ``worse_than_majority`` (accuracy below always-the-majority-class) and ``worse_than_prior`` (log-loss above
    the class prior's); None when a score is missing."""
    acc, maj = metrics.get("accuracy"), metrics.get("majority_accuracy")
    loss, prior = metrics.get("log_loss"), metrics.get("prior_log_loss")
    return {"worse_than_majority": None if acc is None or maj is None else bool(acc < maj),
            "worse_than_prior": None if loss is None or prior is None else bool(loss > prior)}


def classification_metrics(probabilities: np.ndarray, classes: np.ndarray, min_confidence: float,
                           train_prior: dict[str, float] | np.ndarray | None = None) -> dict:
    """Accuracy, log-loss, label and call balance, and hit rate of LONG/SHORT calls under the decision rule.

    A call is a hit when the label agrees with it, i.e. the trade would have beaten the round-trip cost.
    ``long_hit_rate`` is None when the rule made no LONG call. Inputs: probabilities (N, 3), classes (N,) in 0..2.
    With ``train_prior`` (the training labels' :func:`class_balance`) the scores of :func:`trivial_baselines` and the flags of
    :func:`compare_with_baselines` are added, so a model can be read against always-the-majority-class and the
    class prior on the same samples.
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
    if train_prior is not None:
        out.update(trivial_baselines(classes, train_prior))
        out.update(compare_with_baselines(out))
    return out


QUALITY_KEYS = ("accuracy", "log_loss", "majority_class", "majority_accuracy", "prior_log_loss",
                "worse_than_majority", "worse_than_prior")


def model_quality(meta: dict) -> dict:
    """Plain numbers for a model record (``ModelRecord.metrics``) from a checkpoint's metadata.

    Validation scores next to the trivial baselines (``val_accuracy`` vs ``val_majority_accuracy``,
    ``val_log_loss`` vs ``val_prior_log_loss``) with their flags, and the threshold's trust:
    ``validation_trades`` under the tuned threshold, ``min_validation_trades`` and ``threshold_trusted``
    (None when the threshold was not tuned). Keys missing from older checkpoints are left out.
    """
    validation = meta.get("validation", {})
    out = {f"val_{k}": validation[k] for k in QUALITY_KEYS if k in validation}
    tuning = meta.get("decision_rule", {}).get("tuning")
    if tuning and "trusted" in tuning:
        out.update(validation_trades=tuning["trades"], min_validation_trades=tuning["min_trades"],
                   threshold_trusted=tuning["trusted"], tuned_threshold=tuning["min_confidence"])
    return out
