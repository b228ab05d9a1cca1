"""Comparison grid on 1 and on 2 local worker processes, measured side by side in one run.

The grid is ``backtests/configs/compare_example.toml`` (lstm, sma_cross, buy_hold x bull, bear, chop x BTC, ETH:
18 cells, each with its report folder rendered), on the shipped data. Each run gets an empty model cache, so every
LSTM trains in both runs. Timed: the whole grid, from loading data in the client to the last cell back, starting
the pool's workers included; not timed: writing the comparison folder, and the one-off start of the process server
the workers fork from (it imports backtrader, torch and matplotlib once per command; it is started and timed
before the first run, so no run pays it for the others). Runs come in pairs (1 then 2 workers, then 2 then 1,
...), so both see the same background load; prints each pair's ratio, the median ratio (target <= 0.6) and whether
the runs gave identical tables. Machines here are shared and noisy: compare the ratio, not the seconds.

    python benchmarks/compare_workers.py [--config FILE] [--repeat 3] [--out runs/compare-example]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from backtests.compare import CompareSpec, load_compare_spec, run_comparison, worker_modules
from backtests.executors import ProcessExecutor
from reports.comparison import build_comparison, write_comparison

EXAMPLE = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "compare_example.toml"


def start_server(spec: CompareSpec) -> float:
    """Seconds to start the process server with the grid's modules imported (one tiny task on one worker)."""
    started = time.perf_counter()
    with ProcessExecutor(1, preload=worker_modules(spec)) as pool:
        list(pool.map_unordered(abs, [-1]))
    return time.perf_counter() - started


def timed_grid(spec: CompareSpec, workers: int):
    """(seconds, outcomes) of one run of the grid on ``workers`` processes with a fresh model cache."""
    with tempfile.TemporaryDirectory(prefix="lstmbt-bench-models-") as cache:
        run_spec = dataclasses.replace(spec, config=spec.config.replace(cache_dir=cache))
        started = time.perf_counter()
        with ProcessExecutor(workers, preload=worker_modules(spec)) as pool:
            outcomes = run_comparison(run_spec, pool, show_bar=False)
        return time.perf_counter() - started, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(EXAMPLE), help="compare spec file (default: the shipped example)")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs, alternating 1 and 2 workers first")
    parser.add_argument("--out", help="also write the 2-worker comparison folder here")
    args = parser.parse_args()

    spec = load_compare_spec(args.config)
    cells = spec.cells()
    print(f"grid: {', '.join(spec.strategies)} x {', '.join(r.name for r in spec.ranges)} x "
          f"{', '.join(spec.symbols)} = {len(cells)} cells on {spec.config.data.timeframe} bars, "
          f"cell reports {'on' if spec.cell_reports else 'off'}", flush=True)
    print(f"process server started in {start_server(spec):.1f} s (once per command; not in the timings)", flush=True)
    ratios, tables, last = [], {}, None
    for k in range(args.repeat):
        pair = {}
        for workers in ((1, 2) if k % 2 == 0 else (2, 1)):
            seconds, outcomes = timed_grid(spec, workers)
            failed = [o for o in outcomes if not o.ok]
            pair[workers] = seconds
            tables[workers] = build_comparison(outcomes).table
            work = sum(o.seconds for o in outcomes)
            print(f"  {workers} worker(s): {seconds:6.1f} s  (cells add up to {work:.1f} s; {len(failed)} failed)",
                  flush=True)
            for o in failed:
                print(f"    {o.cell.label}: {o.error}", file=sys.stderr)
            if workers == 2:
                last = outcomes
        ratios.append(pair[2] / pair[1])
        print(f"  pair {k + 1}: 2 workers / 1 worker = {pair[2]:.1f} s / {pair[1]:.1f} s = {ratios[-1]:.2f}x", flush=True)
    ratio = statistics.median(ratios)
    cores = os.cpu_count()
    print(f"machine: {cores} cores; load average now {os.getloadavg()[0]:.1f} (other work competing for the cores "
          f"shows as cells adding up to more time on 2 workers than on 1)")
    try:
        pd.testing.assert_frame_equal(tables[1], tables[2])
        same = "yes"
    except AssertionError as exc:
        same = f"NO ({str(exc).splitlines()[0]})"
    print(f"2 workers / 1 worker: {ratio:.2f}x (median of {len(ratios)} pair(s); target <= 0.60)")
    print(f"tables identical on 1 and 2 workers: {same}")
    if args.out and last is not None:
        page, _ = write_comparison(last, args.out, title="Comparison: " + ", ".join(spec.strategies),
                                   confidence=spec.confidence, n_boot=spec.bootstrap, seed=spec.config.seed)
        print(f"comparison: {page}")
    return 0 if ratio <= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
