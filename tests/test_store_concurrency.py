"""Two downloads into one store at once, as two real processes against the loopback fake exchange: no row lost, no
hole left, and a hole is only reported as an exchange gap after a fetch confirmed it.

CI runs a few trials; ``LSTMBT_STORE_TRIALS=20`` runs the 20-trial stress version of the same test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import filelock
import pandas as pd
import pytest
from fake_exchange import FakeExchange, source_frame

from data_feeds.download import download
from data_feeds.retry import RetryPolicy
from data_feeds.store import Store

ROOT = Path(__file__).parent.parent
BTC = "BTC/USDT:USDT"
TRIALS = int(os.environ.get("LSTMBT_STORE_TRIALS", "1"))
FAST = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)
# (first, second) spans of 15m candles: overlapping, disjoint (a 10-day stretch between them), and nested
SPANS = {"overlapping": (("2025-08-20", "2025-09-10"), ("2025-09-01", "2025-09-25")),
         "disjoint": (("2025-08-20", "2025-09-05"), ("2025-09-16", "2025-10-01"))}

# many small pages, each flushed into the store at once: as many read-merge-writes as possible to race
WORKER = textwrap.dedent("""
    import json, sys
    from data_feeds.download import download
    from data_feeds.retry import RetryPolicy
    config, store, start, end = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    download("binanceusdm", "BTC/USDT:USDT", "15m", start, end, kinds=("candles", "funding"), store_dir=store,
             exchange_config=config, page_size=60, flush_pages=1, progress=False,
             policy=RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05))
""")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _cli(config: Path, store: Path, start: str, end: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "backtests.cli", "download", "--symbol", BTC, "--timeframe", "15m",
                             "--start", start, "--end", end, "--kinds", "candles,funding", "--data-dir", str(store),
                             "--exchange-config", str(config)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _worker(config: dict, store: Path, start: str, end: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config), str(store), start, end], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_store(store: Path, first: str, last: str) -> None:
    """The store holds exactly the exchange's rows from ``first`` through ``last`` (inclusive days): nothing lost, no
    hole between the two spans, no duplicate."""
    end = (pd.Timestamp(last) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    for kind, what in (("candles", "15m"), ("funding", "funding")):
        got = Store(store).read("binanceusdm", BTC, "15m", kind)
        want = source_frame("BTCUSDT", what, first, end)
        assert got.index.is_unique
        assert got.index.as_unit("ms").asi8.tolist() == want.index.as_unit("ms").asi8.tolist(), kind
        assert (got.to_numpy() == want.to_numpy()).all(), kind


def _trial(tmp: Path, case: str, launch) -> None:
    (a0, a1), (b0, b1) = SPANS[case]
    store = tmp / "store"
    tmp.mkdir(parents=True)
    with FakeExchange() as fake:
        config = fake.ccxt_config("binanceusdm")
        procs = [launch(config, tmp, store, a0, a1), launch(config, tmp, store, b0, b1)]
        outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "exchange gaps" not in out, out      # the fake exchange has no gap in this data
    _check_store(store, min(a0, b0), max(a1, b1))
    assert not list(store.rglob("*.tmp"))


def _launch_cli(config, tmp, store, start, end):
    path = tmp / "exchange.json"
    path.write_text(json.dumps(config))
    return _cli(path, store, start, end)


def _launch_worker(config, tmp, store, start, end):
    return _worker(config, store, start, end)


@pytest.mark.parametrize("case", sorted(SPANS))
def test_two_concurrent_lstmbt_downloads_keep_every_row_and_leave_no_hole(tmp_path, case):
    for trial in range(TRIALS):
        _trial(tmp_path / f"cli-{trial}", case, _launch_cli)


def test_two_processes_flushing_every_page_into_one_store_lose_nothing(tmp_path):
    cases = sorted(SPANS) if TRIALS > 1 else ["overlapping"]     # CI: one case; the stress run: both
    for trial in range(TRIALS):
        for case in cases:
            _trial(tmp_path / f"worker-{case}-{trial}", case, _launch_worker)


def test_merge_waits_for_another_process_holding_the_store_lock(tmp_path):
    store = Store(tmp_path)
    path = store.path("binanceusdm", BTC, "1h")
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, filelock
        with filelock.FileLock({str(path) + ".lock"!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(str(path) + ".lock", timeout=0.2).acquire()
        frame = source_frame("BTCUSDT", "1h", "2024-01-01", "2024-01-02")
        # a stale temporary file of a killed writer, cleaned once the lock is ours
        stale = path.parent / f".{path.name}.abc123.tmp"
        stale.write_bytes(b"half a file")
        holder.stdin.write("\n")
        holder.stdin.flush()
        store.merge(frame, "binanceusdm", BTC, "1h")
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
    assert len(store.read("binanceusdm", BTC, "1h")) == 24
    assert not stale.exists()


def test_a_hole_left_in_the_store_is_refetched_and_only_a_confirmed_one_is_an_exchange_gap(tmp_path):
    with FakeExchange() as fake:
        fake.remove("BTCUSDT", "1h", "2024-02-10 01:00", "2024-02-10 03:00")     # a real exchange gap
        full = source_frame("BTCUSDT", "1h", "2024-02-01", "2024-03-01")
        holed = full[(full.index < "2024-02-08") | (full.index >= "2024-02-14")]  # what a lost writer leaves
        Store(tmp_path).write(holed, "binanceusdm", BTC, "1h")
        report = download("binanceusdm", BTC, "1h", "2024-02-01", "2024-02-29", kinds=("candles",),
                          store_dir=tmp_path, exchange_config=fake.ccxt_config("binanceusdm"), policy=FAST)
    got = Store(tmp_path).read("binanceusdm", BTC, "1h")
    hole = pd.date_range("2024-02-10 01:00", periods=3, freq="h", tz="UTC")
    assert got.index.equals(full.drop(hole).index)
    candles = report.kinds[0]
    assert candles.gaps["missing"].tolist() == [3] and candles.confirmations == 1
