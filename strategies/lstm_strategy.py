"""The model strategy: asks its Predictor, every bar, for the signal of the window (or row) ending at that bar.

One class drives every model kind through :mod:`strategies.ml`: ``lstm`` (the config's ``[model] kind``, LSTM by
default), and the names ``gru``, ``transformer``, ``logreg`` and ``gbm``, which are the same strategy with that kind
preset, so ``compare --strategies lstm,gru,transformer,logreg,buy_hold`` trains each on identical samples.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

from strategies.base import TargetPositionStrategy
from strategies.contract import ModelRecord, Prepared
from strategies.ml import ModelConfig, Predictor, train_or_load
from strategies.ml.features import warmup_bars
from strategies.ml.kinds import model_class
from strategies.ml.labels import round_trip_cost
from strategies.ml.probe import ModelProbe
from strategies.ml.walkforward import WalkForwardPredictor, train_walk_forward, walk_forward_folds


def default_cache_dir() -> Path:
    """Where trained models are kept between runs (``~/.cache/lstmbt/models`` on Linux)."""
    return Path(platformdirs.user_cache_dir("lstmbt")) / "models"


def label_cost(broker) -> float:
    """Round-trip cost the labels count (a smaller move is FLAT): 2 x (taker fee + fixed slippage); Binance's
    base tier with 1 bp slippage gives 2 x (0.0005 + 0.0001) = 0.0012."""
    return round_trip_cost(broker.taker_fee, broker.slippage_bps / 10_000)


def describe(cfg: ModelConfig) -> str:
    """One line naming the model: ``LSTM window 48, hidden 32`` / ``LOGREG on the decision bar's 6 features``."""
    if cfg.kind in ("logreg", "gbm"):
        return f"{cfg.kind.upper()} on the decision bar's {len(cfg.features)} features"
    if cfg.is_user_model:
        return f"user model {cfg.kind} (window {cfg.window})"
    return f"{cfg.kind.upper()} window {cfg.window}, hidden {cfg.hidden}"


class LSTMStrategy(TargetPositionStrategy):
    """Long, short or flat as the model's Predictor says for the window ending at each bar.

    The model (``[model] kind``; an LSTM unless told otherwise) is trained in :meth:`prepare` on bars strictly
    before the span it trades (training span, then a validation span for early stopping), so every bar traded is
    out of sample. A model trained before on the same config, data and costs is loaded from the cache instead.
    """

    params = (("predictor", None), ("mode", "batched"))
    model_kind: str | None = None          # None: the config's [model] kind; subclasses preset one

    @classmethod
    def model_config(cls, config) -> ModelConfig:
        """The model's hyperparameters: the config's ``[model]`` table, seeded with the run's seed, with the
        strategy's preset kind when it has one."""
        table = {"seed": config.seed, **config.model}
        if cls.model_kind is not None:
            table["kind"] = cls.model_kind
        cfg = ModelConfig.from_dict(table)
        model_class(cfg.kind)          # a missing or broken model file fails here, before any data is loaded
        return cfg

    @classmethod
    def history_bars(cls, config) -> int:
        """Feature warm-up + one window + training + validation bars, all before the span start."""
        cfg = cls.model_config(config)
        return warmup_bars(cfg.features) + cfg.window + cfg.train_bars + cfg.val_bars

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> Prepared:
        params = cls.check_params(config.params)
        cfg = cls.model_config(config)
        cost = cfg.label_cost if cfg.label_cost is not None else label_cost(config.broker)
        cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        if progress:
            progress(f"model: {describe(cfg)}, {cfg.train_bars:,} training + {cfg.val_bars:,} validation bars "
                     f"before {span_start:%Y-%m-%d}, round-trip cost {cost:.4%}")
        mode = params.get("mode", "batched")
        if cfg.walk_forward_test_bars > 0:  # a new model every walk_forward_test_bars bars, each trained before its span
            folds = walk_forward_folds(market.candles.index, cfg, span_start)
            models = train_walk_forward(market.candles, market.funding, cfg, folds, cost=cost, cache_dir=cache,
                                        progress=progress)
            predictor = WalkForwardPredictor(models, mode=mode, cache_dir=cache / "predictions")
            records = [model_fingerprint(trained, fold.name) for fold, trained in models]
            probe = ModelProbe(models)
        else:
            trained, _ = train_or_load(cache, market.candles, market.funding, cfg, cost=cost, train_end=span_start,
                                       progress=progress)
            predictor = Predictor(trained, mode=mode, cache_dir=cache / "predictions")
            records = [model_fingerprint(trained, f"trained-before-{span_start:%Y%m%dT%H%MZ}")]
            probe = ModelProbe(trained)
        predictor.attach(market.candles, market.funding, span_start)
        return Prepared(params={**params, "predictor": predictor}, signal_source=predictor, probe=probe,
                        models=records, fold_boundaries=list(getattr(predictor, "fold_boundaries", [])))

    def target(self) -> float:
        return self.p.predictor.signal(len(self) - 1)


class GRUStrategy(LSTMStrategy):
    """The model strategy with ``kind = "gru"``."""

    model_kind = "gru"


class TransformerStrategy(LSTMStrategy):
    """The model strategy with ``kind = "transformer"`` (a small Transformer encoder over the window)."""

    model_kind = "transformer"


class LogRegStrategy(LSTMStrategy):
    """The model strategy with ``kind = "logreg"``: multinomial logistic regression, the non-deep baseline."""

    model_kind = "logreg"


class GBMStrategy(LSTMStrategy):
    """The model strategy with ``kind = "gbm"``: LightGBM gradient-boosted trees (optional extra ``lstmbt[gbm]``)."""

    model_kind = "gbm"


def model_fingerprint(trained, name: str) -> ModelRecord:
    """What identifies a trained model in a manifest: its name and kind, the sha256 of its weights (state arrays
    in key order) and of the data it was trained on, its decision threshold and validation scores."""
    from strategies.ml.evaluation import model_quality

    v = trained.meta.get("validation", {})
    metrics = {**{k: v[k] for k in ("samples", "accuracy", "log_loss") if v.get(k) is not None},
               **model_quality(trained.meta)}
    return ModelRecord(name=name, weights_sha256=trained.weights_sha256, data_sha256=trained.data_hash,
                       min_confidence=trained.min_confidence, kind=trained.kind, metrics=metrics)
