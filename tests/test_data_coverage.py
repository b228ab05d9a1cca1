"""Spans without funding or mark data are named (CLI warning, report banner, metrics.json), never silently zero or
stale: a symbol outside the sample, a shipped symbol past the sample's coverage, a funding file with a hole."""

from __future__ import annotations

import numpy as np
import pandas as pd
from replay import make_market

from backtests.engine import run_notices
from backtests.margin import market_rules
from data_feeds.coverage import funding_gaps, mark_gaps
from data_feeds.loader import load_market

FLAT = (1.0, 1.0, 1.0, 1.0)
T = pd.Timestamp


def test_no_funding_at_all_names_the_whole_span():
    market = make_market([FLAT] * 48, symbol="XRP/USDT:USDT")
    assert funding_gaps(market) == [(T("2024-01-01", tz="UTC"), T("2024-01-03", tz="UTC"))]
    notices = run_notices(market_rules("XRP/USDT:USDT"), market)
    assert any(n.startswith("NO FUNDING DATA for XRP/USDT:USDT in 2024-01-01 00:00 .. 2024-01-03 00:00") for n in notices)
    assert any(n.startswith("NO MARK PRICES for XRP/USDT:USDT") for n in notices)


def test_a_hole_in_the_funding_and_missing_mark_candles_are_named():
    # 8h settlements on day 1 only; mark candles missing for hours 30..35
    market = make_market([FLAT] * 48, funding={0: 1e-4, 8: 1e-4, 16: 1e-4}, mark=[FLAT] * 48)
    market.mark = market.mark.drop(market.mark.index[30:36])
    assert funding_gaps(market) == [(T("2024-01-02", tz="UTC"), T("2024-01-03", tz="UTC"))]
    assert mark_gaps(market) == [(T("2024-01-02 06:00", tz="UTC"), T("2024-01-02 12:00", tz="UTC"))]


def test_a_shipped_symbol_past_the_samples_coverage_is_named(tmp_path):
    # the user's BTC candles run two days past the shipped funding (last settlement 2025-12-31 16:00)
    idx = pd.date_range("2025-12-31", periods=72, freq="1h", tz="UTC")
    pd.DataFrame({"timestamp": idx.as_unit("ms").asi8, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                  "volume": 1.0}).to_csv(tmp_path / "btc.csv", index=False)
    market = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2025-12-31", "2026-01-02", data_path=tmp_path / "btc.csv")
    assert np.isclose(market.funding["funding_rate"].iloc[-1], 3.75e-05)
    assert funding_gaps(market) == [(T("2026-01-01", tz="UTC"), T("2026-01-03", tz="UTC"))]
