"""A million 1m bars: bars/s and peak memory of full sma_cross and LSTM runs at 250k, 500k and 1M bars.

Candles are synthetic (a seeded geometric random walk on a 1-minute grid, funding every 8 hours) because the
shipped sample is 73,000 bars; speed and memory depend on the bar count, not on the prices. Each run is a fresh
subprocess, so its peak resident memory (``ru_maxrss``) is its own: interpreter, imports, data, model and results
included. The LSTM (window 48, hidden 32) is trained once on the first 18,720 bars into a temporary cache before
any timing; each LSTM run then loads it and runs the network over every traded bar (prediction cache empty: cold).

Linear growth: ``seconds per bar at N / seconds per bar at the smallest N`` is printed per size (1.00 = linear).
Target: peak memory of the 1M-bar LSTM run under 1.5 GB.

    python benchmarks/million_bars.py [--sizes 250000,500000,1000000] [--strategies sma_cross,lstm] [--stateful]

``--stateful`` adds rows for the stateful LSTM (``kind = "lstm_stateful"``, same size, window 48 as burn-in: one
recurrent step per bar), run by the same ``lstm`` strategy; the other rows keep their meaning.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2020-01-01", tz="UTC")
MODEL = {"train_bars": 14_400, "val_bars": 4_320, "epochs": 1, "window": 48}
STATEFUL = "lstm_stateful"  # the row name of --stateful: the lstm strategy with the stateful kind
HISTORY = 20_000  # bars before the traded span (LSTM training, validation and warm-up)


def synthetic_market(bars: int, seed: int = 7):
    """``bars`` traded 1m candles after :data:`HISTORY` bars of history, and 8-hourly funding."""
    from data_feeds.loader import MarketData

    n = bars + HISTORY
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0004, n)) * close
    index = pd.date_range(START, periods=n, freq="1min", tz="UTC", name="timestamp")
    candles = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + wick,
                            "low": np.minimum(open_, close) - wick, "close": close,
                            "volume": rng.uniform(5.0, 50.0, n)}, index=index)
    settle = pd.date_range(START, index[-1], freq="8h", name="timestamp")
    funding = pd.DataFrame({"funding_rate": rng.normal(0.0001, 0.0001, len(settle))}, index=settle)
    return MarketData("synthetic", "BTC/USDT:USDT", "1m", candles, funding, None, "synthetic")


def config_for(strategy: str, bars: int, cache_dir: str):
    from backtests import BacktestConfig, DataConfig

    t0 = START + pd.Timedelta(minutes=HISTORY)
    t1 = t0 + pd.Timedelta(minutes=bars)
    data = DataConfig(symbol="BTC/USDT:USDT", timeframe="1m", start=t0.isoformat(), end=t1.isoformat())
    if strategy == STATEFUL:
        return BacktestConfig(strategy="lstm", data=data, cache_dir=cache_dir, model={**MODEL, "kind": STATEFUL})
    return BacktestConfig(strategy=strategy, data=data, cache_dir=cache_dir,
                          model=MODEL if strategy == "lstm" else {})


def child(strategy: str, bars: int, cache_dir: str) -> None:
    """One run in this process; prints a JSON line with seconds, bars and peak RSS."""
    import resource
    import shutil

    from backtests import run_backtest

    market = synthetic_market(bars)
    config = config_for(strategy, bars, cache_dir)
    shutil.rmtree(Path(cache_dir) / "predictions", ignore_errors=True)   # cold: the network runs
    started = time.perf_counter()
    result = run_backtest(config, market=market)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024       # Linux: KiB
    print(json.dumps({"seconds": seconds, "bars": len(result.equity), "peak": peak,
                      "final_equity": float(result.equity.iloc[-1])}))


def run_child(strategy: str, bars: int, cache_dir: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", strategy, str(bars), cache_dir],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _root()})
    if out.returncode:
        raise SystemExit(f"{strategy} at {bars:,} bars failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _root() -> str:
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000,500000,1000000")
    parser.add_argument("--strategies", default="sma_cross,lstm")
    parser.add_argument("--stateful", action="store_true", help="add rows for kind = lstm_stateful")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    strategies = args.strategies.split(",") + ([STATEFUL] if args.stateful else [])
    one, five, _ = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(os.sched_getaffinity(0))} cores usable; "
          f"load average {one:.2f} (1 min) {five:.2f} (5 min); synthetic 1m candles, each run a fresh process",
          flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="lstmbt-million-") as cache:
        for name in ("lstm", STATEFUL):
            if name in strategies:
                started = time.perf_counter()
                run_child(name, 1_000, cache)                # trains the model once (not in the timings)
                print(f"{name} trained once in {time.perf_counter() - started:.0f} s (not timed)", flush=True)
        for strategy in strategies:
            base = None
            for bars in sizes:
                r = run_child(strategy, bars, cache)
                per_bar = r["seconds"] / r["bars"]
                base = base or per_bar
                mb = r["peak"] / 2**20
                note = ""
                if strategy in ("lstm", STATEFUL) and bars >= 1_000_000:
                    ok &= mb < 1536
                    note = f"  target < 1,536 MB: {'met' if mb < 1536 else 'NOT met'}"
                print(f"  {strategy:<13} {r['bars']:>9,} bars {r['seconds']:7.1f} s {r['bars'] / r['seconds']:>8,.0f} bars/s"
                      f"  peak {mb:6,.0f} MB ({r['peak'] / r['bars']:,.0f} B/bar)  time/bar vs {sizes[0]:,}: "
                      f"{per_bar / base:4.2f}{note}", flush=True)
    one, five, _ = os.getloadavg()
    print(f"load average at the end {one:.2f} (1 min) {five:.2f} (5 min)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
