"""Windowed LSTM (``kind = "lstm"``, window 48: 48 recurrent steps per bar) against the stateful LSTM
(``kind = "lstm_stateful"``, window 48 as burn-in: one step per bar), side by side in one process on the same
synthetic 1m bars.

Both nets have the same size (hidden 32, one layer, the six default features) and are trained once, before any
timing, on the same 14,400 + 4,320 bars (one epoch; the weights do not change the cost). Printed, each with the
stateful/windowed ratio:

1. batched inference: the network pass the Predictor makes when it attaches (every bar of the span at once), in
   microseconds per bar, on 1 thread and on the cores free at the start;
2. online inference: one Predictor query per bar at call time (what a live run pays per bar), over the first
   ``--online-bars`` bars;
3. whole backtests (the ``lstm`` strategy, prediction cache cleared before each timed run, so the network runs:
   *cold*), bars/s, best of ``--repeats`` alternating runs.

    python benchmarks/stateful_inference.py [--bars 250000] [--online-bars 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.million_bars import HISTORY, START, synthetic_market  # noqa: E402

MODEL = {"train_bars": 14_400, "val_bars": 4_320, "epochs": 1, "window": 48, "hidden": 32, "label_cost": 0.0012}
KINDS = {"windowed": "lstm", "stateful": "lstm_stateful"}


def config(kind: str, bars: int, cache_dir: str, mode: str = "batched"):
    """A backtest of the ``lstm`` strategy with model ``kind`` over the ``bars`` bars after the history."""
    from backtests import BacktestConfig, DataConfig

    t0 = START + pd.Timedelta(minutes=HISTORY)
    data = DataConfig(symbol="BTC/USDT:USDT", timeframe="1m", start=t0.isoformat(),
                      end=(t0 + pd.Timedelta(minutes=bars)).isoformat())
    return BacktestConfig(strategy="lstm", data=data, cache_dir=cache_dir, model={**MODEL, "kind": kind},
                          params={"mode": mode})


def trained(kind: str, market, cache_dir: str):
    """The model of ``kind`` (trained into ``cache_dir`` on first use) and the span start."""
    from strategies.ml import ModelConfig, train_or_load

    t0 = START + pd.Timedelta(minutes=HISTORY)
    model, _ = train_or_load(cache_dir, market.candles, market.funding, ModelConfig.from_dict({**MODEL, "kind": kind}),
                             cost=MODEL["label_cost"], train_end=t0)
    return model, t0


def batched_seconds(model, market, t0, threads: int) -> float:
    """Seconds of the network pass of a batched attach (features and scaling excluded), on ``threads`` threads."""
    from strategies.ml import Predictor
    from strategies.ml.inference import torch_threads

    p = Predictor(model, "online")                      # attach without the pass: features and scaled rows only
    p.attach(market.candles, market.funding, t0)
    batched = Predictor(model, "batched")
    start, n, window = p._start, len(p), p.window
    if p.input_kind == "sequence":
        inputs = p._x[start - (window - 1):start + n]
    else:
        from strategies.ml.train import model_inputs
        inputs = model_inputs(p._x, np.arange(start, start + n), window, p.input_kind)
    with torch_threads(threads):
        began = time.perf_counter()
        batched._predict(inputs, batched.chunk)
        return time.perf_counter() - began


def online_seconds(model, market, t0, bars: int) -> float:
    """Seconds of ``bars`` per-bar online queries in order (the stateful model's burn-in included)."""
    from strategies.ml import Predictor

    candles = market.candles[market.candles.index < t0 + pd.Timedelta(minutes=bars)]
    p = Predictor(model, "online")
    p.attach(candles, market.funding, t0)
    began = time.perf_counter()
    for i in range(len(p)):
        p.probabilities(i)
    return time.perf_counter() - began


def backtest_seconds(kind: str, market, bars: int, cache_dir: str) -> tuple[float, int]:
    """(seconds, bars) of a cold backtest: the prediction cache is emptied first, so the network runs."""
    from backtests import run_backtest

    shutil.rmtree(Path(cache_dir) / "predictions", ignore_errors=True)
    began = time.perf_counter()
    result = run_backtest(config(kind, bars, cache_dir), market=market)
    return time.perf_counter() - began, len(result.equity)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=250_000)
    parser.add_argument("--online-bars", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from strategies.ml.inference import free_cores

    one, five, _ = os.getloadavg()
    cores = free_cores()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(os.sched_getaffinity(0))} cores usable, "
          f"{cores} free; load average {one:.2f} (1 min) {five:.2f} (5 min); {args.bars:,} synthetic 1m bars; "
          f"LSTM hidden 32, window 48 (stateful: burn-in 47)", flush=True)
    market = synthetic_market(args.bars)
    with tempfile.TemporaryDirectory(prefix="lstmbt-stateful-") as cache:
        models = {}
        for name, kind in KINDS.items():
            began = time.perf_counter()
            models[name] = trained(kind, market, cache)
            print(f"  {name:<8} ({kind}) trained once in {time.perf_counter() - began:.1f} s (not timed)", flush=True)

        def row(label: str, seconds: dict[str, float], bars: int) -> None:
            w, s = seconds["windowed"] / bars * 1e6, seconds["stateful"] / bars * 1e6
            print(f"  {label:<34} windowed {w:9.2f} us/bar   stateful {s:9.2f} us/bar   "
                  f"stateful speed-up {w / s:6.2f}x", flush=True)

        for threads in sorted({1, cores}):
            row(f"batched pass, {threads} thread(s)",
                {name: min(batched_seconds(m, market, t0, threads) for _ in range(args.repeats))
                 for name, (m, t0) in models.items()}, args.bars)
        row(f"online, one query per bar ({args.online_bars:,})",
            {name: online_seconds(m, market, t0, args.online_bars) for name, (m, t0) in models.items()},
            args.online_bars)
        best: dict[str, float] = {name: float("inf") for name in KINDS}
        counted = 0
        for _ in range(args.repeats):
            for name, kind in KINDS.items():
                seconds, counted = backtest_seconds(kind, market, args.bars, cache)
                best[name] = min(best[name], seconds)
        w, s = counted / best["windowed"], counted / best["stateful"]
        print(f"  {'whole backtest, cold (best of ' + str(args.repeats) + ')':<34} windowed {w:9,.0f} bars/s   "
              f"stateful {s:9,.0f} bars/s   stateful speed-up {s / w:6.2f}x ({counted:,} bars)", flush=True)
    one, five, _ = os.getloadavg()
    print(f"load average at the end {one:.2f} (1 min) {five:.2f} (5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
