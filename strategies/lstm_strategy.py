"""The LSTM strategy: asks its Predictor, every bar, for the signal of the window ending at that bar."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from strategies.base import TargetPositionStrategy
from strategies.lstm import ModelConfig, Predictor, train_or_load
from strategies.lstm.features import warmup_bars
from strategies.lstm.labels import round_trip_cost
from strategies.lstm.prediction_cache import weights_sha256
from strategies.lstm.walkforward import WalkForwardPredictor, train_walk_forward, walk_forward_folds


def default_cache_dir() -> Path:
    """Where trained models are kept between runs (``~/.cache/lstmbt/models`` on Linux)."""
    return Path(platformdirs.user_cache_dir("lstmbt")) / "models"


def label_cost(broker) -> float:
    """Round-trip cost the labels count (a smaller move is FLAT): 2 x (taker fee + fixed slippage); Binance's
    base tier with 1 bp slippage gives 2 x (0.0005 + 0.0001) = 0.0012."""
    return round_trip_cost(broker.taker_fee, broker.slippage_bps / 10_000)


class LSTMStrategy(TargetPositionStrategy):
    """Long, short or flat as the LSTM's Predictor says for the window ending at each bar.

    The model is trained in :meth:`prepare` on bars strictly before the backtest span (training span,
    then a validation span for early stopping), so every bar traded is out of sample. A model trained
    before on the same config, data and costs is loaded from the cache instead of retrained.
    """

    params = (("predictor", None), ("mode", "batched"))

    @classmethod
    def model_config(cls, config) -> ModelConfig:
        """The model's hyperparameters: the config's ``[model]`` table, seeded with the run's seed."""
        return ModelConfig.from_dict({"seed": config.seed, **config.model})

    @classmethod
    def history_bars(cls, config) -> int:
        """Feature warm-up + one window + training + validation bars, all before the span start."""
        cfg = cls.model_config(config)
        return warmup_bars(cfg.features) + cfg.window + cfg.train_bars + cfg.val_bars

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> dict:
        params = cls.check_params(config.params)
        cfg = cls.model_config(config)
        cost = label_cost(config.broker)
        cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        if progress:
            progress(f"model: {cfg.cell.upper()} window {cfg.window}, hidden {cfg.hidden}, {cfg.train_bars:,} training "
                     f"+ {cfg.val_bars:,} validation bars before {span_start:%Y-%m-%d}, round-trip cost {cost:.4%}")
        mode = params.get("mode", "batched")
        if cfg.walk_forward_test_bars > 0:  # a new model every walk_forward_test_bars bars, each trained before its span
            folds = walk_forward_folds(market.candles.index, cfg, span_start)
            models = train_walk_forward(market.candles, market.funding, cfg, folds, cost=cost, cache_dir=cache,
                                        progress=progress)
            predictor = WalkForwardPredictor(models, mode=mode, cache_dir=cache / "predictions")
            checkpoints = [model_fingerprint(trained, fold.name) for fold, trained in models]
        else:
            trained, _ = train_or_load(cache, market.candles, market.funding, cfg, cost=cost, train_end=span_start,
                                       progress=progress)
            predictor = Predictor(trained, mode=mode, cache_dir=cache / "predictions")
            checkpoints = [model_fingerprint(trained, f"trained-before-{span_start:%Y%m%dT%H%MZ}")]
        predictor.attach(market.candles, market.funding, span_start)
        extras = {"checkpoints": checkpoints,
                  "fold_boundaries": [t.isoformat() for t in getattr(predictor, "fold_boundaries", [])]}
        return {**params, "predictor": predictor, "extras": extras}

    def target(self) -> float:
        return self.p.predictor.signal(len(self) - 1)


def model_fingerprint(trained, name: str) -> dict:
    """What identifies a trained model in a manifest: its name, the sha256 of its weights (tensors in key
    order) and of the data it was trained on, and its decision threshold; ``metrics``: its validation scores next
    to trivial baselines and whether its threshold is trusted (:func:`strategies.lstm.evaluation.model_quality`),
    the plain numbers of ``ModelRecord.metrics``."""
    from strategies.lstm.evaluation import model_quality

    return {"name": name, "weights_sha256": weights_sha256(trained.model), "data_sha256": trained.data_hash,
            "min_confidence": trained.min_confidence, "metrics": model_quality(trained.meta)}
