"""Liquidation per Binance's published protocol (the default ``liquidation_model="binance"``), by hand numbers.

Sources: Binance "Liquidation Protocols" (https://www.binance.com/en/support/faq/360033525271): liquidation when the
margin balance at the mark price falls below the maintenance margin; a position still margin-compliant after the
liquidation ("insurance clearance") fee keeps the rest, a margin-deficient one is closed at the bankruptcy price
and its remaining collateral goes to the insurance fund. Maintenance margin = notional x rate - maintenance amount
(Binance's ``cum``), so the isolated liquidation price of a long of Q at entry E with margin W is
``(Q x E - W - cum) / (Q x (1 - rate))``. Both accountants are checked.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE, liquidation_price, liquidation_steps, market_rules, trading_rules
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


# Partial liquidation of a large position. Binance: the engine "attempt[s] to reduce the user's margin limit with one
# large Immediate or Cancel order without fully liquidating the user"; the fee is charged "on the amount liquidated
# only"; "if the user is margin compliant after calculating the realized losses and liquidation fee deductions, the
# liquidation will stop", else the position closes at the bankruptcy price (FAQ 360033525271; Binance's TraderWagon
# docs, liquidation-protocol). lstmbt's stated assumption: the IOC order brings the position one tier down, to the
# largest size on the quantity step whose notional is at most the tier's floor (backtests.margin.liquidation_steps).
# Hand numbers on the shipped BTCUSDT snapshot (tick 0.1, step 0.001, 1.25 % fee): long 20 BTC at 60,000 with 10x,
# notional 1.2M in tier 4 (2.5 %, cum 16,300), margin 120,000.
BIG = dict(BASE, cash=200_000.0, leverage=10)
P1 = math.floor((1_200_000 - 120_000 - 16_300) / (20 * 0.975) * 10) / 10   # 54,548.7: the liquidation price, on
KEEP = 18.332                                                     # the tick below; 1,000,000 / 54,548.7 = 18.3322
FEE1 = 0.0125 * (20 - KEEP) * P1                                   # 1,137.34, on the 1.668 BTC liquidated only
LEFT = 120_000 + (20 - KEEP) * (P1 - 60_000) - FEE1                # 109,769.9: the loss and fee come out of the margin


def test_a_large_position_is_partly_liquidated_one_tier_down_and_keeps_the_rest():
    flat = (60_000.0,) * 4
    run, ref = _both([flat, flat, (60_000.0, 60_000.0, 54_500.0, 55_000.0), (55_000.0,) * 4],
                     [20, 20, KEEP, KEEP], BrokerConfig(**BIG), market_rules("BTC/USDT:USDT"))
    # the rest: 999,987 USDT in tier 3 (1 %, cum 1,300): maintenance 8,699.9, far below the 109,769.9 margin left
    assert LEFT + KEEP * (P1 - 60_000) >= KEEP * P1 * 0.01 - 1_300
    want = [(20.0, 60_000.0, 600.0, "market"), (-(20 - KEEP), P1, FEE1, "liquidation")]
    for fills in (list(run.fills[["size", "price", "fee", "kind"]].itertuples(index=False)),
                  [(f["size"], f["price"], f["fee"], f["kind"]) for f in ref.fills]):
        assert [f[3] for f in fills] == [w[3] for w in want]
        assert [f[:3] for f in fills] == [pytest.approx(w[:3], rel=1e-12) for w in want]
    after = 200_000 - 600 + (20 - KEEP) * (P1 - 60_000) - FEE1
    assert run.equity[2] == pytest.approx(after + KEEP * (55_000 - 60_000), rel=1e-12)
    assert run.position[-1] == pytest.approx(KEEP)
    np.testing.assert_allclose(run.equity, ref.equity, rtol=1e-12)


def test_a_rest_that_breaches_again_in_the_same_bar_is_margin_deficient_and_closes_at_its_bankruptcy_price():
    # the same wick down to 54,000: after the partial close the rest's own liquidation price, (18.332 x 60,000 -
    # 109,769.9 - 1,300) / (18.332 x 0.99) = 54,486.1, is breached too. Tier 3's 1 % is below the 1.25 % fee, so
    # the rest is margin-deficient: closed at its bankruptcy price 60,000 - 109,769.9 / 18.332 with no fee. The
    # two liquidations together lose exactly the 120,000 isolated margin.
    flat = (60_000.0,) * 4
    run, ref = _both([flat, flat, (60_000.0, 60_000.0, 54_000.0, 54_500.0), (54_500.0,) * 4],
                     [20, 20, 0, 0], BrokerConfig(**BIG), market_rules("BTC/USDT:USDT"))
    assert liquidation_price(KEEP, 60_000.0, LEFT, BTC_TABLE) == pytest.approx(
        (KEEP * 60_000 - LEFT - 1_300) / (KEEP * 0.99), rel=1e-12)
    want = [(20.0, 60_000.0, 600.0), (-(20 - KEEP), P1, FEE1), (-KEEP, 60_000 - LEFT / KEEP, 0.0)]
    for fills in (list(run.fills[["size", "price", "fee"]].itertuples(index=False)),
                  [(f["size"], f["price"], f["fee"]) for f in ref.fills]):
        assert [tuple(f) for f in fills] == [pytest.approx(w, rel=1e-12) for w in want]
    assert run.equity[-1] == pytest.approx(200_000 - 600 - 120_000, rel=1e-12)
    np.testing.assert_allclose(run.equity, ref.equity, rtol=1e-12)


def test_partial_liquidation_steps_follow_the_documented_formulas():
    # a tier whose maintenance rate is below the fee cannot be left compliant: BTC tier 2 (0.5 %) -> bankruptcy
    steps = liquidation_steps(1.5, 60_000.0, 4_500.0, 60_000.0, 57_240.0, BTC_TABLE, 0.0125, "binance")
    assert steps == [(-1.5, 57_000.0, 0.0, 0.0, False)]
    # the flat model never goes in steps
    (step,) = liquidation_steps(20, 60_000.0, 120_000.0, 60_000.0, 54_500.0, BTC_TABLE, 0.0125, "flat", 0.1, 0.001)
    assert step.size == -20 and not step.partial
