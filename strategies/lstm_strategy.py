"""The LSTM strategy: asks its Predictor, every bar, for the signal of the window ending at that bar."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import platformdirs

from strategies.base import TargetPositionStrategy
from strategies.lstm import ModelConfig, Predictor, train_model
from strategies.lstm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

FEATURE_WARMUP_BARS = 400  # history the features need before the first window (trailing volume z-score, 24-bar returns)


def round_trip_cost(broker) -> float:
    """Cost of entering and leaving once, as a fraction of notional: 2 x (taker fee + slippage).
    Binance base tier with 1 bp slippage: 2 x (0.0005 + 0.0001) = 0.0012."""
    return 2.0 * (broker.taker_fee + broker.slippage_bps / 10_000)


def default_cache_dir() -> Path:
    """Where trained models are kept between runs (``~/.cache/lstmbt/models`` on Linux)."""
    return Path(platformdirs.user_cache_dir("lstmbt")) / "models"


class LSTMStrategy(TargetPositionStrategy):
    """Long, short or flat as the LSTM's Predictor says for the window ending at each bar.

    The model is trained in :meth:`prepare` on bars strictly before the backtest span (training span,
    then a validation span for early stopping), so every bar traded is out of sample.
    """

    params = (("predictor", None), ("mode", "batched"))

    @classmethod
    def model_config(cls, config) -> ModelConfig:
        return ModelConfig.from_dict({"seed": config.seed, **config.model})

    @classmethod
    def history_bars(cls, config) -> int:
        cfg = cls.model_config(config)
        return cfg.train_bars + cfg.val_bars + cfg.window + FEATURE_WARMUP_BARS

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> dict:
        params = cls.check_params(config.params)
        cfg = cls.model_config(config)
        cost = round_trip_cost(config.broker)
        history = market.candles[market.candles.index < span_start]
        key = _cache_key(cfg, cost, history, market.funding[market.funding.index < span_start])
        cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        folder = cache / key
        trained = None
        if (folder / "meta.json").exists():
            try:
                trained = load_checkpoint(folder, expect_config=cfg)
                if progress:
                    progress(f"model: reusing trained checkpoint {folder}")
            except CheckpointError as exc:
                if progress:
                    progress(f"model: cached checkpoint unusable ({exc}); retraining")
        if trained is None:
            if progress:
                progress(f"model: training {cfg.cell.upper()} (window {cfg.window}, hidden {cfg.hidden}) "
                         f"on {cfg.train_bars} bars + {cfg.val_bars} validation bars before {span_start:%Y-%m-%d}")
            trained = train_model(market.candles, market.funding, cfg, cost=cost, train_end=span_start,
                                  progress=progress)
            save_checkpoint(trained, folder)
        predictor = Predictor(trained, mode=params.get("mode", "batched"))
        predictor.attach(market.candles, market.funding, span_start)
        return {**params, "predictor": predictor}

    def target(self) -> float:
        return self.p.predictor.signal(len(self) - 1)


def _cache_key(cfg: ModelConfig, cost: float, candles, funding) -> str:
    h = hashlib.sha256(json.dumps({"config": cfg.to_dict(), "cost": cost}, sort_keys=True).encode())
    h.update(candles.index.as_unit("ns").asi8.tobytes())
    h.update(candles.to_numpy(dtype="float64").tobytes())
    h.update(funding.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()[:20]
