"""Model quality next to trivial baselines: always-the-majority-class and the class prior, computed by hand."""

import math

import numpy as np
import pytest

from strategies.lstm.evaluation import (classification_metrics, compare_with_baselines, model_quality,
                                        trivial_baselines)

PRIOR = {"short": 0.2, "flat": 0.6, "long": 0.2}          # the training labels' shares


def test_majority_and_prior_scores_by_hand():
    classes = np.array([1] * 5 + [0] * 3 + [2] * 2)         # validation: 50 % flat, 30 % short, 20 % long
    out = trivial_baselines(classes, PRIOR)
    assert out["majority_class"] == "flat" and out["majority_accuracy"] == pytest.approx(0.5)
    assert out["prior_log_loss"] == pytest.approx(-(0.5 * math.log(0.6) + 0.3 * math.log(0.2) + 0.2 * math.log(0.2)))


def test_a_model_below_the_majority_class_is_flagged_and_a_better_one_is_not():
    classes = np.array([1, 1, 1, 0])
    always_long = np.tile([0.1, 0.2, 0.7], (4, 1))          # 0 % accuracy, worse log-loss than the prior
    bad = classification_metrics(always_long, classes, 0.0, PRIOR)
    assert (bad["accuracy"], bad["majority_accuracy"]) == (0.0, 0.75)
    assert bad["worse_than_majority"] is True and bad["worse_than_prior"] is True
    right = np.array([[0.05, 0.9, 0.05]] * 3 + [[0.9, 0.05, 0.05]])
    good = classification_metrics(right, classes, 0.0, PRIOR)
    assert good["worse_than_majority"] is False and good["worse_than_prior"] is False
    assert compare_with_baselines({"accuracy": None}) == {"worse_than_majority": None, "worse_than_prior": None}
    assert "majority_accuracy" not in classification_metrics(right, classes, 0.0)      # no prior: no baselines


def test_model_quality_is_plain_numbers_for_the_model_record():
    meta = {"validation": {"accuracy": 0.4, "log_loss": 1.05, "majority_class": "flat", "majority_accuracy": 0.5,
                           "prior_log_loss": 1.0, "worse_than_majority": True, "worse_than_prior": True,
                           "samples": 10},
            "decision_rule": {"tuning": {"min_confidence": 0.6, "trades": 7, "min_trades": 20, "trusted": False}}}
    q = model_quality(meta)
    assert q == {"val_accuracy": 0.4, "val_log_loss": 1.05, "val_majority_class": "flat",
                 "val_majority_accuracy": 0.5, "val_prior_log_loss": 1.0, "val_worse_than_majority": True,
                 "val_worse_than_prior": True, "validation_trades": 7, "min_validation_trades": 20,
                 "threshold_trusted": False, "tuned_threshold": 0.6}
    assert model_quality({}) == {}


def test_each_fold_record_carries_its_quality_numbers():
    from types import SimpleNamespace

    from strategies.lstm_strategy import model_fingerprint

    meta = {"data_sha256": "ab", "decision_rule": {"rule": "argmax", "min_confidence": 0.0,
                                                   "tuning": {"min_confidence": 0.5, "trades": 30, "min_trades": 20,
                                                              "trusted": True}},
            "validation": {"accuracy": 0.5, "majority_accuracy": 0.4, "worse_than_majority": False}}
    trained = SimpleNamespace(meta=meta, weights_sha256="cd", data_hash="ab", min_confidence=0.5, kind="lstm")
    record = model_fingerprint(trained, "fold-01")
    assert record.metrics == {"accuracy": 0.5, "val_accuracy": 0.5, "val_majority_accuracy": 0.4, "val_worse_than_majority": False,
                                 "validation_trades": 30, "min_validation_trades": 20, "threshold_trusted": True,
                                 "tuned_threshold": 0.5}
