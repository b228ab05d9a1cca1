"""Maintenance-margin tiers, liquidation price and fee, market rules, and the broker config's checks."""

from __future__ import annotations

import math

import pytest

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE, DEFAULT_TABLE, ETH_TABLE, MarginTable, is_liquidated, leverage_allowed, \
    liquidation_fee, liquidation_price, margin_balance, market_rules, max_leverage


@pytest.mark.parametrize("notional, expected", [
    (40_000, 160.0),                        # tier 1: 0.4 %
    (100_000, 450.0),                       # tier 2: 0.5 % - 50
    (2_000_000, 2_000_000 * 0.025 - 16_300),  # tier 4: amount 50 + 250,000 x 0.5 % + 1,000,000 x 1.5 %
    (-40_000, 160.0),                       # a short's notional counts by size
])
def test_btc_maintenance_margin_by_tier(notional, expected):
    assert BTC_TABLE.maintenance(notional) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("table", [BTC_TABLE, ETH_TABLE, DEFAULT_TABLE], ids=["btc", "eth", "default"])
def test_maintenance_margin_is_continuous_across_tier_floors(table):
    for floor in table.floors[1:]:
        below, above = table.maintenance(floor * (1 - 1e-12)), table.maintenance(floor)
        assert above == pytest.approx(below, rel=1e-9)


def test_tables_refuse_malformed_tiers():
    with pytest.raises(ValueError, match="start at 0"):
        MarginTable(floors=(10, 100), rates=(0.01, 0.02))
    with pytest.raises(ValueError, match="increase"):
        MarginTable(floors=(0, 100, 100), rates=(0.01, 0.02, 0.03))
    with pytest.raises(ValueError, match="not decrease"):
        MarginTable(floors=(0, 100), rates=(0.02, 0.01))


@pytest.mark.parametrize("size, entry, leverage, expected", [
    (1.0, 100.0, 20, 95 / 0.996),             # long: (100 - 5) / (1 - 0.004)
    (-1.0, 100.0, 20, 105 / 1.004),           # short: (100 + 5) / (1 + 0.004)
    (1000.0, 100.0, 20, 94_950 / 995),        # long of 100,000 notional: tier 2
    (-2.0, 30_000.0, 125, (60_000 + 480 + 50) / 2.01),  # short of 60,000 notional: tier 2
])
def test_liquidation_price_leaves_exactly_the_maintenance_margin(size, entry, leverage, expected):
    margin = abs(size) * entry / leverage
    price = liquidation_price(size, entry, margin, BTC_TABLE)
    assert price == pytest.approx(expected, rel=1e-12)
    assert margin_balance(size, entry, margin, price) == pytest.approx(BTC_TABLE.maintenance(size * price),
                                                                       rel=1e-9)


def test_liquidation_price_crosses_tiers_when_the_position_is_large():
    # 10 BTC at 60,000 with leverage 10: notional 600,000 (tier 3, 1 %); the root stays in tier 3
    size, entry = 10.0, 60_000.0
    margin = size * entry / 10
    price = liquidation_price(size, entry, margin, BTC_TABLE)
    assert BTC_TABLE.tier(size * price) == 2
    assert margin_balance(size, entry, margin, price) == pytest.approx(BTC_TABLE.maintenance(size * price))


def test_an_unlevered_long_has_no_liquidation_price_above_zero():
    assert math.isnan(liquidation_price(1.0, 100.0, 100.0, BTC_TABLE))
    assert not is_liquidated(1.0, 100.0, 100.0, 1e-6, BTC_TABLE)


@pytest.mark.parametrize("size, price, liquidated", [
    (1.0, 95.39, False), (1.0, 95.37, True),        # long at 20x: liquidation price 95.3815
    (-1.0, 104.57, False), (-1.0, 104.59, True),    # short at 20x: liquidation price 104.5817
    (0.0, 1.0, False),
])
def test_is_liquidated_when_balance_at_the_price_is_below_maintenance(size, price, liquidated):
    assert is_liquidated(size, 100.0, 5.0 * abs(size), price, BTC_TABLE) is liquidated


def test_liquidation_fee_is_capped_at_the_remaining_maintenance_margin():
    price = 95 / 0.996
    assert liquidation_fee(1.0, price, 0.0125, BTC_TABLE) == pytest.approx(0.004 * price, rel=1e-12)
    assert liquidation_fee(1.0, price, 0.001, BTC_TABLE) == pytest.approx(0.001 * price, rel=1e-12)


@pytest.mark.parametrize("notional, expected", [(10_000, 125), (100_000, 100), (500_000, 50), (5e6, 20),
                                                (4e8, 1)])
def test_max_leverage_is_the_tiers_published_max_leverage(notional, expected):
    assert max_leverage(notional, BTC_TABLE) == pytest.approx(expected)
    assert leverage_allowed(notional, expected, BTC_TABLE)
    assert not leverage_allowed(notional, expected * 1.01, BTC_TABLE)


def test_shipped_markets_carry_binance_rules_and_others_flagged_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMBT_DATA_DIR", str(tmp_path))  # an empty store: the shipped snapshot answers
    for symbol, table, notional in (("BTC/USDT:USDT", BTC_TABLE, 100.0), ("ETH/USDT:USDT", ETH_TABLE, 20.0)):
        rules = market_rules(symbol)
        assert (rules.qty_step, rules.min_qty, rules.min_notional, rules.liquidation_fee) == (0.001, 0.001, notional,
                                                                                              0.0125)
        assert rules.margin_table == table and not rules.rules.is_default and rules.rules.fetched
    unknown = market_rules("DOGE/USDT:USDT")
    assert (unknown.qty_step, unknown.min_qty, unknown.min_notional, unknown.margin_table) == (0.0, 0.0, 5.0,
                                                                                               DEFAULT_TABLE)
    assert unknown.rules.is_default and "conservative defaults" in unknown.rules.source


@pytest.mark.parametrize("field, value, message", [
    ("leverage", 0.5, "leverage"), ("leverage", 126, "leverage"), ("taker_fee", 1.5, "taker_fee"),
    ("slippage", "random", "slippage model"), ("liquidation_fee", -0.1, "liquidation_fee"),
    ("slippage_coef", 200.0, "slippage_coef"),
])
def test_broker_config_refuses_values_out_of_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        BrokerConfig(**{field: value})


def test_broker_config_defaults_are_binance_base_tier():
    config = BrokerConfig()
    assert (config.taker_fee, config.maker_fee, config.leverage, config.slippage) == (0.0005, 0.0002, 1.0, "fixed")


def test_liquidation_exit_at_the_liquidation_price_without_a_gap():
    from backtests.margin import liquidation_exit

    # long 1 at 100 with margin 5, the bar opens at 99: (100 - 5) / (1 - 0.004) = 95.3815, fee = maintenance
    price, fee = liquidation_exit(1, 100.0, 5.0, 99.0, BTC_TABLE, 0.0125)
    assert price == pytest.approx(95 / 0.996, rel=1e-12)
    assert fee == pytest.approx(0.004 * price, rel=1e-12)


def test_liquidation_exit_after_a_gap_is_the_open_capped_at_the_bankruptcy_price():
    from backtests.margin import liquidation_exit

    assert liquidation_exit(1, 100.0, 5.0, 95.2, BTC_TABLE, 0.0125) == pytest.approx((95.2, 0.2))
    assert liquidation_exit(1, 100.0, 5.0, 94.0, BTC_TABLE, 0.0125) == pytest.approx((95.0, 0.0))
    assert liquidation_exit(-1, 100.0, 5.0, 106.0, BTC_TABLE, 0.0125) == pytest.approx((105.0, 0.0))


@pytest.mark.parametrize("held,before,after,kept", [
    (20.0, 2.0, 3.0, 20.0),    # grows: all of it stays
    (20.0, 2.0, 1.0, 10.0),    # half closed: half stays
    (20.0, 2.0, 0.0, 0.0),     # closed
    (20.0, 2.0, -1.0, 0.0),    # flipped: the new short starts with fresh margin
    (-6.0, -3.0, -1.0, -2.0),  # received funding shrinks with the position too
])
def test_funding_kept_follows_the_position(held, before, after, kept):
    from backtests.margin import funding_kept

    assert funding_kept(held, before, after) == pytest.approx(kept)
