"""lstmbt download says every retry when it happens, not only in the final error (markets and pages alike)."""

from __future__ import annotations

import pytest
from fake_exchange import FakeExchange, Fault

from data_feeds.download import DownloadError, download
from data_feeds.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=3, max_elapsed=10.0, base_delay=0.01, max_delay=0.02)


def fetch(fake, store_dir, lines):
    return download("binanceusdm", "BTC/USDT:USDT", "1h", "2024-03-01", "2024-03-05", kinds=("candles",),
                    store_dir=store_dir, policy=FAST, page_size=200, flush_pages=1,
                    exchange_config=fake.ccxt_config("binanceusdm", timeout_ms=3000), on_retry=lines.append)


def test_each_page_retry_is_reported_as_it_happens(tmp_path):
    lines: list[str] = []
    with FakeExchange(faults=[Fault("503", "klines", skip=0, times=2)]) as fake:
        fetch(fake, tmp_path, lines)
    assert len(lines) == 2
    assert all("binanceusdm BTC/USDT:USDT 1h candles: page 2024-03-01 00:00" in line and "retrying in" in line
               for line in lines)
    assert "ExchangeNotAvailable" in lines[0] or "503" in lines[0]


def test_market_loading_retries_are_reported_before_giving_up(tmp_path):
    lines: list[str] = []
    with FakeExchange(faults=[Fault("503", "exchangeInfo", times=-1)]) as fake:
        with pytest.raises(DownloadError, match="cannot load markets"):
            fetch(fake, tmp_path, lines)
    assert [line.split("; ")[-1][:12] for line in lines] == ["retry 1 of 2", "retry 2 of 2"]
    assert all(line.startswith("binanceusdm markets: ") for line in lines)
