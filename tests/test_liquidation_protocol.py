"""Liquidation per Binance's published protocol (the default ``liquidation_model="binance"``), by hand numbers.

Sources: Binance "Liquidation Protocols" (https://www.binance.com/en/support/faq/360033525271): liquidation when the
margin balance at the mark price falls below the maintenance margin; a position still margin-compliant after the
liquidation ("insurance clearance") fee keeps the rest, a margin-deficient one is closed at the bankruptcy price
and its remaining collateral goes to the insurance fund. Maintenance margin = notional x rate - maintenance amount
(Binance's ``cum``), so the isolated liquidation price of a long of Q at entry E with margin W is
``(Q x E - W - cum) / (Q x (1 - rate))``. Both accountants are checked.
"""

from __future__ import annotations

import numpy as np
import pytest
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE, liquidation_price, trading_rules
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays
from data_feeds.market_rules import LeverageTier, MarketRules

BASE = dict(cash=10_000.0, taker_fee=0.0005, slippage="none", liquidation_fee=0.0125)


def _both(bars, sizes, config, rules, mark=None, symbol="BTC/USDT:USDT"):
    market = make_market(bars, mark=mark, symbol=symbol)
    bt_run = run_cerebro(market, config, sizes=sizes, rules=rules)
    ref = run_reference(feed_arrays(market), np.asarray(sizes, float), config, rules=rules)
    return bt_run, ref


def test_liquidation_price_uses_the_tiers_maintenance_amount():
    # 20 BTC long at 60,000 with 10x: notional 1.2M is tier 4 (2.5 %, cum 16,300), margin 120,000
    price = liquidation_price(20.0, 60_000.0, 120_000.0, BTC_TABLE)
    assert price == pytest.approx((1_200_000 - 120_000 - 16_300) / (20 * 0.975), rel=1e-12)   # 54,548.72


def test_a_tier_change_mid_position_moves_the_liquidation_price_and_a_deficient_position_closes_at_bankruptcy():
    # long 0.5 BTC at 60,000 with 20x (30,000: tier 1, 0.4 %): liquidation at (30,000 - 1,500) / (0.5 x 0.996)
    # = 57,228.9, so a mark low of 57,240 leaves it alone. Adding 1 BTC at 60,000 makes 90,000 (tier 2: 0.5 %,
    # cum 50) with margin 4,500: liquidation at (90,000 - 4,500 - 50) / (1.5 x 0.995) = 57,252.9, and the same
    # 57,240 wick liquidates it. There its margin left, its maintenance margin 1.5 x 57,252.9 x 0.5 % - 50 = 379.4,
    # is below the 1.25 % clearance fee (1,073.5): margin-deficient, closed at the bankruptcy price
    # 60,000 - 4,500 / 1.5 = 57,000, losing the 4,500 margin and no more.
    flat, wick = (60_000.0,) * 4, (60_000.0, 60_000.0, 57_240.0, 59_000.0)
    rules = trading_rules(MarketRules("binanceusdm", "BTC/USDT:USDT", tiers=(
        LeverageTier(0, 50_000, 125, 0.004), LeverageTier(50_000, 250_000, 100, 0.005, 50.0))))
    config = BrokerConfig(**BASE, leverage=20)
    assert liquidation_price(0.5, 60_000.0, 1_500.0, rules.margin_table) == pytest.approx(28_500 / 0.498)
    assert liquidation_price(1.5, 60_000.0, 4_500.0, rules.margin_table) == pytest.approx(85_450 / 1.4925)
    small_run, small_ref = _both([flat, flat, wick, flat], [0.5, 0.5, 0.5, 0.5], config, rules)
    assert "liquidation" not in small_run.fills["kind"].tolist() and not any(
        f["kind"] == "liquidation" for f in small_ref.fills)
    run, ref = _both([flat, flat, flat, wick, flat], [0.5, 1.5, 1.5, 0, 0], config, rules)
    want = [(0.5, 60_000.0, 15.0, "market"), (1.0, 60_000.0, 30.0, "market"), (-1.5, 57_000.0, 0.0, "liquidation")]
    for fills in (list(run.fills[["size", "price", "fee", "kind"]].itertuples(index=False)),
                  [(f["size"], f["price"], f["fee"], f["kind"]) for f in ref.fills]):
        assert [f[3] for f in fills] == [w[3] for w in want]
        assert [f[:3] for f in fills] == [pytest.approx(w[:3], rel=1e-12) for w in want]
    assert run.equity[3] == pytest.approx(10_000 - 45 - 4_500, rel=1e-12)
    np.testing.assert_allclose(run.equity, ref.equity, rtol=1e-12)


def test_a_margin_compliant_position_pays_the_clearance_fee_and_keeps_the_rest():
    # a 5 % maintenance tier (above the 1.25 % fee): long 10,000 at 1.0 with 10x (margin 1,000) is liquidated at
    # (10,000 - 1,000) / (10,000 x 0.95) = 0.947368; there 5 % x 9,473.68 = 473.68 is left, the fee is
    # 1.25 % x 9,473.68 = 118.42 and the trader keeps 355.26
    rules = trading_rules(MarketRules("binanceusdm", "ABC/USDT:USDT", tiers=(LeverageTier(0, 1e9, 10, 0.05),)))
    liq = 9_000 / 9_500
    flat = (1.0,) * 4
    run, ref = _both([flat, flat, (1.0, 1.0, 0.94, 0.95), (0.95,) * 4], [10_000, 10_000, 0, 0],
                     BrokerConfig(**BASE, leverage=10), rules, symbol="ABC/USDT:USDT")
    for fill in (run.fills.iloc[-1].to_dict(), ref.fills[-1]):
        assert (fill["kind"], fill["price"], fill["fee"]) == ("liquidation", pytest.approx(liq, rel=1e-12),
                                                              pytest.approx(0.0125 * 10_000 * liq, rel=1e-12))
    kept = 0.05 * 10_000 * liq - 0.0125 * 10_000 * liq
    assert run.equity[-1] == pytest.approx(10_000 - 5 - 1_000 + kept, rel=1e-12)
    assert ref.equity[-1] == pytest.approx(run.equity[-1], rel=1e-12)


def test_a_gap_past_the_bankruptcy_price_loses_the_margin_and_the_flat_model_books_the_same_loss():
    # long 100 at 100 with 20x (margin 500) on BTC tiers; the bar opens at 94, past the bankruptcy price 95
    bars = [(100.0,) * 4, (100.0,) * 4, (94.0, 95.0, 93.0, 94.5), (94.5,) * 4]
    rules = trading_rules(MarketRules("binanceusdm", "BTC/USDT:USDT", tiers=(LeverageTier(0, 50_000, 125, 0.004),)))
    for model in ("binance", "flat"):
        run, ref = _both(bars, [100, 100, 0, 0], BrokerConfig(**BASE, leverage=20, liquidation_model=model), rules)
        assert (run.fills["price"].iloc[-1], run.fills["fee"].iloc[-1]) == (95.0, 0.0)
        assert run.equity[-1] == ref.equity[-1] == pytest.approx(10_000 - 5 - 500, rel=1e-12)
