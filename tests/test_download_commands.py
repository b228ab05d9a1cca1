"""``lstmbt download`` / ``lstmbt data list`` as functions, exchange config files and API keys from the environment."""

from __future__ import annotations

import io
import json

import pytest
from fake_exchange import FakeExchange

from data_feeds.commands import data_list, download_command, stored_entries
from data_feeds.errors import DataError
from data_feeds.exchange import credentials_from_env, make_exchange, read_exchange_config
from data_feeds.store import Store

BTC = "BTC/USDT:USDT"


@pytest.fixture()
def fake():
    with FakeExchange() as server:
        yield server


def write_config(path, fake, exchange="binanceusdm"):
    path.write_text(json.dumps(fake.ccxt_config(exchange)))
    return path


def test_download_command_fills_the_data_dir_and_prints_one_line_per_kind(fake, tmp_path):
    out = io.StringIO()
    code = download_command("binanceusdm", BTC, "1h", "2024-01-01", "2024-01-31", data_dir=tmp_path / "d",
                            exchange_config=write_config(tmp_path / "x.json", fake), out=out)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert lines[0] == "binanceusdm BTC/USDT:USDT 1h 2024-01-01 00:00 .. 2024-02-01 00:00 (end exclusive)"
    assert lines[1].startswith("  candles: 744 rows 2024-01-01 00:00 .. 2024-01-31 23:00; fetched 744 rows in 1 page")
    assert lines[2].startswith("  mark: 744 rows") and lines[3].startswith("  funding: 93 rows")
    assert str(tmp_path / "d") in lines[1]


def test_data_list_shows_span_rows_and_gaps_of_every_stored_series(fake, tmp_path):
    fake.remove("BTCUSDT", "1h", "2024-01-10 05:00", "2024-01-10 06:00")
    download_command("bybit", BTC, "1h", "2024-01-01", "2024-01-31", data_dir=tmp_path,
                     exchange_config=write_config(tmp_path / "x.json", fake, "bybit"), out=io.StringIO())
    table = stored_entries(tmp_path)
    candles = table[table["kind"] == "candles"].iloc[0]
    assert (candles["exchange"], candles["symbol"], candles["timeframe"]) == ("bybit", BTC, "1h")
    assert (candles["start"], candles["end"], candles["rows"]) == ("2024-01-01 00:00", "2024-01-31 23:00", 742)
    assert (candles["gaps"], candles["missing"]) == (1, 2)
    assert sorted(table["kind"]) == ["candles", "funding", "mark"]
    text = data_list(tmp_path)
    assert text.splitlines()[0] == f"store: {tmp_path}"
    assert "bybit BTC/USDT:USDT candles        1h 2024-01-01 00:00 2024-01-31 23:00   742     1        2" in text


def test_data_list_names_a_corrupt_file_instead_of_failing(tmp_path):
    path = Store(tmp_path).path("binanceusdm", BTC, "1h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    text = data_list(tmp_path)
    assert f"corrupt store file {path}" in text
    assert path.read_bytes() == b"not parquet"


def test_data_list_of_an_empty_store_says_so(tmp_path):
    assert data_list(tmp_path / "nothing").startswith(f"no data stored in {tmp_path / 'nothing'}\n\nshipped sample")


def test_exchange_config_file_in_toml_or_json_reaches_the_ccxt_object(tmp_path):
    toml = tmp_path / "binance.toml"
    toml.write_text('timeout = 12345\nrateLimit = 7\n[options]\nrecvWindow = 9000\n'
                    '[urls.api]\nfapiPublic = "http://127.0.0.1:9/fapi/v1"\n')
    exchange = make_exchange("binanceusdm", read_exchange_config(toml))
    assert (exchange.timeout, exchange.rateLimit) == (12345, 7)
    assert exchange.options["recvWindow"] == 9000
    assert exchange.options["fetchMarkets"]["types"] == ["linear"]
    assert exchange.urls["api"]["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
    assert exchange.urls["api"]["dapiPublic"].startswith("https://dapi.binance.com")  # others kept
    js = tmp_path / "bybit.json"
    js.write_text(json.dumps({"timeout": 2222, "options": {"fetchMarkets": {"types": ["linear"]}}}))
    assert make_exchange("bybit", read_exchange_config(js)).timeout == 2222


@pytest.mark.parametrize("content, message", [
    ('{"apiKey": "abc", "timeout": 1000}', "apiKey must not be stored in a file; set LSTMBT_<EXCHANGE>_API_KEY"),
    ('{"timout": 1000}', "unknown ccxt option 'timout'; did you mean 'timeout'?"),
    ('{"timeout": ', "is not valid JSON"),
    ('[1, 2]', "must hold a table/object"),
])
def test_bad_exchange_config_is_refused_with_a_one_line_reason(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_exchange_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_exchange_config_file_is_named(tmp_path):
    with pytest.raises(DataError, match=f"cannot read exchange config {tmp_path / 'nope.toml'}"):
        download_command("binanceusdm", BTC, "1h", "2024-01-01", "2024-01-02", exchange_config=tmp_path / "nope.toml")


def test_api_keys_come_from_the_environment_and_are_never_written(fake, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LSTMBT_BINANCEUSDM_API_KEY", "KEY-7f3a9c")
    monkeypatch.setenv("LSTMBT_BINANCEUSDM_SECRET", "SECRET-51be02")
    assert credentials_from_env("binanceusdm") == {"apiKey": "KEY-7f3a9c", "secret": "SECRET-51be02"}
    assert credentials_from_env("bybit") == {}
    assert make_exchange("binanceusdm").apiKey == "KEY-7f3a9c"
    caplog.set_level("DEBUG")
    out = io.StringIO()
    download_command("binanceusdm", BTC, "1h", "2024-01-01", "2024-01-03", data_dir=tmp_path / "d",
                     exchange_config=write_config(tmp_path / "x.json", fake), out=out)
    written = b"".join(p.read_bytes() for p in (tmp_path / "d").rglob("*") if p.is_file())
    for secret in ("KEY-7f3a9c", "SECRET-51be02"):
        assert secret.encode() not in written
        assert secret not in out.getvalue() and secret not in caplog.text
