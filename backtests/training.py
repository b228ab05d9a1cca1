"""What ``lstmbt train`` does, as plain functions (the CLI only parses flags).

``lstmbt train --symbol BTC/USDT:USDT --timeframe 1h --start 2024-01-01 --end 2025-12-31 --test-bars 720``
trains one model per 720-bar fold whose test spans tile 2024-01-01 .. 2025-12-31 (each on the
``train_bars + val_bars`` before its test span), prints a line per fold and epoch, then one row of validation
metrics per fold. Models go to the same cache the backtest uses, so a later ``lstmbt backtest`` with
``walk_forward_test_bars = 720`` in ``[model]`` loads them instead of training.

Heavy imports (torch, pandas) happen inside :func:`train_command`, so building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

DEVICES = ("auto", "cpu", "cuda")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lstmbt train``; the data flags (as for ``lstmbt backtest``) override ``--config``'s ``[data]``:
    ``--start .. --end`` is the span to predict, training data comes before it."""
    from backtests.flags import add_data_flags, add_flags

    parser.add_argument("--config", help="TOML config file; its [data], [broker] and [model] tables are read")
    parser.add_argument("--test-bars", type=int, help="bars each fold's model predicts, e.g. 720 = 30 days of 1h "
                                                      "(default: [model] walk_forward_test_bars, else the whole span)")
    parser.add_argument("--expanding", action="store_true", help="grow each fold's training span from the first "
                                                                 "fold's start instead of sliding it")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to train: auto picks cuda when torch sees a GPU (default auto)")
    add_flags(parser, "--seed", "--cache-dir", seed="random seed (default: the config's, 42)",
              cache_dir="folder for trained models (default: the backtest's model cache)")
    parser.add_argument("--model-kind", help="[model] kind: lstm, gru, lstm_stateful, gru_stateful, transformer, "
                                             "logreg, gbm or path/to/my_model.py:MyModel")
    add_data_flags(parser)


def resolve_device(choice: str, cuda_available: bool) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``"cuda"`` without a GPU raises ConfigError."""
    from strategies.lstm.errors import ConfigError

    if choice not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {choice!r}")
    if choice == "auto":
        return "cuda" if cuda_available else "cpu"
    if choice == "cuda" and not cuda_available:
        raise ConfigError("--device cuda: torch sees no CUDA device; use --device cpu or --device auto")
    return choice


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _vs(model, baseline, fmt) -> str:
    """``"51.2% / 55.0%"``: a model's score and the trivial baseline's, '-' for a missing one."""
    return f"{'-' if model is None else fmt(model)} / {'-' if baseline is None else fmt(baseline)}"


def test_span_scores(candles, funding, pairs, cost: float, span_start) -> list[dict | None]:
    """Out-of-sample scores per fold on its own test span, next to the trivial baselines of its training labels.

    Each fold's model predicts its test bars (the same batched predictions a backtest uses); a bar is scored
    when its label is known, i.e. ``horizon + 1`` bars of data follow it. None for a fold with no labelled bar.
    Returns one dict per (fold, model) pair: see :func:`strategies.lstm.evaluation.classification_metrics`.
    """
    import numpy as np

    from strategies.lstm.evaluation import classification_metrics
    from strategies.lstm.labels import make_labels
    from strategies.lstm.walkforward import WalkForwardPredictor

    predictor = WalkForwardPredictor(pairs)
    predictor.attach(candles, funding, span_start)
    probs = predictor.probability_frame()
    out = []
    for fold, trained in pairs:
        lo, hi = fold.test_span
        rows = probs[(probs.index >= lo) & (probs.index <= hi)]
        labels = make_labels(candles, trained.config.horizon, cost).reindex(rows.index)
        known = labels.notna().to_numpy()
        bal = trained.meta.get("train_label_balance")
        if not known.any() or not bal:
            out.append(None)
            continue
        out.append(classification_metrics(rows.to_numpy()[known], labels.to_numpy()[known].astype(np.int64) + 1,
                                          trained.min_confidence, bal))
    return out


def fold_table(pairs, test_scores: list[dict | None] | None = None) -> str:
    """One text row per (fold, TrainedModel): accuracy and log-loss (nats) on the validation span and, when given,
    the fold's test span, each next to a trivial baseline fitted on the training labels (accuracy vs always the
    majority class, log-loss vs the class prior), the label balance, LONG/SHORT calls with their hit rates (share
    of calls whose label agreed) under the model's threshold, the threshold (``flat`` when it was tuned on too few
    validation trades) and a flag when the model scored below always-the-majority-class."""
    from strategies.lstm.evaluation import compare_with_baselines

    test_scores = test_scores or [None] * len(pairs)
    header = ("fold", "test bars", "epochs", "val acc / majority", "val log-loss / prior", "test acc / majority",
              "test log-loss / prior", "labels S/F/L %", "long calls (hit)", "short calls (hit)", "threshold", "flag")
    rows = [header]
    loss = lambda x: f"{x:.4f}"  # noqa: E731
    for (fold, trained), test in zip(pairs, test_scores):
        v, run = trained.meta["validation"], trained.meta["training"]
        bal = v["label_balance"]
        tuning = trained.meta["decision_rule"].get("tuning") or {}
        threshold = (f"flat ({tuning['trades']} < {tuning['min_trades']} trades)" if tuning.get("trusted") is False
                     else f"{trained.min_confidence:.2f}")
        t = test or {}
        flags = [f"{where} acc < majority" for where, scores in (("val", v), ("test", t))
                 if compare_with_baselines(scores)["worse_than_majority"]]
        rows.append((fold.name, str(fold.test_bars), f"{run['best_epoch']}/{run['epochs_run']}",
                     _vs(v["accuracy"], v.get("majority_accuracy"), _pct),
                     _vs(v["log_loss"], v.get("prior_log_loss"), loss),
                     _vs(t.get("accuracy"), t.get("majority_accuracy"), _pct),
                     _vs(t.get("log_loss"), t.get("prior_log_loss"), loss),
                     "/".join(f"{100 * bal[k]:.0f}" for k in ("short", "flat", "long")),
                     f"{v['long_calls']} ({_pct(v['long_hit_rate'])})",
                     f"{v['short_calls']} ({_pct(v['short_hit_rate'])})", threshold, ", ".join(flags) or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w)
                               in enumerate(zip(row, widths))).rstrip() for row in rows)


def train_command(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """``lstmbt train``: walk-forward training over ``--start .. --end`` and a validation table per fold.

    Raises ValueError subclasses (ConfigError, DataError) with one-line messages for bad flags, configs or data.
    """
    import torch

    from backtests.cli import build_config
    from data_feeds import DataError, load_market, parse_span
    from data_feeds.timeframes import timeframe_delta
    from strategies.lstm.config import ModelConfig
    from strategies.lstm.features import warmup_bars
    from strategies.lstm.folds import make_folds
    from strategies.lstm.threshold import MIN_VALIDATION_TRADES
    from strategies.lstm.walkforward import train_walk_forward
    from strategies.lstm_strategy import default_cache_dir, describe, label_cost
    from strategies.ml.kinds import model_class

    out = out or sys.stdout
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    config = build_config(args)
    d = config.data
    cfg = ModelConfig.from_dict({"seed": config.seed, **config.model})
    model_class(cfg.kind)          # a missing model file or extra fails here, before any data is loaded
    cfg = cfg.replace(device=resolve_device(getattr(args, "device", "auto"), torch.cuda.is_available()))
    if getattr(args, "expanding", False):
        cfg = cfg.replace(walk_forward_expanding=True)
    test_bars = args.test_bars if getattr(args, "test_bars", None) is not None else cfg.walk_forward_test_bars
    if test_bars < 0:
        raise DataError(f"--test-bars must be a whole number >= 1 (0 = the whole span), got {test_bars}")
    t0, _ = parse_span(d.start, d.end)
    history = warmup_bars(cfg.features) + cfg.window + cfg.train_bars + cfg.val_bars
    market = load_market(d.exchange, d.symbol, d.timeframe, t0 - history * timeframe_delta(d.timeframe), d.end,
                         data_path=d.path, funding_path=d.funding_path, store_dir=d.store_dir)
    candles = market.candles
    span = int((candles.index >= t0).sum())
    if span == 0:
        raise DataError(f"no {d.symbol} {d.timeframe} candles in {d.start} .. {d.end}; run lstmbt download first")
    folds = make_folds(candles.index, cfg.train_bars, cfg.val_bars, test_bars or span,
                       expanding=cfg.walk_forward_expanding, start=t0)
    cost = cfg.label_cost if cfg.label_cost is not None else label_cost(config.broker)
    cache = config.cache_dir or default_cache_dir()
    say(f"lstmbt train: {d.symbol} {d.timeframe} {d.start} .. {d.end}: {len(folds)} fold(s) of up to "
        f"{test_bars or span} bars, {describe(cfg)}, {cfg.train_bars:,} train + "
        f"{cfg.val_bars:,} validation bars{' (expanding)' if cfg.walk_forward_expanding else ''}, "
        f"device {cfg.device}, round-trip cost {cost:.4%}, cache {cache}")
    pairs = train_walk_forward(candles, market.funding, cfg, folds, cost=cost, cache_dir=cache, progress=say)
    tests = test_span_scores(candles, market.funding, pairs, cost, t0)
    say("")
    say("per fold: the model's accuracy and log-loss next to trivial baselines fitted on its training labels "
        "(always the majority class; the class prior), on the validation span and on the fold's own test span")
    say(f"(hit = share of LONG/SHORT calls whose move beat the round-trip cost on validation; a threshold tuned on "
        f"fewer than {MIN_VALIDATION_TRADES} validation trades is not trusted and its fold stays flat)")
    say(fold_table(pairs, tests))
    worse = sum(bool(t and t.get("worse_than_majority")) for t in tests)
    untrusted = sum(p[1].meta["decision_rule"].get("tuning", {}).get("trusted") is False for p in pairs)
    say(f"{worse} of {len(pairs)} fold(s) scored below always-the-majority-class on their test span; "
        f"{untrusted} fold(s) stay flat (threshold not trusted)")
    return 0
