"""Engine throughput with the model in the loop: lstmbt runs vs stock Backtrader's empty strategy on the same bars.

Data: the shipped BTC/USDT:USDT 1m sample; every case runs the same 50,400 traded bars (2025-05-20 .. 2025-06-23;
the LSTM trains on the bars before them). Cases, each a full ``run_backtest`` unless said otherwise:

- ``stock empty``: stock Backtrader, an empty strategy on a stock ``PandasData`` feed (the baseline, 1.00x);
- ``sma_cross``: fees, funding, slippage, liquidation checks, recording, result collection;
- ``lstm cold``: the network runs. The model is trained once before any timing (its checkpoint is loaded inside
  each timed run, as a real run does), and the prediction cache folder is emptied before each timed run; the
  script checks that the folder is empty when timing starts and counts the net's forward calls during the run;
- ``lstm warm``: the prediction cache holds this span's probabilities (0 forward calls); features, decisions,
  broker and recording still run.

Rounds interleave the cases (order rotated each round); each case's ratio is the median over rounds of
``stock seconds / case seconds`` from the same round, so background load hits both sides alike (the CPU-time
ratio beside it counts this process's CPU seconds instead, every thread included: less sensitive to other
processes, but it charges the batched inference's threads in full). With ``--busy``
(the default) the whole measurement is repeated while another process keeps one core busy. Machines here are
shared and noisy: compare the ratios, not the seconds.

    python benchmarks/engine_speed.py [--rounds 5] [--no-busy] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import backtrader as bt
import torch

from backtests import BacktestConfig, DataConfig, run_backtest
from backtests.engine import load_run_data
from data_feeds.loader import MarketData

DATA = DataConfig(symbol="BTC/USDT:USDT", timeframe="1m", start="2025-05-20", end="2025-06-23")
TARGETS = {"sma_cross": 2.0, "lstm cold": 1.5, "lstm warm": 2.0}


class Empty(bt.Strategy):
    def next(self):
        pass


def stock_empty(market: MarketData) -> None:
    """Stock Backtrader: an empty strategy over a stock ``PandasData`` of ``market``'s candles."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=market.candles.tz_convert(None), timeframe=bt.TimeFrame.Minutes,
                                        compression=1))
    cerebro.addstrategy(Empty)
    cerebro.run()


def lstm_config(config: BacktestConfig, cache_dir: str | os.PathLike, device: str = "cpu") -> BacktestConfig:
    """LSTM on the 1m span: trained on the 14,400 + 4,320 bars before it (3 epochs), window 48."""
    return config.replace(strategy="lstm", cache_dir=str(cache_dir),
                          model={"train_bars": 14_400, "val_bars": 4_320, "epochs": 3, "window": 48,
                                 "device": device})


def history_bars(config: BacktestConfig) -> int:
    from strategies.registry import get_strategy

    return get_strategy(config.strategy).history_bars(config)


@contextmanager
def count_forward_calls() -> Iterator[list[int]]:
    """Counts forward calls of top-level nets (any module without a parent call in progress) in the block:
    ``calls[0]`` after the block."""
    calls = [0]
    depth = [0]

    def pre(module, args):
        if depth[0] == 0:
            calls[0] += 1
        depth[0] += 1

    def post(module, args, out):
        depth[0] -= 1

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        yield calls
    finally:
        h1.remove()
        h2.remove()


def prediction_files(cache_dir: str | os.PathLike) -> list[Path]:
    folder = Path(cache_dir) / "predictions"
    return sorted(folder.glob("*")) if folder.exists() else []


@dataclass
class Case:
    """One timed case: ``setup`` runs untimed before each timed ``run``; ``check`` (untimed, after) returns a note."""

    name: str
    run: Callable[[], object]
    setup: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


def lstm_cases(config: BacktestConfig, market: MarketData, label: str = "lstm") -> list[Case]:
    """The cold and the warm LSTM case for ``config`` (its model already trained into ``config.cache_dir``)."""
    cache = config.cache_dir
    calls: list[int] = [0]

    def empty_cache() -> None:
        shutil.rmtree(Path(cache) / "predictions", ignore_errors=True)
        if prediction_files(cache):
            raise RuntimeError("the prediction cache is not empty before a cold run")

    def cold() -> None:
        if prediction_files(cache):      # checked inside the timed part: it costs one stat
            raise RuntimeError("the prediction cache is not empty when the cold run starts")
        with count_forward_calls() as n:
            run_backtest(config, market=market)
        calls[0] = n[0]
        cold_case.notes.append(f"{n[0]} forward calls")

    def fill_cache() -> None:
        if not prediction_files(cache):
            run_backtest(config, market=market)

    def warm() -> None:
        with count_forward_calls() as n:
            run_backtest(config, market=market)
        warm_case.notes.append(f"{n[0]} forward calls")

    cold_case = Case(f"{label} cold", cold, empty_cache)
    warm_case = Case(f"{label} warm", warm, fill_cache)
    return [cold_case, warm_case]


def measure(base: Case, cases: list[Case], rounds: int) -> dict[str, tuple[float, float, float]]:
    """{name: (median seconds, median ratio base/case, median CPU-time ratio base/case)}, rounds interleaved with
    the order rotated. The CPU-time ratio (this process's CPU seconds, every thread counted) shows the work done
    when other processes take the cores; the wall-clock ratio is the figure the targets are about."""
    everything = [base, *cases]
    seconds: dict[str, list[float]] = {c.name: [] for c in everything}
    cpu: dict[str, list[float]] = {c.name: [] for c in everything}
    for r in range(rounds):
        order = everything[r % len(everything):] + everything[:r % len(everything)]
        for case in order:
            case.setup()
            started, cpu_started = time.perf_counter(), time.process_time()
            case.run()
            seconds[case.name].append(time.perf_counter() - started)
            cpu[case.name].append(time.process_time() - cpu_started)
    out = {}
    for case in everything:
        ratios = [b / s for b, s in zip(seconds[base.name], seconds[case.name])]
        cpu_ratios = [b / s for b, s in zip(cpu[base.name], cpu[case.name])]
        out[case.name] = (statistics.median(seconds[case.name]), statistics.median(ratios),
                          statistics.median(cpu_ratios))
    return out


@contextmanager
def one_core_busy() -> Iterator[None]:
    """Another process spinning on one core for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


def report(title: str, bars: int, results: dict, cases: list[Case]) -> None:
    print(title)
    notes = {c.name: c.notes for c in cases}
    for name, (seconds, ratio, cpu_ratio) in results.items():
        target = TARGETS.get(name.replace(" cuda", ""))
        goal = f"  target >= {target:.1f}x: {'met' if ratio >= target else 'NOT met'}" if target else ""
        extra = sorted(set(notes.get(name, [])))
        extra_text = f"  ({'; '.join(extra)})" if extra else ""
        print(f"  {name:<12} {seconds:7.2f} s {bars / seconds:>9,.0f} bars/s   {ratio:5.2f}x"
              f"  (CPU time {cpu_ratio:4.2f}x)"
              f"{goal}{extra_text}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--no-busy", action="store_true", help="skip the pass with one core kept busy")
    parser.add_argument("--device", default="cpu", help="also time the LSTM with the net on this device (cuda)")
    args = parser.parse_args(argv)

    base_config = BacktestConfig(strategy="sma_cross", data=DATA)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
          f"{cores} cores usable; Python {platform.python_version()}, torch {torch.__version__}, "
          f"backtrader {bt.__version__}; {load_text()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lstmbt-bench-") as tmp:
        lstm = lstm_config(base_config, Path(tmp) / "cpu")
        market, t0, t1 = load_run_data(lstm, history_bars(lstm))
        span = market.slice(t0, t1)
        bars = len(span.candles)
        started = time.perf_counter()
        run_backtest(lstm, market=market)                     # trains the model once: not timed
        print(f"model trained once in {time.perf_counter() - started:.1f} s (not timed)", flush=True)
        base = Case("stock empty", lambda: stock_empty(span))
        cases = [Case("sma_cross", lambda: run_backtest(base_config, market=span)), *lstm_cases(lstm, market)]
        if args.device != "cpu":
            if args.device.startswith("cuda") and not torch.cuda.is_available():
                print(f"--device {args.device}: no CUDA device here; skipped")
            else:
                dev = lstm_config(base_config, Path(tmp) / "dev", args.device)
                run_backtest(dev, market=market)
                cases += lstm_cases(dev, market, f"lstm {args.device}")
        passes = [("no extra load", None)] + ([] if args.no_busy else [("one core kept busy by another process",
                                                                          one_core_busy)])
        met = True
        for title, ctx in passes:
            for case in cases:
                case.notes.clear()
            with (ctx() if ctx else _nothing()):
                results = measure(base, cases, args.rounds)
                state = load_text()
            report(f"{bars:,} bars of BTC/USDT:USDT 1m, {title}, median of {args.rounds} interleaved rounds "
                   f"({state} at the end); ratio = stock seconds / case seconds", bars, results, cases)
            met &= all(results[n][1] >= t for n, t in TARGETS.items() if n in results)
    return 0 if met else 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
