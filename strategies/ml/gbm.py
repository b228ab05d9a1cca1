"""Gradient-boosted trees (LightGBM) on the decision bar's scaled features: a strong non-deep baseline.

Model kind ``gbm``, an optional extra: ``pip install 'lstmbt[gbm]'`` (LightGBM). A multiclass booster over
(SHORT, FLAT, LONG) on the F scaled features of the decision bar (input kind ``"rows"``), trained with the
training labels' class weights as sample weights and early-stopped on the validation span's weighted log-loss
(at most ``n_estimators`` trees, stop after ``early_stopping`` rounds without improvement). ``[model.options]``:
``n_estimators`` (400), ``learning_rate`` (0.05), ``num_leaves`` (15), ``min_child_samples`` (100),
``feature_fraction`` (1.0), ``early_stopping`` (30).

Training runs on one thread with LightGBM's ``deterministic`` mode and the run's seed: same data and seed, same
trees. The state is the booster's own text dump (``model_to_string``) stored as an array of bytes, next to JSON:
no pickle.
"""

from __future__ import annotations

import numpy as np

from strategies.ml.errors import ConfigError
from strategies.ml.protocol import FitData, ModelSpec

EXTRA = "pip install 'lstmbt[gbm]'"
DEFAULTS = {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 100,
            "feature_fraction": 1.0, "early_stopping": 30}


def _lightgbm():
    try:
        import lightgbm
    except ImportError:
        raise ConfigError(f"model kind 'gbm' needs LightGBM, an optional extra: {EXTRA}") from None
    except OSError as exc:          # the wheel links the system's OpenMP runtime (Debian: apt install libgomp1)
        raise ConfigError(f"model kind 'gbm': LightGBM is installed but cannot load ({exc}); on Debian or Ubuntu "
                          f"install its OpenMP runtime: apt install libgomp1") from None
    return lightgbm


def _weighted_log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    sw = w[y]
    return float(-(sw * np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))).sum() / max(sw.sum(), 1e-12))


class GradientBoostingModel:
    """Kind ``gbm`` (see the module docstring)."""

    input_kind = "rows"
    requires = "lightgbm"                    # the optional package this kind needs (checked before any data loads)

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        unknown = sorted(set(spec.options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"gbm: unknown option(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        self.options = {**DEFAULTS, **spec.options}
        for key in ("n_estimators", "num_leaves", "min_child_samples", "early_stopping"):
            value = self.options[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"gbm: options.{key} must be a whole number >= 1, got {value!r}")
        for key in ("learning_rate", "feature_fraction"):
            value = self.options[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ConfigError(f"gbm: options.{key} must be a number in (0, 1], got {value!r}")
        self.booster = None

    def _params(self, seed: int) -> dict:
        o = self.options
        return {"objective": "multiclass", "num_class": 3, "learning_rate": float(o["learning_rate"]),
                "num_leaves": o["num_leaves"], "min_child_samples": o["min_child_samples"],
                "feature_fraction": float(o["feature_fraction"]), "seed": seed, "deterministic": True,
                "force_row_wise": True, "num_threads": 1, "verbosity": -1}

    def fit(self, train: FitData, val: FitData, *, seed: int, progress=None) -> dict:
        lgb = _lightgbm()
        w = np.ones(3) if train.class_weights is None else np.asarray(train.class_weights, dtype=np.float64)
        x, xv = np.asarray(train.x, np.float64), np.asarray(val.x, np.float64)
        dtrain = lgb.Dataset(x, label=train.y, weight=w[train.y], free_raw_data=False)
        dval = lgb.Dataset(xv, label=val.y, weight=w[val.y], reference=dtrain, free_raw_data=False)
        evals: dict = {}
        booster = lgb.train(self._params(seed), dtrain, num_boost_round=self.options["n_estimators"],
                            valid_sets=[dval], valid_names=["val"],
                            callbacks=[lgb.early_stopping(self.options["early_stopping"], verbose=False),
                                       lgb.record_evaluation(evals)])
        self.booster = booster
        best = int(booster.best_iteration or booster.current_iteration())
        val_loss = _weighted_log_loss(self.predict_proba(xv), val.y, w)
        if progress:
            progress(f"gbm: {best} trees (of {booster.current_iteration()} grown), val loss {val_loss:.4f}")
        curve = evals.get("val", {}).get("multi_logloss", [])
        history = [{"epoch": i + 1, "val_loss": float(v)} for i, v in enumerate(curve)]
        return {"epochs_run": booster.current_iteration(), "best_epoch": best, "best_val_loss": val_loss,
                "history": history}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) probabilities for rows (N, F)."""
        if self.booster is None:
            raise ValueError("gbm: predict_proba before fit")
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return np.zeros((0, 3))
        p = self.booster.predict(x, num_iteration=self.booster.best_iteration or None)
        return np.asarray(p, dtype=np.float64).reshape(len(x), 3)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        text = self.booster.model_to_string(num_iteration=self.booster.best_iteration or None)
        return {"booster": np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()}, \
            {"format": "lightgbm model_to_string", "best_iteration": int(self.booster.best_iteration or 0)}

    @classmethod
    def from_state(cls, spec: ModelSpec, tensors: dict, meta: dict) -> "GradientBoostingModel":
        lgb = _lightgbm()
        model = cls(spec)
        text = np.asarray(tensors["booster"], dtype=np.uint8).tobytes().decode("utf-8")
        model.booster = lgb.Booster(model_str=text)
        if model.booster.num_feature() != spec.n_features:
            raise ValueError(f"gbm booster has {model.booster.num_feature()} features, the config {spec.n_features}")
        return model
