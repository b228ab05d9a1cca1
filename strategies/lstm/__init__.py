"""The shipped torch networks: ``SignalNet`` (LSTM or GRU) and ``TransformerNet``, their training loop, and
their :class:`~strategies.ml.protocol.Model` adapters (``RecurrentModel``, ``TransformerModel``), and the stateful
recurrent kinds that carry their state bar to bar (``StatefulRecurrentModel`` in :mod:`strategies.lstm.stateful`).

The model-neutral pipeline (features, labels, folds, training driver, checkpoints, Predictor) lives in
:mod:`strategies.ml`. Its modules moved from here; the old import paths (``strategies.lstm.features``,
``strategies.lstm.predictor``...) still work: each is the same module object as ``strategies.ml.<name>``.

>>> from strategies.lstm import ModelConfig, train_model, Predictor                     # doctest: +SKIP
>>> trained = train_model(candles, funding, ModelConfig(), cost=0.001, train_end=t0)   # doctest: +SKIP
>>> p = Predictor(trained); p.attach(candles, funding, t0); p.signal(0)                # doctest: +SKIP
"""

import importlib
import sys

MOVED = ("cache", "checkpoint", "config", "dataset", "decision", "errors", "evaluation", "features", "folds",
         "inference", "labels", "prediction_cache", "predictor", "spans", "threshold", "train", "walkforward")
for _name in MOVED:      # old path -> the moved module itself (not a copy), so patches and isinstance agree
    _module = importlib.import_module(f"strategies.ml.{_name}")
    sys.modules.setdefault(f"{__name__}.{_name}", _module)
    globals()[_name] = _module

from strategies.ml import (CheckpointError, ConfigError, ModelConfig, Predictor, TrainedModel,  # noqa: E402
                           cache_key, load_checkpoint, save_checkpoint, train_model, train_or_load,
                           training_data_hash)

__all__ = ["CheckpointError", "ConfigError", "ModelConfig", "Predictor", "TrainedModel", "cache_key",
           "load_checkpoint", "save_checkpoint", "train_model", "train_or_load", "training_data_hash"]
