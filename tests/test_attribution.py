"""PnL attribution: each term worked out by hand, and the terms summing to the change in equity on real data."""

from __future__ import annotations

import pytest
from replay import run_cerebro

from backtests.attribution import ATTRIBUTION_TERMS, Attribution, attribute_pnl
from backtests.broker import BrokerConfig
from data_feeds import load_market
from strategies.baselines import SmaCross


def _fill(size, price, fee=0.0, slippage=0.0, liquidity="taker"):
    return {"size": size, "price": price, "fee": fee, "slippage": slippage, "liquidity": liquidity}


def test_round_trip_splits_into_price_slippage_and_fees():
    # buy 1 at 100 (open 99.9), sell 1 at 109.9 (open 110), taker fee 0.05 each
    fills = [_fill(1, 100.0, 0.05, 0.1), _fill(-1, 109.9, 0.05, 0.1)]
    got = attribute_pnl(fills, funding_paid=0.0, final_size=0.0, final_price=109.0)
    assert got.price == pytest.approx(10.1)
    assert got.slippage == pytest.approx(-0.2)
    assert got.fees_taker == pytest.approx(-0.1)
    assert got.total == pytest.approx(109.9 - 100 - 0.1)


def test_open_position_is_valued_at_the_last_price_and_funding_paid_is_a_cost():
    got = attribute_pnl([_fill(-2, 100.0)], funding_paid=0.3, final_size=-2.0, final_price=97.0)
    assert (got.price, got.funding) == (pytest.approx(6.0), -0.3)


def test_liquidation_takes_the_loss_from_the_average_entry_and_the_fee():
    # long 1 at 100 plus 1 at 110 (average 105), liquidated at 95 with a fee of 0.8: -20 - 0.8; price keeps 0
    fills = [_fill(1, 100.0), _fill(1, 110.0), _fill(-2, 95.0, 0.8, liquidity="liquidation")]
    got = attribute_pnl(fills, funding_paid=0.0, final_size=0.0, final_price=96.0)
    assert got.liquidation == pytest.approx(-20.8)
    assert got.price == pytest.approx(0.0, abs=1e-12)
    assert got.total == pytest.approx(-20.8)


def test_a_reduced_position_keeps_its_entry_for_the_liquidation():
    # long 3 at 100, sell 1 at 120 (+20 price), the remaining 2 liquidated at 90 (-20)
    fills = [_fill(3, 100.0), _fill(-1, 120.0), _fill(-2, 90.0, liquidity="liquidation")]
    got = attribute_pnl(fills, funding_paid=0.0, final_size=0.0, final_price=90.0)
    assert (got.price, got.liquidation) == (pytest.approx(20.0), pytest.approx(-20.0))


def test_liquidity_is_inferred_from_the_fill_kind_when_not_given():
    fills = [{"size": 1, "price": 100.0, "fee": 0.02, "slippage": 0.0, "kind": "limit"},
             {"size": -1, "price": 100.0, "fee": 0.05, "slippage": 0.0, "kind": "market"}]
    got = attribute_pnl(fills, funding_paid=0.0, final_size=0.0, final_price=100.0)
    assert (got.fees_maker, got.fees_taker) == (-0.02, -0.05)


def test_as_dict_lists_every_term_and_their_total():
    out = Attribution(price=3.0, fees_taker=-1.0, funding=0.5).as_dict()
    assert list(out) == [*ATTRIBUTION_TERMS, "total"]
    assert out["total"] == 2.5


def test_terms_sum_to_the_change_in_equity_on_real_data_with_liquidations():
    market = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-07-01", "2024-08-31")
    config = BrokerConfig(leverage=25)
    run = run_cerebro(market, config, SmaCross, symbol="BTC/USDT:USDT", leverage=25, fraction=0.5,
                      qty_step=0.001, min_qty=0.001)
    got = run.attribution
    assert (run.fills["kind"] == "liquidation").sum() > 0 and got.liquidation < 0
    assert got.fees_taker < 0 and got.slippage < 0 and got.funding != 0
    assert got.total == pytest.approx(run.equity[-1] - config.cash, rel=1e-9, abs=1e-9 * config.cash)
