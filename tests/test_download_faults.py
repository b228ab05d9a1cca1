"""Injected exchange faults: each download completes with the exchange's exact data or fails clearly, store intact."""

from __future__ import annotations

import pytest
from fake_exchange import FakeExchange, Fault, source_frame

from data_feeds.download import DownloadError, download
from data_feeds.retry import RetryPolicy
from data_feeds.store import Store

FAST = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)
BTC = "BTC/USDT:USDT"
SPAN = ("2024-03-01", "2024-03-31")  # 744 hourly bars: 4 pages of 200, 93 settlements


def run(fake, store_dir, exchange="binanceusdm", policy=FAST, timeout_ms=3000, **kw):
    return download(exchange, BTC, "1h", *SPAN, store_dir=store_dir, policy=policy, page_size=200, flush_pages=1,
                    exchange_config=fake.ccxt_config(exchange, timeout_ms=timeout_ms), **kw)


def assert_complete(store_dir, exchange="binanceusdm", kinds=("candles", "mark", "funding")):
    what = {"candles": "1h", "mark": "mark_1h", "funding": "funding"}
    for kind in kinds:
        got = Store(store_dir).read(exchange, BTC, "1h", kind)
        want = source_frame("BTCUSDT", what[kind], "2024-03-01", "2024-04-01")
        assert got.index.as_unit("ms").asi8.tolist() == want.index.as_unit("ms").asi8.tolist(), kind
        assert (got.to_numpy() == want.to_numpy()).all(), kind


BINANCE_FAULTS = [
    Fault("429", "klines", skip=1, retry_after="0"),
    Fault("503", "klines", skip=1, times=2),
    Fault("drop", "klines", skip=2),
    Fault("slow", "markPriceKlines", skip=1, delay=1.0),
    Fault("malformed", "klines", skip=1),
    Fault("html", "fundingRate", skip=1),
    Fault("empty", "klines", skip=2),
    Fault("empty", "fundingRate", skip=1),
    Fault("missing_candle", "markPriceKlines", skip=1),
    Fault("off_grid", "klines", skip=3),
    Fault("429", "exchangeInfo"),
]
BYBIT_FAULTS = [
    Fault("429", "kline", skip=1),
    Fault("503", "history", skip=1),
    Fault("drop", "mark-price-kline", skip=1),
    Fault("malformed", "kline", skip=2),
    Fault("empty", "history", skip=2),
    Fault("missing_candle", "kline", skip=1),
]


@pytest.mark.parametrize("fault", BINANCE_FAULTS, ids=lambda f: f"{f.kind}-{f.endpoint}")
def test_binance_download_recovers_from_a_transient_fault_with_identical_data(tmp_path, fault):
    with FakeExchange(faults=[fault]) as fake:
        report = run(fake, tmp_path, timeout_ms=500)
    assert [r.fault for r in fake.requests if r.fault] == [fault.kind] * len([r for r in fake.requests if r.fault])
    assert any(r.fault for r in fake.requests)
    assert_complete(tmp_path)
    retried = sum(len(k.retries) + k.confirmations for k in report.kinds)
    assert retried >= (0 if fault.endpoint == "exchangeInfo" else 1)
    assert all(len(k.gaps) == 0 for k in report.kinds)


@pytest.mark.parametrize("fault", BYBIT_FAULTS, ids=lambda f: f"{f.kind}-{f.endpoint}")
def test_bybit_download_recovers_from_a_transient_fault_with_identical_data(tmp_path, fault):
    with FakeExchange(faults=[fault]) as fake:
        run(fake, tmp_path, exchange="bybit")
    assert any(r.fault for r in fake.requests)
    assert_complete(tmp_path, exchange="bybit")


def test_retry_after_is_honoured_before_the_next_request(tmp_path):
    with FakeExchange(faults=[Fault("429", "klines", skip=1, retry_after="1")]) as fake:
        run(fake, tmp_path, kinds=("candles",))
    klines = fake.served("klines")
    at = [r.fault for r in klines].index("429")
    assert klines[at + 1].at - klines[at].at >= 1.0  # the policy alone would wait under 0.05 s
    assert_complete(tmp_path, kinds=("candles",))


def test_retry_after_beyond_the_retry_budget_gives_up_at_once_saying_what_was_saved(tmp_path):
    budget = RetryPolicy(max_attempts=5, max_elapsed=5.0, base_delay=0.01, max_delay=0.05)
    with FakeExchange(faults=[Fault("429", "klines", skip=2, retry_after="3600")]) as fake:
        with pytest.raises(DownloadError) as info:
            run(fake, tmp_path, policy=budget, kinds=("candles",))
    message = str(info.value)
    assert "asked to wait 3600 s (Retry-After)" in message
    assert "saved 2024-03-01 00:00 .. 2024-03-17 15:00 (400 rows)" in message and "run the same command" in message
    assert "\n" not in message
    assert len(fake.served("klines")) == 3


@pytest.mark.parametrize("fault", [Fault("empty", "klines", skip=2, times=-1), Fault("503", "klines", skip=2, times=-1),
                                   Fault("drop", "klines", skip=2, times=-1),
                                   Fault("malformed", "klines", skip=2, times=-1)],
                         ids=lambda f: f.kind)
def test_persistent_fault_fails_clearly_and_keeps_the_verified_pages(tmp_path, fault):
    with FakeExchange(faults=[fault]) as fake:
        with pytest.raises(DownloadError) as info:
            run(fake, tmp_path)
        assert len(fake.served("klines")) == 2 + FAST.max_attempts
        assert fake.served("markPriceKlines") == []  # the download stopped at the failing kind
    message = str(info.value)
    assert message.startswith("binanceusdm BTC/USDT:USDT 1h candles: page 2024-03-17 16:00 .. 2024-03-25 23:00: ")
    assert "gave up after 5 attempt(s)" in message
    assert "saved 2024-03-01 00:00 .. 2024-03-17 15:00 (400 rows)" in message
    if fault.kind in ("empty", "malformed"):
        assert "empty page inside the span" in message
    got = Store(tmp_path).read("binanceusdm", BTC, "1h")
    want = source_frame("BTCUSDT", "1h", "2024-03-01", "2024-03-17 16:00")
    assert (got.to_numpy() == want.to_numpy()).all() and got.index.equals(want.index)
    with FakeExchange() as fake:  # the exchange recovers: the re-run resumes after the saved pages
        run(fake, tmp_path)
        assert int(fake.served("klines")[0].params["startTime"]) == want.index[-1].value // 10**6 + 3_600_000
    assert_complete(tmp_path)


def test_short_page_that_changes_on_every_fetch_is_never_accepted(tmp_path):
    with FakeExchange(faults=[Fault("flaky_candle", "klines", skip=1, times=-1)]) as fake:
        with pytest.raises(DownloadError, match="last error Unconfirmed: 199 of 200 candles") as info:
            run(fake, tmp_path, kinds=("candles",))
    assert "saved 2024-03-01 00:00 .. 2024-03-09 07:00 (200 rows)" in str(info.value)


def test_off_grid_timestamp_that_persists_fails_naming_it(tmp_path):
    with FakeExchange(faults=[Fault("off_grid", "klines", times=-1)]) as fake:
        with pytest.raises(DownloadError, match=r"timestamp 2024-03-05 04:00 is not on the 1h grid.*nothing saved yet"):
            run(fake, tmp_path, kinds=("candles",))
    assert Store(tmp_path).read("binanceusdm", BTC, "1h") is None
