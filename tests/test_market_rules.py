"""Market rules as a dated record: stored by ``download`` from ccxt (real client, fake exchange on loopback), read
from a user's file, shipped for BTC/ETH, flagged defaults otherwise; minimum order refusals and the wiped-out stop
in both accountants and in a run's report."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from fake_exchange import FakeExchange
from replay import make_market, run_cerebro

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from backtests.margin import market_rules, trading_rules
from backtests.reference import run_reference
from data_feeds.commands import download_command
from data_feeds.errors import DataError
from data_feeds.feed import feed_arrays
from reports.metrics import result_metrics
from data_feeds.market_rules import LeverageTier, MarketRules, load_rules, read_rules_file, rules_path

BTC, XRP = "BTC/USDT:USDT", "XRP/USDT:USDT"
FLAT = (0.5, 0.5, 0.5, 0.5)


def test_download_stores_each_markets_rules_next_to_its_data(tmp_path):
    with FakeExchange() as fake:
        for exchange in ("bybit", "binanceusdm"):
            config = tmp_path / f"{exchange}.json"
            config.write_text(json.dumps(fake.ccxt_config(exchange)))
            out = io.StringIO()
            download_command(exchange, BTC, "1h", "2024-01-01", "2024-01-02", data_dir=tmp_path / "s",
                             exchange_config=config, out=out, kinds=["funding"])
            assert "market rules: qty step 0.001, min qty 0.001" in out.getvalue()
            assert rules_path(tmp_path / "s", exchange, BTC).exists()
    bybit = load_rules("bybit", BTC, store_dir=tmp_path / "s")
    # Bybit serves its risk limits publicly: caps, rates, max leverage and mmDeduction per tier
    assert [(t.floor, t.cap, t.max_leverage, t.maintenance_rate, t.maintenance_amount) for t in bybit.tiers] == [
        (0, 2e6, 100, 0.005, 0.0), (2e6, 2.6e6, 86.2, 0.0056, 1200.0), (2.6e6, 3.2e6, 75.75, 0.0062, 2760.0)]
    assert (bybit.min_notional, bybit.price_tick, bybit.is_default) == (5.0, 0.1, False) and bybit.fetched
    binance = load_rules("binanceusdm", BTC, store_dir=tmp_path / "s")
    # Binance's tiers need keys: what load_markets gives is stored, the tiers come from the shipped snapshot
    assert (binance.min_notional, binance.liquidation_fee) == (100.0, 0.0125)
    assert "API key" in binance.tiers_note and "shipped snapshot" in binance.tiers_note
    assert binance.tiers[0].max_leverage == 125


def test_a_users_rules_file_in_toml_or_json_is_read_and_checked(tmp_path):
    toml = tmp_path / "xrp.toml"
    toml.write_text('qty_step = 0.1\nmin_notional = 5\nliquidation_fee = 0.0125\n'
                    '[[tiers]]\nfloor = 0\ncap = 750000\nmax_leverage = 25\nmaintenance_rate = 0.02\n'
                    '[[tiers]]\nfloor = 750000\nmax_leverage = 10\nmaintenance_rate = 0.05\n')
    rules = load_rules("binanceusdm", XRP, path=toml)
    assert (rules.qty_step, rules.tiers[1].maintenance_amount) == (0.1, 750_000 * 0.03)
    assert market_rules(XRP, path=toml).margin_table.max_leverages == (25, 10)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"qty_stpe": 0.1}))
    with pytest.raises(DataError, match="unknown key.*qty_stpe"):
        read_rules_file(bad, XRP)


def test_a_market_without_rules_runs_on_flagged_defaults():
    rules = load_rules("binanceusdm", "DOGE/USDT:USDT")
    assert rules.is_default and rules.min_notional == 5.0 and rules.tiers[0].max_leverage == 50


def _rules(min_notional=5.0, min_qty=0.0):
    return trading_rules(MarketRules("binanceusdm", XRP, min_qty=min_qty, min_notional=min_notional,
                                     tiers=(LeverageTier(0, float("inf"), 20, 0.025),)))


def test_orders_below_the_minimum_notional_are_refused_and_closes_are_not():
    # 9 XRP at 0.5 = 4.5 USDT < 5: refused at bar 1 and again at bar 2; 20 XRP (10 USDT) fills; reducing by 12
    # (6 USDT) and closing the last 8 (4 USDT: a close is exempt) go through
    market = make_market([FLAT] * 6, symbol=XRP)
    config, rules = BrokerConfig(cash=1_000.0, slippage="none"), _rules()
    sizes = [9, 9, 20, 8, 0, 0]
    run = run_cerebro(market, config, sizes=sizes, rules=rules)
    ref = run_reference(feed_arrays(market), np.asarray(sizes, float), config, rules=rules)
    reasons = [r[3] for r in run.rejected]
    assert reasons == [r["reason"] for r in ref.rejected] and len(reasons) == 2
    assert all("below the market's minimum 5 USDT" in r for r in reasons)
    assert list(run.fills["size"]) == [f["size"] for f in ref.fills] == [20, -12, -8]
    np.testing.assert_allclose(run.equity, ref.equity, rtol=1e-12)


def _crash_file(tmp_path):
    idx = pd.date_range("2021-01-01", periods=48, freq="1h", tz="UTC")
    close = np.r_[np.full(24, 1.0), np.full(24, 0.9)]      # a 10 % drop: a 50x long is liquidated
    opens = np.r_[1.0, close[:-1]]
    df = pd.DataFrame({"timestamp": idx.as_unit("ms").asi8, "open": opens, "high": np.maximum(opens, close),
                       "low": np.minimum(opens, close) * 0.999, "close": close, "volume": 1e6})
    path = tmp_path / "crash.csv"
    df.to_csv(path, index=False)
    return path


def test_a_run_that_can_no_longer_open_the_minimum_position_stops_and_says_so(tmp_path):
    rules = tmp_path / "rules.json"   # 50x allowed; the minimum order (10,000 USDT) needs 200 + 5 of cash at 50x
    rules.write_text(json.dumps({"min_notional": 10_000, "tiers": [
        {"floor": 0, "cap": None, "max_leverage": 50, "maintenance_rate": 0.005}]}))
    config = BacktestConfig(strategy="buy_hold", data=DataConfig(
        symbol="ABC/USDT:USDT", timeframe="1h", start="2021-01-01", end="2021-01-02", path=str(_crash_file(tmp_path)),
        market_rules=str(rules)), broker=BrokerConfig(leverage=50))
    result = run_backtest(config)
    assert list(result.fills["kind"]) == ["market", "liquidation"]
    wiped = pd.Timestamp(result.data_span["wiped_out_at"])
    assert wiped == result.fills["time"].iloc[-1] and result.position.iloc[-1] == 0
    assert any(n.startswith(f"account wiped out at {wiped:%Y-%m-%d %H:%M}") for n in result.data_span["notices"])
    assert result_metrics(result)["Wiped out at"] == wiped.isoformat()
