"""load()/load_market(): the shipped sample, user files, resampling, and clear errors on bad input."""

import gzip

import numpy as np
import pandas as pd
import pytest

from conftest import make_candles, write_candles_csv
from data_feeds import DataError, find_gaps, load, load_market, parse_span
from data_feeds.store import Store


def test_shipped_btc_1h_loads_validated_and_utc():
    df = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-31")
    assert len(df) == 31 * 24
    assert str(df.index.tz) == "UTC"
    assert df.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert df.index[-1] == pd.Timestamp("2024-01-31 23:00", tz="UTC")
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]


def test_end_date_is_inclusive_of_the_whole_day():
    t0, t1 = parse_span("2024-06-01", "2024-06-30")
    assert t1 == pd.Timestamp("2024-07-01", tz="UTC")
    t0, t1 = parse_span("2024-06-01", "2024-06-30T12:00")
    assert t1 == pd.Timestamp("2024-06-30 12:00", tz="UTC")


@pytest.mark.parametrize("start,end", [("2024-02-01", "2024-01-01"), ("2024-01-01", "2023-12-31")])
def test_reversed_span_is_refused(start, end):
    with pytest.raises(DataError, match="empty or reversed"):
        load("binanceusdm", "BTC/USDT:USDT", "1h", start, end)


def test_unknown_symbol_names_what_is_shipped_and_how_to_download():
    with pytest.raises(DataError, match="BTC/USDT:USDT.*lstmbt download"):
        load("binanceusdm", "DOGE/USDT:USDT", "1h", "2024-01-01", "2024-01-02")


def test_unknown_timeframe_is_refused():
    with pytest.raises(DataError, match="unknown timeframe '7m'"):
        load("binanceusdm", "BTC/USDT:USDT", "7m", "2024-01-01", "2024-01-02")


def test_span_outside_the_data_says_what_the_data_covers():
    with pytest.raises(DataError, match="data covers 2019-09-08"):
        load("binanceusdm", "BTC/USDT:USDT", "1h", "2030-01-01", "2030-02-01")


def test_4h_is_resampled_from_1h_with_complete_bars_only():
    h1 = load("binanceusdm", "ETH/USDT:USDT", "1h", "2024-03-01", "2024-03-02")
    h4 = load("binanceusdm", "ETH/USDT:USDT", "4h", "2024-03-01", "2024-03-02")
    assert len(h4) == 12
    first = h1.iloc[:4]
    assert h4.iloc[0].to_dict() == pytest.approx({"open": first.open.iloc[0], "high": first.high.max(),
                                                  "low": first.low.min(), "close": first.close.iloc[-1],
                                                  "volume": first.volume.sum()})


def test_market_has_funding_every_8h_and_mark_prices():
    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-10")
    inside = m.funding[m.funding.index >= m.candles.index[0]]
    assert len(inside) == 30 and set(inside.index.hour) == {0, 8, 16}
    # the settlement just before the span is kept: its rate is already known at the first bar
    assert list(m.funding.index[:1]) == [pd.Timestamp("2023-12-31 16:00", tz="UTC")]
    assert m.mark is not None and len(m.mark) == len(m.candles)


def test_user_csv_is_loaded_like_the_sample(tmp_path):
    df = make_candles(np.linspace(100, 110, 48))
    write_candles_csv(df, tmp_path / "mine.csv")
    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-02", data_path=tmp_path / "mine.csv")
    pd.testing.assert_frame_equal(m.candles, df, check_freq=False, check_index_type=False)
    assert m.source.endswith("mine.csv")


def _corrupt(tmp_path, mutate) -> str:
    df = make_candles(np.linspace(100, 110, 48))
    write_candles_csv(df, tmp_path / "bad.csv")
    text = (tmp_path / "bad.csv").read_text().splitlines()
    (tmp_path / "bad.csv").write_text("\n".join(mutate(text)) + "\n")
    return str(tmp_path / "bad.csv")


@pytest.mark.parametrize("mutate,message", [
    (lambda rows: rows[:10] + [rows[10].replace(rows[10].split(",")[4], "")] + rows[11:], "NaN or missing"),
    (lambda rows: rows[:10] + [rows[9]] + rows[10:], "duplicate timestamp"),
    (lambda rows: [rows[0]] + rows[1:][::-1], "not in increasing order"),
    (lambda rows: [rows[0].replace("close", "klose")] + rows[1:], "missing column"),
    (lambda rows: rows[:5] + [rows[5].split(",")[0] + ",100,99,101,100,1"] + rows[6:], "violate low"),
    (lambda rows: ["garbage"] + rows[1:], "no timestamp column"),
])
def test_malformed_user_csv_gives_one_line_error(tmp_path, mutate, message):
    path = _corrupt(tmp_path, mutate)
    with pytest.raises(DataError, match=message) as err:
        load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-02", data_path=path)
    assert "\n" not in str(err.value)


def test_user_file_with_other_bar_size_than_timeframe_is_refused(tmp_path):
    write_candles_csv(make_candles(np.linspace(100, 110, 48), freq="15min"), tmp_path / "m15.csv")
    with pytest.raises(DataError, match="apart but --timeframe is 1h"):
        load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-02", data_path=tmp_path / "m15.csv")


def test_gaps_are_reported_not_filled():
    index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 04:00", "2024-01-01 05:00"], tz="UTC")
    gaps = find_gaps(index, "1h")
    assert gaps.to_dict("records") == [{"after": index[1], "before": index[2], "missing": 2}]


def test_store_data_is_preferred_to_the_sample():
    df = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-01")
    changed = df.assign(close=df.close * 1.0)
    changed.iloc[0, changed.columns.get_loc("volume")] = 123456.0
    Store().write(changed, "binanceusdm", "BTC/USDT:USDT", "1h")
    again = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-01")
    assert again.volume.iloc[0] == 123456.0


def test_corrupt_store_file_is_named_and_left_untouched():
    path = Store().path("binanceusdm", "BTC/USDT:USDT", "1h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=f"corrupt store file {path}"):
        load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-02")
    assert path.read_bytes() == b"not parquet at all"


def test_downloaded_finer_candles_win_over_the_shipped_sample():
    m1 = load("binanceusdm", "BTC/USDT:USDT", "1m", "2025-05-10", "2025-05-11")
    Store().write(m1, "binanceusdm", "BTC/USDT:USDT", "1m")
    m15 = load("binanceusdm", "BTC/USDT:USDT", "15m", "2025-05-10", "2025-05-11")  # sample 15m starts in August
    assert len(m15) == 2 * 96
    assert m15.close.iloc[0] == m1.close.iloc[14]
