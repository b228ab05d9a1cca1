"""Comparison grid on 1 and 2 local worker processes and on a loopback Dask cluster of 2 workers, in one run.

The grid is ``benchmarks/compare_grid36.toml`` (lstm, sma_cross, buy_hold x 6 quarterly ranges x BTC, ETH: 36
cells on the shipped 1h data; every LSTM cell trains its own model). Each run gets an empty model cache, so every
LSTM trains in every run. Timed: the whole grid, from loading data in the client to the last cell back (for the
process pool, starting its workers too). Not timed: the one-off start of the process server the pool forks from,
and the start of the Dask ``LocalCluster`` (2 worker processes, 1 thread each, on 127.0.0.1) with the grid's modules
imported in its workers: a cluster outlives runs, as a real one does. Two phases, each with its own 1-worker runs:
the local pools first, with no cluster running (its idle scheduler and nannies take CPU from whatever runs beside
them), then the cluster started and its runs against 1 worker again. Within a phase runs rotate their order each
round so they see the same background load; each speed-up is the median over rounds of ``1-worker seconds / run
seconds`` of the same round. Also checks that every run gave the identical table. Target: >= 1.7x on 2 workers on a
quiet machine.

    python benchmarks/compare_workers.py [--config FILE] [--rounds 3] [--no-dask] [--out runs/compare-grid]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd

from backtests.compare import CompareSpec, load_compare_spec, run_comparison, worker_modules
from backtests.compare.executors import DaskExecutor, ProcessExecutor
from reports.comparison import build_comparison, write_comparison

GRID = Path(__file__).resolve().parent / "compare_grid36.toml"


def start_server(spec: CompareSpec) -> float:
    """Seconds to start the process server with the grid's modules imported (one tiny task on one worker)."""
    started = time.perf_counter()
    with ProcessExecutor(1, preload=worker_modules(spec)) as pool:
        list(pool.map_unordered(abs, [-1]))
    return time.perf_counter() - started


def _import(module: str) -> None:
    import importlib

    importlib.import_module(module)


@contextmanager
def local_dask(spec: CompareSpec, workers: int = 2):
    """A loopback Dask cluster of ``workers`` processes (1 thread each) with the grid's modules imported."""
    from distributed import Client, LocalCluster

    os.environ.setdefault("LSTMBT_TORCH_THREADS", "1")          # inherited by the worker processes
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster, set_as_default=False)
    try:
        for module in worker_modules(spec):
            client.run(_import, module)
        yield client
    finally:
        client.close()
        cluster.close()


def timed_grid(spec: CompareSpec, executor_factory):
    """(seconds, outcomes) of one run of the grid with a fresh model cache."""
    with tempfile.TemporaryDirectory(prefix="lstmbt-bench-models-") as cache:
        run_spec = dataclasses.replace(spec, config=spec.config.replace(cache_dir=cache))
        started = time.perf_counter()
        with executor_factory() as pool:
            outcomes = run_comparison(run_spec, pool, show_bar=False)
        return time.perf_counter() - started, outcomes


def run_rounds(spec: CompareSpec, runs: dict, rounds: int, tables: dict) -> tuple[dict[str, list], list | None]:
    """(seconds of each run over ``rounds`` rounds, order rotated each round; the last 2-worker outcomes), with
    every run's comparison table put in ``tables``."""
    names = list(runs)
    seconds: dict[str, list] = {n: [] for n in names}
    last = None
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            took, outcomes = timed_grid(spec, runs[name])
            failed = [o for o in outcomes if not o.ok]
            seconds[name].append(took)
            tables[name] = build_comparison(outcomes).table
            work = sum(o.seconds for o in outcomes)
            print(f"  round {k + 1}, {name:<16} {took:6.1f} s  (cells add up to {work:.1f} s; {len(failed)} failed)",
                  flush=True)
            for o in failed:
                print(f"    {o.cell.label}: {o.error}", file=sys.stderr)
            if name == "2 workers":
                last = outcomes
    return seconds, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(GRID), help="compare spec file (default: the 36-cell grid)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of runs per phase (order rotated each round)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    parser.add_argument("--out", help="also write the 2-worker comparison folder here")
    args = parser.parse_args()

    spec = load_compare_spec(args.config)
    cells = spec.cells()
    one, five, _ = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(os.sched_getaffinity(0))} cores usable; "
          f"load average {one:.2f} (1 min) {five:.2f} (5 min)")
    print(f"grid: {', '.join(spec.strategies)} x {len(spec.ranges)} ranges x {', '.join(spec.symbols)} = "
          f"{len(cells)} cells on {spec.config.data.timeframe} bars, cell reports {'on' if spec.cell_reports else 'off'}",
          flush=True)
    print(f"process server started in {start_server(spec):.1f} s (once per command; not in the timings)", flush=True)
    one_worker = ("1 worker", lambda: ProcessExecutor(1, preload=worker_modules(spec)))
    phases = [("local pools, no cluster running",
               dict([one_worker, ("2 workers", lambda: ProcessExecutor(2, preload=worker_modules(spec)))]), None)]
    if not args.no_dask:
        phases.append(("with the Dask cluster", {}, local_dask))
    ok, tables, last = True, {}, None
    for title, runs, cluster in phases:
        with ExitStack() as stack:
            if cluster is not None:
                started = time.perf_counter()
                client = stack.enter_context(cluster(spec))
                print(f"Dask LocalCluster (2 workers x 1 thread, 127.0.0.1) started in "
                      f"{time.perf_counter() - started:.1f} s (not in the timings)", flush=True)
                runs = dict([one_worker, ("Dask, 2 workers", lambda: DaskExecutor(client))])
            print(f"{title}:", flush=True)
            seconds, outcomes = run_rounds(spec, runs, args.rounds, tables)
            tables[f"1 worker ({title})"] = tables.pop("1 worker")
            last = outcomes or last
            names = list(runs)
            for name in names[1:]:
                speedup = statistics.median(a / b for a, b in zip(seconds[names[0]], seconds[name]))
                target = "  target >= 1.7x" if name == "2 workers" else ""
                ok &= speedup >= 1.7 or name != "2 workers"
                print(f"{name} vs 1 worker: {speedup:.2f}x faster (median of {args.rounds} round(s); rounds "
                      f"{', '.join(f'{a / b:.2f}x' for a, b in zip(seconds[names[0]], seconds[name]))}){target}")
    one, five, _ = os.getloadavg()
    print(f"load average at the end {one:.2f} (1 min) {five:.2f} (5 min); other work competing for the cores shows "
          f"as cells adding up to more time with 2 workers than with 1")
    reference_name = f"1 worker ({phases[0][0]})"
    reference = tables.pop(reference_name)
    for name, table in tables.items():
        try:
            pd.testing.assert_frame_equal(reference, table)
            same = "yes"
        except AssertionError as exc:
            same = f"NO ({str(exc).splitlines()[0]})"
            ok = False
        print(f"table identical to {reference_name}'s on {name}: {same}")
    if args.out and last is not None:
        page, _ = write_comparison(last, args.out, title="Comparison: " + ", ".join(spec.strategies),
                                   confidence=spec.confidence, n_boot=spec.bootstrap, seed=spec.config.seed)
        print(f"comparison: {page}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
