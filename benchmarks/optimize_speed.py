"""Trials per hour of ``lstmbt optimize`` on the shipped BTC/USDT:USDT 1h data with the default LSTM search space,
cold (an empty model cache: every fold model trains) and warm (a second study with the same seed, so the same
configurations, reading the cache the first one filled), measured side by side in one run.

The config is ``backtests/configs/btc_lstm_1h.toml`` without a ``[search]`` table, so the search is the default
space (``backtests.optimize.space.DEFAULT_LSTM_SEARCH``: window, hidden, layers, cell, horizon, learning rate,
dropout, threshold policy); 5 walk-forward folds over the first 80 % of the span, pruning on. Timed: the whole
search from loading the data to the last trial told, the final-span run of the winner and the guards included
(writing the report is not; the guards include the CPCV refit of a model strategy, up to 15 model fits cold and
none warm). Printed: trials per hour cold and warm, their ratio, the fold models trained and
loaded from the cache in each run (the warm run must load every one), and the peak resident memory of the
worker process running a fold. Machines here are shared and noisy: compare the ratio, not the hours.

    python benchmarks/optimize_speed.py [--trials 4] [--workers 2] [--config FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from backtests.compare.executors import ProcessExecutor
from backtests.optimize import load_optimize_spec, run_search
from backtests.optimize.search import worker_modules

MAIN_JOB = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "btc_lstm_1h.toml"


def timed_search(spec, folder: Path, workers: int) -> tuple[float, object]:
    run_spec = dataclasses.replace(spec, out=str(folder))
    started = time.perf_counter()

    def say(line: str) -> None:               # one line per trial, so a cut-short run still tells its pace
        print(f"  [{time.perf_counter() - started:7.1f} s] {line.strip()}", flush=True)

    with ProcessExecutor(workers, preload=worker_modules(spec)) as pool:
        outcome = run_search(run_spec, pool, batch=workers, show_bar=False, write=False, progress=say)
    return time.perf_counter() - started, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(MAIN_JOB), help="backtest config (default: the main job's)")
    parser.add_argument("--trials", type=int, default=4, help="trials per study (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes and trials run together")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lstmbt-bench-optimize-") as tmp:
        tmp = Path(tmp)
        spec = load_optimize_spec(args.config, trials=args.trials, workers=args.workers)
        spec = dataclasses.replace(spec, config=spec.config.replace(cache_dir=str(tmp / "models")))
        print(f"search: {len(spec.space.dimensions)} dimensions ({', '.join(spec.space.names)}), {args.trials} trials, "
              f"{spec.folds} folds, {args.workers} workers, {spec.config.data.symbol} {spec.config.data.timeframe} "
              f"{spec.config.data.start} .. {spec.config.data.end}", flush=True)
        rows = []
        for label in ("cold", "warm"):
            seconds, outcome = timed_search(spec, tmp / label, args.workers)
            t = outcome.trials
            trained, cached = int(t["models_trained"].fillna(0).sum()), int(t["models_cached"].fillna(0).sum())
            states = t["state"].value_counts().to_dict()
            rows.append((label, seconds, trained, cached, t))
            print(f"{label}: {len(t)} trials ({states}) in {seconds:.1f} s = {len(t) / seconds * 3600:.1f} trials/hour; "
                  f"fold models trained {trained}, loaded from the cache {cached}", flush=True)
        (_, cold_s, _, _, cold_t), (_, warm_s, warm_trained, _, warm_t) = rows
        same = cold_t[["number", "state", spec.objectives[0].text]].equals(warm_t[["number", "state",
                                                                                   spec.objectives[0].text]])
        print(f"warm / cold time: {warm_s / cold_s:.2f}; the warm study trained {warm_trained} models "
              f"(0 expected) and gave {'the same' if same else 'DIFFERENT'} trial values")
        print(f"peak resident memory of a worker process running a trial's fold: "
              f"{cold_t['peak_mib'].max():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
