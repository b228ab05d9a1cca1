"""Model-neutral walk-forward machinery and the model seam.

Any :class:`Model` (the shipped ``lstm``, ``gru``, ``transformer``, ``logreg``, or a user's class from
``file.py:Class``) is driven by the same pipeline: causal features, a scaler fitted on training rows only,
labels net of the round-trip cost, purged training/validation spans, walk-forward folds, a validation-tuned
decision threshold, model and prediction caches, the per-bar :class:`Predictor` and the lookahead probe.

>>> from strategies.ml import ModelConfig, train_model, Predictor                       # doctest: +SKIP
>>> trained = train_model(candles, funding, ModelConfig(kind="logreg"), cost=0.0012, train_end=t0)  # doctest: +SKIP
>>> p = Predictor(trained); p.attach(candles, funding, t0); p.signal(0)                # doctest: +SKIP
"""

from strategies.ml.cache import train_or_load
from strategies.ml.checkpoint import cache_key, load_checkpoint, save_checkpoint
from strategies.ml.config import BUILTIN_KINDS, ModelConfig
from strategies.ml.errors import CheckpointError, ConfigError
from strategies.ml.kinds import ModelError, model_class
from strategies.ml.predictor import Predictor
from strategies.ml.protocol import FitData, Model, ModelSpec
from strategies.ml.train import TrainedModel, train_model, training_data_hash
from strategies.ml.walkforward import WalkForwardPredictor, train_walk_forward, walk_forward_folds

__all__ = ["BUILTIN_KINDS", "CheckpointError", "ConfigError", "FitData", "Model", "ModelConfig", "ModelError",
           "ModelSpec", "Predictor", "TrainedModel", "WalkForwardPredictor", "cache_key", "load_checkpoint",
           "model_class", "save_checkpoint", "train_model", "train_or_load", "train_walk_forward",
           "training_data_hash", "walk_forward_folds"]
