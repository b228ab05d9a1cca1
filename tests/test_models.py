"""The model seam: every shipped kind and a user's model trained through one protocol, deterministic, saved as
tensors + JSON, predicting the same batched and online, and a broken model refused in one line."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategies.ml import (CheckpointError, Model, ModelConfig, ModelError, Predictor, load_checkpoint, model_class,
                           save_checkpoint, train_model)
from conftest import btc_1h_early_2023

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=2, batch_size=64, lr=0.01)
EXAMPLE = Path(__file__).resolve().parents[1] / "strategies" / "examples" / "my_model.py"
try:
    import lightgbm  # noqa: F401
    NO_GBM = False
except (ImportError, OSError):         # not installed, or its OpenMP runtime (libgomp1) is missing
    NO_GBM = True
GBM = pytest.param("gbm", marks=pytest.mark.skipif(NO_GBM, reason="LightGBM absent: pip install 'lstmbt[gbm]' "
                                                                  "(the test extra installs it)"))
KINDS = ("transformer", "logreg", GBM)      # lstm/gru: the tests of strategies.lstm (one network, two cells)
market = btc_1h_early_2023


@functools.lru_cache(maxsize=None)
def trained(kind: str):
    return train_model(*market(), TINY.replace(kind=kind), cost=0.001, train_end=TRAIN_END)


def span_probabilities(model, mode: str = "batched") -> pd.DataFrame:
    c, f = market()
    p = Predictor(model, mode, chunk=32)
    p.attach(c[c.index < TRAIN_END + pd.Timedelta(hours=48)], f, TRAIN_END)
    if mode == "online":
        [p.probabilities(i) for i in range(len(p))]
    return p.probability_frame()


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_a_protocol_model_and_the_same_seed_gives_identical_predictions(kind):
    first = trained(kind)
    assert isinstance(first.model, Model) and first.kind == kind
    again = train_model(*market(), TINY.replace(kind=kind), cost=0.001, train_end=TRAIN_END)
    pd.testing.assert_frame_equal(span_probabilities(first), span_probabilities(again), check_exact=True)
    assert first.weights_sha256 == again.weights_sha256
    assert first.meta["model"]["input_kind"] == ("rows" if kind in ("logreg", "gbm") else "windows")


@pytest.mark.parametrize("kind", KINDS)
def test_online_answers_equal_the_batched_pass(kind):
    batched, online = span_probabilities(trained(kind)), span_probabilities(trained(kind), "online")
    pd.testing.assert_frame_equal(batched, online, atol=1e-6)
    assert np.allclose(batched.sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip_restores_the_same_predictions(kind, tmp_path):
    original = trained(kind)
    loaded = load_checkpoint(save_checkpoint(original, tmp_path / kind), expect_config=TINY.replace(kind=kind))
    assert loaded.weights_sha256 == original.weights_sha256
    pd.testing.assert_frame_equal(span_probabilities(loaded), span_probabilities(original), check_exact=True)


def test_gru_is_one_name_for_the_recurrent_net_with_a_gru_cell():
    assert ModelConfig(kind="gru").cell == "gru" and ModelConfig(cell="gru").kind == "gru"
    assert model_class("gru") is model_class("lstm")
    with pytest.raises(ValueError, match="unknown model kind 'xgboost'"):
        ModelConfig(kind="xgboost")


def test_logreg_keeps_the_l2_strength_with_the_best_validation_loss():
    fit = trained("logreg").meta["training"]
    losses = {row["l2"]: row["val_loss"] for row in fit["history"]}
    assert len(losses) == 5 and fit["l2"] == min(losses, key=losses.get)


def test_a_checkpoint_that_does_not_fit_its_kind_is_one_line(tmp_path):
    where = save_checkpoint(trained("transformer"), tmp_path / "t")
    meta = json.loads((where / "meta.json").read_text())
    meta["config"]["hidden"] = 16                    # the stored weights are for hidden 8
    (where / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit a transformer model") as err:
        load_checkpoint(where)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"trained with another config: .*kind='transformer' \(expected 'logreg'\)"):
        load_checkpoint(where, expect_config=TINY.replace(kind="logreg"))


def test_a_user_model_file_outside_the_repo_trains_caches_and_reloads(tmp_path):
    user = tmp_path / "elsewhere" / "my_model.py"
    user.parent.mkdir()
    shutil.copy(EXAMPLE, user)
    cfg = TINY.replace(kind=f"{user}:MyModel", options={"hidden": 4, "steps": 50})
    a = train_model(*market(), cfg, cost=0.001, train_end=TRAIN_END)
    b = train_model(*market(), cfg, cost=0.001, train_end=TRAIN_END)
    assert a.meta["model"]["source_sha256"] and a.weights_sha256 == b.weights_sha256
    loaded = load_checkpoint(save_checkpoint(a, tmp_path / "ckpt"), expect_config=cfg)
    pd.testing.assert_frame_equal(span_probabilities(loaded), span_probabilities(a), check_exact=True)
    pd.testing.assert_frame_equal(span_probabilities(a), span_probabilities(a, "online"), atol=1e-9)


@pytest.mark.parametrize("source, kind, message", [
    (None, "nowhere.py:MyModel", "not found"),
    ("x = 1\n", "{path}:MyModel", "no class 'MyModel'"),
    ("import no_such_package_xyz\n", "{path}:MyModel", "import failed: ModuleNotFoundError"),
    ("class MyModel:\n    input_kind = 'rows'\n    def fit(self): ...\n", "{path}:MyModel",
     "lacks predict_proba, state, from_state"),
    ("class MyModel:\n    input_kind = 'table'\n    fit = predict_proba = state = from_state = print\n",
     "{path}:MyModel", "input_kind must be one of"),
    (None, "no_such_package_xyz.models:MyModel", "model module 'no_such_package_xyz.models' not found"),
])
def test_a_broken_user_model_is_one_line_naming_the_file(tmp_path, source, kind, message):
    path = tmp_path / "bad_model.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(ModelError, match=message) as err:
        model_class(kind.format(path=path))
    assert "\n" not in str(err.value)


def test_a_model_returning_no_probabilities_is_refused(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text(EXAMPLE.read_text() + "\n\nclass Wrong(MyModel):\n"
                    "    def predict_proba(self, x):\n        return super().predict_proba(x)[:, :2]\n")
    with pytest.raises(ModelError, match=r"Wrong.predict_proba returned shape \(\d+, 2\), expected"):
        train_model(*market(), TINY.replace(kind=f"{path}:Wrong", options={"steps": 25}), cost=0.001,
                    train_end=TRAIN_END)


def test_without_lightgbm_the_gbm_kind_is_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lightgbm", None)       # as if the extra were not installed
    with pytest.raises(ModelError, match=r"^model kind 'gbm' needs the optional package lightgbm: "
                                         r"pip install 'lstmbt\[gbm\]'$"):
        model_class("gbm")


@pytest.mark.skipif(NO_GBM, reason="LightGBM absent: pip install 'lstmbt[gbm]' (the test extra installs it)")
def test_gbm_state_is_the_boosters_text_as_bytes_and_json_never_a_pickle():
    model = trained("gbm").model
    tensors, meta = model.state()
    assert list(tensors) == ["booster"] and tensors["booster"].dtype == np.uint8
    assert tensors["booster"].tobytes().startswith(b"tree\n") and json.loads(json.dumps(meta)) == meta
    assert 1 <= trained("gbm").meta["training"]["best_epoch"] <= 400
