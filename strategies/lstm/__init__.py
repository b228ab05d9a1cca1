"""The LSTM signal model: causal features, labels net of costs, training, checkpoints and the per-bar Predictor.

>>> from strategies.lstm import ModelConfig, train_model, Predictor                     # doctest: +SKIP
>>> trained = train_model(candles, funding, ModelConfig(), cost=0.001, train_end=t0)   # doctest: +SKIP
>>> p = Predictor(trained); p.attach(candles, funding, t0); p.signal(0)                # doctest: +SKIP
"""

from strategies.lstm.cache import train_or_load
from strategies.lstm.checkpoint import cache_key, load_checkpoint, save_checkpoint
from strategies.lstm.config import ModelConfig
from strategies.lstm.errors import CheckpointError, ConfigError
from strategies.lstm.predictor import Predictor
from strategies.lstm.train import TrainedModel, train_model, training_data_hash

__all__ = ["CheckpointError", "ConfigError", "ModelConfig", "Predictor", "TrainedModel", "cache_key",
           "load_checkpoint", "save_checkpoint", "train_model", "train_or_load", "training_data_hash"]
