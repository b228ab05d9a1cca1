"""The Parquet store: layout, atomic writes, corrupt files reported and left alone, merge de-duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_feeds.errors import DataError
from data_feeds.store import STORE_ENV, Store, default_store_dir


def candles(start: str, periods: int, base: float = 100.0) -> pd.DataFrame:
    index = pd.date_range(start, periods=periods, freq="1h", tz="UTC", name="timestamp")
    close = base + np.arange(periods, dtype="float64")
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": np.ones(periods)}, index=index)


def test_path_encodes_exchange_symbol_kind_and_timeframe(tmp_path):
    store = Store(tmp_path)
    assert store.path("bybit", "BTC/USDT:USDT", "1h") == tmp_path / "bybit" / "BTC-USDT-USDT" / "candles-1h.parquet"
    assert store.path("bybit", "BTC/USDT:USDT", "1h", "mark").name == "mark-1h.parquet"
    assert store.path("bybit", "BTC/USDT:USDT", "1h", "funding").name == "funding.parquet"
    with pytest.raises(DataError, match="unknown data kind"):
        store.path("bybit", "BTC/USDT:USDT", "1h", "trades")


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path):
    store = Store(tmp_path)
    df = candles("2024-01-01", 48)
    path = store.write(df, "binanceusdm", "BTC/USDT:USDT", "1h")
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix != ".lock") == ["candles-1h.parquet"]
    back = store.read("binanceusdm", "BTC/USDT:USDT", "1h")
    pd.testing.assert_frame_equal(back, df, check_index_type=False, check_freq=False)
    assert str(back.index.tz) == "UTC"


def test_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path):
    store = Store(tmp_path)
    path = store.write(candles("2024-01-01", 10), "binanceusdm", "BTC/USDT:USDT", "1h")
    before = path.read_bytes()
    bad = candles("2024-01-02", 3)
    bad["close"] = pd.Series([1.0, "text", 2.0], index=bad.index, dtype=object)  # not one Arrow type
    with pytest.raises((TypeError, ValueError)):
        store.write(bad, "binanceusdm", "BTC/USDT:USDT", "1h")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix != ".lock") == ["candles-1h.parquet"]


def test_corrupt_file_is_reported_with_its_path_and_never_overwritten(tmp_path):
    store = Store(tmp_path)
    path = store.path("binanceusdm", "BTC/USDT:USDT", "1h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="corrupt store file") as info:
        store.read("binanceusdm", "BTC/USDT:USDT", "1h")
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="corrupt store file"):
        store.merge(candles("2024-01-01", 5), "binanceusdm", "BTC/USDT:USDT", "1h")
    assert path.read_bytes() == b"PAR1 this is not parquet"


def test_merge_unions_sorts_and_keeps_the_newer_row_on_equal_timestamps(tmp_path):
    store = Store(tmp_path)
    store.write(candles("2024-01-01 00:00", 10, base=100.0), "bybit", "ETH/USDT:USDT", "1h")
    newer = candles("2024-01-01 05:00", 10, base=500.0)  # overlaps hours 05:00 .. 09:00
    merged = store.merge(newer, "bybit", "ETH/USDT:USDT", "1h")
    assert len(merged) == 15
    assert merged.index.is_unique and merged.index.is_monotonic_increasing
    assert merged.loc["2024-01-01 04:00", "close"] == 104.0
    assert merged.loc["2024-01-01 05:00", "close"] == 500.0
    pd.testing.assert_frame_equal(store.read("bybit", "ETH/USDT:USDT", "1h"), merged, check_index_type=False,
                                  check_freq=False)


def test_merge_into_an_empty_store_writes_the_new_rows(tmp_path):
    merged = Store(tmp_path).merge(candles("2024-03-01", 4), "bybit", "BTC/USDT:USDT", "1h", "mark")
    assert len(merged) == 4
    assert Store(tmp_path).path("bybit", "BTC/USDT:USDT", "1h", "mark").exists()


def test_entries_list_every_stored_file_but_not_temporary_ones(tmp_path):
    store = Store(tmp_path)
    store.write(candles("2024-01-01", 3), "binanceusdm", "BTC/USDT:USDT", "1h")
    funding = pd.DataFrame({"funding_rate": [0.0001]}, index=pd.DatetimeIndex(["2024-01-01"], tz="UTC"))
    store.write(funding, "binanceusdm", "BTC/USDT:USDT", "1h", "funding")
    (tmp_path / "binanceusdm" / "BTC-USDT-USDT" / ".candles-1h.parquet.x1.tmp").write_bytes(b"half")
    found = [(e, s, k, tf) for e, s, k, tf, _ in store.entries()]
    assert found == [("binanceusdm", "BTC-USDT-USDT", "candles", "1h"), ("binanceusdm", "BTC-USDT-USDT", "funding", "")]


def test_store_folder_comes_from_the_environment_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "elsewhere"))
    assert default_store_dir() == tmp_path / "elsewhere"
    assert Store().root == tmp_path / "elsewhere"
    monkeypatch.delenv(STORE_ENV)
    assert default_store_dir() != tmp_path / "elsewhere"
