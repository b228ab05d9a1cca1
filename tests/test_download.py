"""Downloads through real ccxt objects against the fake exchange: complete, resumable, verified, gaps reported."""

from __future__ import annotations

import pandas as pd
import pytest
from fake_exchange import FakeExchange, source_frame

from data_feeds import load
from data_feeds.download import DownloadError, download
from data_feeds.errors import DataError
from data_feeds.retry import RetryPolicy
from data_feeds.store import Store

FAST = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)
BTC = "BTC/USDT:USDT"


@pytest.fixture()
def fake():
    with FakeExchange() as server:
        yield server


def fetch(fake, store_dir, start, end, exchange="binanceusdm", **kw):
    kw.setdefault("policy", FAST)
    return download(exchange, BTC, "1h", start, end, store_dir=store_dir,
                    exchange_config=fake.ccxt_config(exchange), **kw)


def stored(store_dir, kind, exchange="binanceusdm"):
    return Store(store_dir).read(exchange, BTC, "1h", kind)


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.is_unique
    assert got.index.as_unit("ms").asi8.tolist() == want.index.as_unit("ms").asi8.tolist()
    assert got.columns.tolist() == want.columns.tolist()
    assert (got.to_numpy() == want.to_numpy()).all()


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit"])
def test_download_stores_candles_mark_and_funding_identical_to_the_exchange(fake, tmp_path, exchange):
    report = fetch(fake, tmp_path, "2024-01-01", "2024-03-31", exchange=exchange, page_size=500)
    assert [k.kind for k in report.kinds] == ["candles", "mark", "funding"]
    assert_same(stored(tmp_path, "candles", exchange), source_frame("BTCUSDT", "1h", "2024-01-01", "2024-04-01"))
    assert_same(stored(tmp_path, "mark", exchange), source_frame("BTCUSDT", "mark_1h", "2024-01-01", "2024-04-01"))
    assert_same(stored(tmp_path, "funding", exchange), source_frame("BTCUSDT", "funding", "2024-01-01", "2024-04-01"))
    candles = report.kinds[0]
    assert (candles.rows, candles.pages, len(candles.gaps), candles.retries) == (2184, 5, 0, [])


def test_load_reads_the_downloaded_data_from_the_store_folder_named_by_the_environment(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMBT_DATA_DIR", str(tmp_path / "store"))
    fake.remove("BTCUSDT", "1h", "2024-02-01 00:00", "2024-02-01 00:00")  # the store, not the sample, must answer
    download("binanceusdm", BTC, "1h", "2024-01-20", "2024-02-10", exchange_config=fake.ccxt_config("binanceusdm"),
             policy=FAST)
    assert (tmp_path / "store" / "binanceusdm" / "BTC-USDT-USDT" / "candles-1h.parquet").exists()
    df = load("binanceusdm", BTC, "1h", "2024-01-20", "2024-02-10")
    assert len(df) == 22 * 24 - 1
    assert pd.Timestamp("2024-02-01", tz="UTC") not in df.index
    assert_same(load("binanceusdm", BTC, "1h", "2024-01-20", "2024-02-10", kind="funding"),
                source_frame("BTCUSDT", "funding", "2024-01-20", "2024-02-11"))


def test_bybit_download_is_loadable_with_mark_prices_and_funding(fake, tmp_path):
    fetch(fake, tmp_path, "2024-05-01", "2024-05-31", exchange="bybit")
    mark = load("bybit", BTC, "1h", "2024-05-01", "2024-05-31", kind="mark", store_dir=tmp_path)
    assert len(mark) == 31 * 24 and (mark["volume"] == 0.0).all()
    assert len(load("bybit", BTC, "4h", "2024-05-01", "2024-05-31", store_dir=tmp_path)) == 31 * 6


def test_pages_stay_within_each_exchanges_cap_and_use_explicit_ends(fake, tmp_path):
    fetch(fake, tmp_path, "2024-01-01", "2024-06-30")
    fetch(fake, tmp_path, "2024-01-01", "2024-06-30", exchange="bybit")
    for endpoint, cap, end_key in [("klines", 1000, "endTime"), ("markPriceKlines", 1000, "endTime"),
                                   ("fundingRate", 1000, "endTime"), ("kline", 1000, "end"),
                                   ("mark-price-kline", 1000, "end"), ("history", 200, "endTime")]:
        served = fake.served(endpoint)
        assert served, endpoint
        assert all(int(r.params["limit"]) <= cap and end_key in r.params for r in served), endpoint
    assert len(fake.served("klines")) == 5  # 4,368 hourly bars in pages of 1,000


def test_markets_are_loaded_for_linear_contracts_only(fake, tmp_path):
    fetch(fake, tmp_path, "2024-01-01", "2024-01-02", exchange="bybit", kinds=("candles",))
    fetch(fake, tmp_path, "2024-01-01", "2024-01-02", kinds=("candles",))
    infos = fake.served("instruments-info")
    assert infos and all(r.params["category"] == "linear" for r in infos)
    paths = {r.path for r in fake.requests}
    assert paths == {"/v5/market/instruments-info", "/v5/market/kline", "/fapi/v1/exchangeInfo", "/fapi/v1/klines",
                     "/v5/market/risk-limit"}   # Bybit's public leverage tiers, stored with the market's rules


def test_rerun_fetches_only_what_is_missing_before_and_after_the_stored_span(fake, tmp_path):
    fetch(fake, tmp_path, "2024-02-01", "2024-02-29", page_size=200)
    fake.requests.clear()
    again = fetch(fake, tmp_path, "2024-02-01", "2024-02-29", page_size=200)
    assert fake.served("klines") == [] and again.kinds[0].fetched_rows == 0
    wider = fetch(fake, tmp_path, "2024-01-15", "2024-03-10", page_size=200)
    ends = sorted((int(r.params["startTime"]), int(r.params["endTime"])) for r in fake.served("klines"))
    feb = (pd.Timestamp("2024-02-01", tz="UTC").value // 10**6, pd.Timestamp("2024-03-01", tz="UTC").value // 10**6)
    assert all(end < feb[0] or start >= feb[1] for start, end in ends)  # nothing stored was fetched again
    assert wider.kinds[0].fetched_rows == (17 + 10) * 24
    assert_same(stored(tmp_path, "candles"), source_frame("BTCUSDT", "1h", "2024-01-15", "2024-03-11"))
    assert_same(stored(tmp_path, "funding"), source_frame("BTCUSDT", "funding", "2024-01-15", "2024-03-11"))


def test_exchange_gap_is_confirmed_by_a_second_fetch_and_reported_not_filled(fake, tmp_path):
    fake.remove("BTCUSDT", "1h", "2024-02-10 01:00", "2024-02-10 03:00")
    fake.remove("BTCUSDT", "funding", "2024-02-20 00:00", "2024-02-20 16:00")
    report = fetch(fake, tmp_path, "2024-02-01", "2024-02-29", page_size=200)
    candles, mark, funding = report.kinds
    assert candles.gaps["missing"].tolist() == [3]
    assert candles.gaps["after"].tolist() == [pd.Timestamp("2024-02-10 00:00", tz="UTC")]
    assert candles.confirmations == 1 and candles.retries == []
    assert len(fake.served("klines")) == 4 + 1  # 696 bars in pages of 200; the page with the gap fetched twice
    want = source_frame("BTCUSDT", "1h", "2024-02-01", "2024-03-01")
    hole = pd.date_range("2024-02-10 01:00", periods=3, freq="h", tz="UTC")
    assert_same(stored(tmp_path, "candles"), want.drop(hole))
    assert len(mark.gaps) == 0
    assert funding.gaps["missing"].tolist() == [32] and "exchange gaps: 1" in funding.line()
    assert "exchange gaps: 1 (3 missing" in candles.line()


def test_history_before_the_listing_is_reported_as_absent(fake, tmp_path):
    report = fetch(fake, tmp_path, "2019-09-01", "2019-09-15", kinds=("candles",), page_size=100)
    candles = report.kinds[0]
    assert candles.first == pd.Timestamp("2019-09-08 17:00", tz="UTC")
    assert any(note.startswith("no data before 2019-09-08 17:00") for note in candles.notes)
    assert_same(stored(tmp_path, "candles"), source_frame("BTCUSDT", "1h", "2019-09-01", "2019-09-16"))


def test_backfill_before_the_stored_span_stops_where_the_exchange_has_no_more_data(fake, tmp_path):
    fetch(fake, tmp_path, "2019-09-20", "2019-09-30", kinds=("candles",), page_size=100)
    fake.requests.clear()
    fetch(fake, tmp_path, "2019-08-01", "2019-09-30", kinds=("candles",), page_size=100)
    assert_same(stored(tmp_path, "candles"), source_frame("BTCUSDT", "1h", "2019-08-01", "2019-10-01"))
    starts = [int(r.params["startTime"]) for r in fake.served("klines")]
    assert starts == sorted(starts, reverse=True)  # paged backwards from the stored start
    assert min(starts) > pd.Timestamp("2019-08-20", tz="UTC").value // 10**6  # stopped at the first empty page


def test_corrupt_store_file_stops_the_download_and_is_left_untouched(fake, tmp_path):
    path = Store(tmp_path).path("binanceusdm", BTC, "1h", "mark")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not parquet")
    with pytest.raises(DataError, match="corrupt store file") as info:
        fetch(fake, tmp_path, "2024-01-01", "2024-01-31")
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"garbage, not parquet"
    assert fake.served("klines") == [] and fake.served("markPriceKlines") == []


def test_unknown_symbol_and_unsupported_timeframe_fail_before_fetching(fake, tmp_path):
    with pytest.raises(DataError, match="no linear market DOGE/USDT:USDT"):
        download("binanceusdm", "DOGE/USDT:USDT", "1h", "2024-01-01", "2024-01-02", store_dir=tmp_path,
                 exchange_config=fake.ccxt_config("binanceusdm"), policy=FAST)
    with pytest.raises(DataError, match="bybit has no 8h candles"):
        download("bybit", BTC, "8h", "2024-01-01", "2024-01-02", store_dir=tmp_path,
                 exchange_config=fake.ccxt_config("bybit"), policy=FAST)
    with pytest.raises(DataError, match="did you mean bybit"):
        download("bybitt", BTC, "1h", "2024-01-01", "2024-01-02", store_dir=tmp_path, policy=FAST)
    assert fake.served("klines") == [] and fake.served("kline") == []


def test_unreachable_exchange_fails_with_one_line_saying_nothing_was_downloaded(tmp_path):
    with FakeExchange() as server:
        config = server.ccxt_config("binanceusdm", timeout_ms=300)
    with pytest.raises(DownloadError, match="cannot load markets.*nothing was downloaded") as info:
        download("binanceusdm", BTC, "1h", "2024-01-01", "2024-01-02", store_dir=tmp_path, exchange_config=config,
                 policy=RetryPolicy(max_attempts=2, max_elapsed=5, base_delay=0.01))
    assert "\n" not in str(info.value)


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(fake, tmp_path, capsys):
    fetch(fake, tmp_path / "a", "2024-01-01", "2024-01-31", page_size=100)
    assert capsys.readouterr().err == ""
    fetch(fake, tmp_path / "b", "2024-01-01", "2024-01-31", page_size=100, progress=True)
    err = capsys.readouterr().err
    assert "binanceusdm BTC/USDT:USDT 1h candles" in err and "8/8" in err and "rows=744" in err


def test_missing_settlement_at_a_page_boundary_is_noticed_and_confirmed(fake, tmp_path):
    fake.remove("BTCUSDT", "funding", "2024-02-02 00:00", "2024-02-02 00:00")  # first settlement of the 2nd page
    report = fetch(fake, tmp_path, "2024-02-01", "2024-02-05", kinds=("funding",), page_size=25)  # 24 h pages
    funding = report.kinds[0]
    assert funding.confirmations == 1
    assert funding.gaps["after"].tolist() == [pd.Timestamp("2024-02-01 16:00", tz="UTC")]
    assert len(stored(tmp_path, "funding")) == 5 * 3 - 1
