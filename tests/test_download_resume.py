"""Interrupted downloads resume: after SIGKILL of a real download process, and after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
from fake_exchange import FakeExchange, source_frame

from data_feeds.commands import download_command
from data_feeds.download import download
from data_feeds.retry import RetryPolicy
from data_feeds.store import Store

FAST = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)
BTC = "BTC/USDT:USDT"
KINDS = ("candles", "funding")
SPAN = ("2023-01-01", "2023-12-31")
CHILD = """
import json, sys
from data_feeds.download import download
from data_feeds.retry import RetryPolicy
download("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-12-31", kinds=("candles", "funding"),
         store_dir=sys.argv[2], exchange_config=json.loads(sys.argv[1]), page_size=100, flush_pages=2,
         progress=False, policy=RetryPolicy(base_delay=0.01, max_delay=0.05))
"""


def stored_rows(store_dir, kind="candles") -> int:
    """Rows stored now (read while the download may be writing: atomic writes mean never a torn file)."""
    df = Store(store_dir).read("binanceusdm", BTC, "1h", kind)
    return 0 if df is None else len(df)


def uninterrupted(tmp_path):
    with FakeExchange() as fake:
        download("binanceusdm", BTC, "1h", *SPAN, kinds=KINDS, store_dir=tmp_path / "whole", page_size=100,
                 policy=FAST, exchange_config=fake.ccxt_config("binanceusdm"))
    return {k: Store(tmp_path / "whole").read("binanceusdm", BTC, "1h", k) for k in KINDS}


def test_download_killed_with_sigkill_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path):
    resumed_dir = tmp_path / "resumed"
    with FakeExchange(page_delay=0.1) as fake:  # slow pages: the kill lands mid-download even on a loaded machine
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(fake.ccxt_config("binanceusdm")),
                                  str(resumed_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while stored_rows(resumed_dir) < 600 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        partial = Store(resumed_dir).read("binanceusdm", BTC, "1h")
        assert 600 <= len(partial) < 8760
        want = source_frame("BTCUSDT", "1h", *SPAN)
        assert (partial.to_numpy() == want.iloc[:len(partial)].to_numpy()).all()  # a clean prefix, nothing torn

        fake.page_delay = 0.0
        fake.requests.clear()
        download("binanceusdm", BTC, "1h", *SPAN, kinds=KINDS, store_dir=resumed_dir, page_size=100, policy=FAST,
                 exchange_config=fake.ccxt_config("binanceusdm"))
        first = int(fake.served("klines")[0].params["startTime"])
        assert first == partial.index[-1].value // 10**6 + 3_600_000  # nothing stored was fetched again

    whole = uninterrupted(tmp_path)
    for kind in KINDS:
        pd.testing.assert_frame_equal(Store(resumed_dir).read("binanceusdm", BTC, "1h", kind), whole[kind])
    assert len(whole["candles"]) == 8760
    assert (whole["candles"].to_numpy() == source_frame("BTCUSDT", "1h", "2023-01-01", "2024-01-01").to_numpy()).all()


def test_ctrl_c_saves_the_verified_pages_and_a_rerun_completes_them(tmp_path, capsys):
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with FakeExchange(page_delay=0.3) as fake:  # 9 pages of 1,000 candles take about 2.7 s
        config = tmp_path / "exchange.json"
        config.write_text(json.dumps(fake.ccxt_config("binanceusdm")))
        done = threading.Event()

        def press_ctrl_c():  # once the second page is requested, i.e. the first one was verified
            while not done.is_set() and len(fake.served("klines")) < 2:
                time.sleep(0.01)
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=press_ctrl_c, daemon=True).start()
        try:
            code = download_command("binanceusdm", BTC, "1h", *SPAN, data_dir=tmp_path / "store",
                                    exchange_config=config, kinds=KINDS)
        finally:
            done.set()
            signal.signal(signal.SIGINT, previous)
        assert code == 130
        assert "interrupted" in capsys.readouterr().err
        saved = stored_rows(tmp_path / "store")
        assert 0 < saved < 8760
        fake.page_delay = 0.0
        assert download_command("binanceusdm", BTC, "1h", *SPAN, data_dir=tmp_path / "store",
                                exchange_config=config, kinds=KINDS) == 0
    whole = uninterrupted(tmp_path)
    for kind in KINDS:
        pd.testing.assert_frame_equal(Store(tmp_path / "store").read("binanceusdm", BTC, "1h", kind), whole[kind])
