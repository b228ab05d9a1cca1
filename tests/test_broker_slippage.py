"""Slippage models: the pure fill-price function and what the broker records for each fill."""

from __future__ import annotations

import pytest
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE, TradingRules
from backtests.slippage import check_model, fill_price

BAR = dict(open_=100.0, high=102.0, low=98.0, volume=50.0)  # range 4


@pytest.mark.parametrize("model, size, kwargs, expected", [
    ("none", 1.0, {}, 100.0),
    ("fixed", 1.0, dict(bps=10), 100.0 * 1.001),
    ("fixed", -1.0, dict(bps=10), 100.0 * 0.999),
    ("range", 1.0, dict(coef=0.25), 101.0),            # 0.25 x range 4
    ("range", -1.0, dict(coef=0.25), 99.0),
    ("volume", 5.0, dict(coef=1.0), 100.4),           # 1 x 4 x 5 / 50
    ("volume", -5.0, dict(coef=1.0), 99.6),
    ("volume", 500.0, dict(coef=0.25), 101.0),        # participation capped at 1
])
def test_fill_price_moves_against_the_order(model, size, kwargs, expected):
    assert fill_price(model, size, **BAR, **kwargs) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("model, kwargs", [("fixed", dict(bps=500)), ("range", dict(coef=0.9))])
def test_fill_price_never_leaves_the_bar(model, kwargs):
    assert fill_price(model, 1.0, **BAR, **kwargs) == 102.0
    assert fill_price(model, -1.0, **BAR, **kwargs) == 98.0


def test_volume_model_on_a_bar_without_volume_takes_the_whole_share():
    assert fill_price("volume", 1.0, 100.0, 102.0, 98.0, 0.0, coef=0.5) == 102.0


def test_unknown_model_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="none, fixed, range, volume"):
        check_model("sqrt")
    with pytest.raises(ValueError, match="unknown slippage model"):
        fill_price("sqrt", 1.0, **BAR)


@pytest.mark.parametrize("config, price", [
    (BrokerConfig(slippage="none"), 100.0),
    (BrokerConfig(slippage="fixed", slippage_bps=5), 100.05),
    (BrokerConfig(slippage="range", slippage_coef=0.1), 100.4),
    (BrokerConfig(slippage="volume", slippage_coef=1.0), 100.08),   # 4 x 1 / 50
])
def test_broker_fills_market_orders_at_the_models_price_and_records_the_cost(config, price):
    market = make_market([(100.0,) * 4, (100.0, 102.0, 98.0, 101.0), (101.0,) * 4], volume=50.0)
    run = run_cerebro(market, config, sizes=[1, 1, 1], rules=TradingRules(margin_table=BTC_TABLE))  # no tick
    (fill,) = run.fills.itertuples()
    assert fill.price == pytest.approx(price, rel=1e-12)
    assert fill.slippage == pytest.approx(price - 100.0, abs=1e-12)
    assert fill.reference_price == 100.0
    assert run.attribution.slippage == pytest.approx(-(price - 100.0), abs=1e-12)
