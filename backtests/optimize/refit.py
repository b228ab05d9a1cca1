"""CPCV with refitted models: for a model strategy, each CPCV split's selected candidate is retrained on that
split's training groups only, and its test groups are traded by the refitted model.

The plain CPCV (:func:`backtests.optimize.guards.cpcv_selection`) reuses the walk-forward returns of the search:
every bar is out of sample, but always for a model trained on the bars *before* it. Here, for each split of
CPCV(N, k) over the search span:

1. the candidate is selected as before: the best walk-forward Sharpe ratio on the split's training groups;
2. its model is trained on the bars of the training groups (both sides of the test groups), minus a purge of
   ``horizon + 2`` bars before each test group (a label reads ``open[t + 1 + horizon]``) and an embargo of
   ``window + feature warm-up`` bars after it (an input window, or a feature such as the 168-bar volume z-score,
   reaching back into the test group), on top of the CPCV purge and embargo; the last 15 % of those bars (purged again) are the validation bars for early stopping and, with
   ``tune_threshold``, the threshold;
3. the refitted model's decisions on the test groups are turned into bar returns by a vectorised replay: the
   position decided at bar ``t`` is held from ``open[t + 1]`` to ``open[t + 2]`` and every change of position
   pays half the label's round-trip cost per unit (the engine's fills, funding and cash are not simulated, so the
   numbers are close to, not equal to, a backtest's).

The per-split Sharpe ratios of the refitted selection and the Sharpe ratio of each CPCV backtest path are the
result. Refits are cached by (the model's training config, label cost, split, bars' data hash) under
``<model cache>/cpcv/``, so two candidates with the same trained model (e.g. differing only in
``min_confidence``), a resumed study and a rerun train nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtests.optimize.guards import Split, cpcv_paths, group_bounds

VALIDATION_SHARE = 0.15


@dataclass
class RefitTask:
    """One refit: the candles and funding the model may see (history before the search span, then the search
    span; nothing of the final span), ``offset`` = position of the search span's first bar in ``candles``, the
    split's train and test positions (within the search span), the model config and label cost."""

    split: int
    candles: pd.DataFrame
    funding: pd.DataFrame
    offset: int
    train: np.ndarray
    test: np.ndarray
    groups: tuple[int, ...]
    cfg: Any
    cost: float
    cache_dir: str | None


@dataclass
class RefitOutcome:
    """The refitted model's class probabilities on ``positions`` (search-span positions), its threshold, and
    whether it was trained now or read from the cache; or an ``error``."""

    split: int
    positions: np.ndarray
    probs: np.ndarray
    min_confidence: float
    trained: bool = False
    seconds: float = 0.0
    error: str | None = None


def refit_key(task: RefitTask) -> str:
    from strategies.ml.train import data_sha256

    body = {"cfg": task.cfg.training_dict(), "cost": task.cost, "offset": task.offset,
            "train": hashlib.sha256(np.asarray(task.train, np.int64).tobytes()).hexdigest(),
            "test": hashlib.sha256(np.asarray(task.test, np.int64).tobytes()).hexdigest(),
            "data": data_sha256(task.candles, task.funding)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _blocked(n: int, groups: list[tuple[int, int]], before: int, after: int) -> np.ndarray:
    """Mask of positions within ``before`` bars before or ``after`` bars after any ``(first, stop)`` group."""
    out = np.zeros(n, dtype=bool)
    for a, b in groups:
        out[max(a - before, 0):a] = True
        out[b:min(b + after, n)] = True
    return out


def refit_split(task: RefitTask) -> RefitOutcome:
    """Train the model on the split's training bars and predict its test bars (and the two bars before each
    test bar, whose decisions the replay needs); reads the cache first. Never raises."""
    import torch

    from strategies.ml.evaluation import class_weights
    from strategies.ml.features import Scaler, compute_features, infer_bar, warmup_bars
    from strategies.ml.inference import torch_threads
    from strategies.ml.kinds import model_class
    from strategies.ml.labels import make_labels
    from strategies.ml.protocol import FitData
    from strategies.ml.threshold import NO_TRADE_CONFIDENCE, next_bar_returns, tune_min_confidence
    from strategies.ml.train import check_probabilities, model_inputs, model_spec

    started = time.perf_counter()
    cfg = task.cfg
    n = len(task.candles) - task.offset
    test = np.asarray(task.test, np.int64)
    positions = np.unique(np.concatenate([test, test - 1, test - 2]))
    positions = positions[positions + task.offset >= 0]
    path = Path(task.cache_dir) / "cpcv" / f"{refit_key(task)}.npz" if task.cache_dir else None
    try:
        if path is not None and path.exists():
            z = np.load(path)
            return RefitOutcome(task.split, z["positions"], z["probs"], float(z["min_confidence"]),
                                seconds=time.perf_counter() - started)
        bar = infer_bar(task.candles.index)
        feats = compute_features(task.candles, task.funding, cfg.features, bar=bar)
        raw = feats.to_numpy()
        labels = make_labels(task.candles, cfg.horizon, task.cost).to_numpy()
        runs = np.split(test, np.flatnonzero(np.diff(test) != 1) + 1) if len(test) else []
        test_groups = [(int(r[0]), int(r[-1]) + 1) for r in runs]
        train = np.asarray(task.train, np.int64)
        keep = ~_blocked(n, test_groups, cfg.horizon + 2, cfg.window + warmup_bars(cfg.features))[train]
        train = train[keep]
        absolute = train + task.offset
        ok = np.isfinite(labels[absolute]) & (absolute >= cfg.window - 1)
        windows_ok = np.array([np.isfinite(raw[max(p - cfg.window + 1, 0):p + 1]).all() for p in absolute])
        train = train[ok & windows_ok]
        if len(train) < 50:
            raise ValueError(f"only {len(train)} training bars left after purging and embargo")
        cut = int(len(train) * (1 - VALIDATION_SHARE))
        val = train[cut:]
        fit = train[:cut]
        fit = fit[fit < val[0] - (cfg.horizon + 2)]
        scaler = Scaler.fit(feats.iloc[fit + task.offset])
        x = scaler.transform(feats)
        x = np.nan_to_num(x, nan=0.0)
        cls = model_class(cfg.kind)
        y_fit = (labels[fit + task.offset] + 1).astype(np.int64)
        y_val = (labels[val + task.offset] + 1).astype(np.int64)
        weights = class_weights(y_fit) if cfg.class_weighting else None
        train_data = FitData(model_inputs(x, fit + task.offset, cfg.window, cls.input_kind), y_fit, weights)
        val_data = FitData(model_inputs(x, val + task.offset, cfg.window, cls.input_kind), y_val, weights)
        with torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = cls(model_spec(cfg))
            model.fit(train_data, val_data, seed=cfg.seed)
            probs = check_probabilities(model.predict_proba(
                model_inputs(x, positions + task.offset, cfg.window, cls.input_kind)), len(positions), cls.__name__)
            min_confidence = cfg.min_confidence
            if cfg.tune_threshold:
                val_probs = check_probabilities(model.predict_proba(val_data.x), len(val_data), cls.__name__)
                opens = task.candles["open"].to_numpy(np.float64)
                inside = val + task.offset + 2 < len(opens)
                choice = tune_min_confidence(val_probs[inside], next_bar_returns(opens, val[inside] + task.offset),
                                             task.cost)
                min_confidence = choice.min_confidence if choice.trusted else NO_TRADE_CONFIDENCE
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, positions=positions, probs=probs, min_confidence=np.float64(min_confidence))
            tmp.replace(path)
        return RefitOutcome(task.split, positions, probs, float(min_confidence), trained=True,
                            seconds=time.perf_counter() - started)
    except Exception as exc:                 # a refit that fails is reported, the search's result stands
        text = str(exc).strip().splitlines()
        return RefitOutcome(task.split, positions, np.zeros((0, 3)), 0.0, seconds=time.perf_counter() - started,
                            error=f"{type(exc).__name__}: {text[0] if text else ''}")


def replay_returns(outcome: RefitOutcome, opens: np.ndarray, offset: int, test: np.ndarray, cost: float,
                   min_confidence: float | None) -> np.ndarray:
    """Bar returns on ``test`` (search-span positions) of trading the refitted model's decisions: bar ``j``
    earns ``position(j - 1) x (open[j + 1] / open[j] - 1)`` minus ``cost / 2`` per unit of position change."""
    from strategies.ml.decision import decide

    threshold = outcome.min_confidence if min_confidence is None else min_confidence
    signal = dict(zip(outcome.positions.tolist(), decide(outcome.probs, threshold).astype(float).tolist()))
    out = np.zeros(len(test))
    for i, j in enumerate(np.asarray(test, np.int64)):
        held, before = signal.get(int(j) - 1, 0.0), signal.get(int(j) - 2, 0.0)
        a, b = offset + int(j), offset + int(j) + 1
        move = opens[b] / opens[a] - 1.0 if b < len(opens) else 0.0
        out[i] = held * move - abs(held - before) * cost / 2
    return out


@dataclass
class RefitResult:
    """The refitted selection: per split its test Sharpe (per bar), the backtest paths' Sharpe ratios, how many
    models were trained now or read from the cache, the seconds spent, and the splits that failed."""

    selected_test: np.ndarray
    path_sharpes: np.ndarray
    trained: int
    cached: int
    seconds: float
    errors: list[str]


def _sharpe(r: np.ndarray) -> float:
    if len(r) < 2:
        return float("nan")
    std = float(np.std(r, ddof=1))
    return float(np.mean(r) / std) if std > 0 else float("nan")


def refit_cpcv(splits: list[Split], selected: np.ndarray, candidates: list, search_market, offset: int,
               n_groups: int, n_test_groups: int, executor, cache_dir: str | None) -> RefitResult:
    """Refit, per split, the selected candidate (``candidates[i]`` = ``(model config, label cost)``) and
    replay its test groups (see the module docstring)."""
    from backtests.compare.executors import TaskFailure

    started = time.perf_counter()
    candles, funding = search_market.candles, search_market.funding
    tasks = []
    for s, split in enumerate(splits):
        cfg, cost = candidates[int(selected[s])]
        tasks.append(RefitTask(s, candles, funding, offset, split.train, split.test, split.groups,
                               cfg.replace(min_confidence=0.0), cost, cache_dir))
    outcomes: dict[int, Any] = {}
    for i, value in executor.map_unordered(refit_split, tasks):
        outcomes[i] = value
    opens = candles["open"].to_numpy(np.float64)
    n = len(candles) - offset
    per_split = np.full(len(splits), np.nan)
    returns: dict[int, np.ndarray] = {}
    errors, trained, cached = [], 0, 0
    for s, split in enumerate(splits):
        out = outcomes.get(s, TaskFailure("no result came back"))
        if isinstance(out, TaskFailure) or out.error:
            errors.append(f"split {s}: {out.error}")
            continue
        trained += int(out.trained)
        cached += int(not out.trained)
        cfg, cost = candidates[int(selected[s])]
        threshold = None if cfg.tune_threshold else cfg.min_confidence
        r = replay_returns(out, opens, offset, split.test, cost, threshold)
        returns[s] = r
        per_split[s] = _sharpe(r)
    bounds = group_bounds(n, n_groups)
    paths = []
    for row in cpcv_paths(n_groups, n_test_groups):
        parts = []
        for g, s in enumerate(row):
            if int(s) not in returns:
                parts = None
                break
            test = splits[int(s)].test
            a, b = bounds[g]
            parts.append(returns[int(s)][(test >= a) & (test < b)])
        paths.append(_sharpe(np.concatenate(parts)) if parts else float("nan"))
    return RefitResult(per_split, np.asarray(paths), trained, cached, time.perf_counter() - started, errors)


__all__ = ["RefitOutcome", "RefitResult", "RefitTask", "refit_cpcv", "refit_split", "replay_returns"]
