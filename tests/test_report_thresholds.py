"""The confidence threshold drawn under the model's probabilities: per fold when tuned, else the configured one."""

from types import SimpleNamespace

import pandas as pd

from reports.writer import decision_thresholds


def result(typed=None, model=None):
    typed = typed or {}
    return SimpleNamespace(models=typed.get("checkpoints", []), fold_boundaries=typed.get("fold_boundaries", []),
                           config={"model": model or {}})


def test_walk_forward_thresholds_are_a_step_per_fold():
    r = result({"checkpoints": [{"min_confidence": 0.44}, {"min_confidence": 0.38}],
                "fold_boundaries": ["2024-07-01T00:00:00+00:00", "2024-09-29T00:00:00+00:00"]})
    steps = decision_thresholds(r)
    assert list(steps) == [0.44, 0.38]
    assert list(steps.index) == [pd.Timestamp("2024-07-01", tz="UTC"), pd.Timestamp("2024-09-29", tz="UTC")]


def test_one_model_gives_its_own_threshold():
    assert decision_thresholds(result({"checkpoints": [{"min_confidence": 0.5}], "fold_boundaries": []})) == 0.5


def test_without_checkpoints_the_configured_threshold_is_used():
    assert decision_thresholds(result(model={"min_confidence": 0.45})) == 0.45
    assert decision_thresholds(result()) is None
