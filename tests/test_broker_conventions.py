"""Backtrader's conventions that silently change the accounting, each pinned by its own test."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig, FuturesCommInfo, make_broker
from backtests.margin import BTC_TABLE, TradingRules

FLAT = (100.0, 100.0, 100.0, 100.0)
NO_COSTS = dict(taker_fee=0.0, maker_fee=0.0, slippage="none")


def test_fractional_sizes_are_not_truncated_to_integers():
    # 0.123 x 100 = 12.3 USDT: above the default 5 USDT minimum order value of a market without rules
    market = make_market([FLAT, FLAT, FLAT], symbol="XRP/USDT:USDT")
    run = run_cerebro(market, BrokerConfig(**NO_COSTS), sizes=[0.123, 0.123, 0.123])
    assert run.fills["size"].tolist() == [0.123]
    assert run.position[-1] == 0.123


def test_commission_is_a_fraction_of_notional_not_a_percent():
    # 2 BTC at 50,000 with taker_fee=0.0005: 0.05 % of 100,000 = 50 USDT (read as a percent it would be 0.5)
    bar = (50_000.0,) * 4
    run = run_cerebro(make_market([bar, bar, bar]), BrokerConfig(cash=200_000, slippage="none"), sizes=[2, 2, 2])
    assert run.fills["fee"].tolist() == [50.0]
    assert run.equity[-1] == 200_000 - 50.0


def test_leverage_is_applied_once_a_one_percent_move_is_five_percent_of_the_margin():
    # leverage 5: 4 contracts at 10,000 reserve 40,000 / 5 = 8,000 (not 40,000 / 25); +1 % adds 400 = 5 % of 8,000
    bars = [(10_000.0,) * 4, (10_000.0,) * 4, (10_000.0, 10_100.0, 10_000.0, 10_100.0)]
    run = run_cerebro(make_market(bars), BrokerConfig(leverage=5, **NO_COSTS), sizes=[4, 4, 4])
    assert run.broker.getcommissioninfo(run.strategy.data).get_leverage() == 1.0
    assert run.equity[2] - run.equity[1] == pytest.approx(0.05 * 8_000, rel=1e-12)
    assert run.broker.getcash() == pytest.approx(10_000 - 8_000 + 400, rel=1e-12)  # free cash, after margin
    assert run.broker.getvalue() == pytest.approx(10_400, rel=1e-12)


def test_open_positions_are_valued_at_entry_so_equity_is_cash_plus_unrealised_pnl():
    # no phantom "size x (close - entry) / leverage": long 3 at 100, leverage 2, closes 104 then 97
    bars = [FLAT, FLAT, (100, 104, 100, 104), (104, 104, 97, 97)]
    run = run_cerebro(make_market(bars), BrokerConfig(leverage=2, **NO_COSTS), sizes=[3, 3, 3, 3])
    assert list(run.equity) == pytest.approx([10_000, 10_000, 10_012, 9_991], rel=1e-12)


def test_funding_is_charged_at_the_open_before_that_opens_fills():
    # the long held into bar 2 pays the settlement at bar 2's open; the short opened at that open does not
    bars = [FLAT, FLAT, FLAT, FLAT]
    run = run_cerebro(make_market(bars, funding={2: 0.001}), BrokerConfig(**NO_COSTS), sizes=[1, -1, -1, -1])
    assert run.funding == [pytest.approx(0.1)]  # 1 x 100 x 0.001, paid by the long
    assert run.equity[-1] == pytest.approx(10_000 - 0.1, rel=1e-12)


def test_an_affordable_flip_is_not_refused_at_submission():
    # Backtrader's submission check prices the margin a close releases at the order's creation price (50) instead
    # of the entry price (100), and would refuse this flip: long 9 at 100 with 1,000 cash, price halves (equity
    # 550), flip to short 9 at 50, which needs only 450 of margin. The broker checks at execution instead.
    bars = [FLAT, FLAT, (50.0,) * 4, (50.0,) * 4]
    run = run_cerebro(make_market(bars), BrokerConfig(cash=1_000, **NO_COSTS), sizes=[9, 9, -9, -9])
    assert run.fills["size"].tolist() == [9, -18]
    assert run.rejected == []
    assert run.equity[-1] == pytest.approx(550.0, rel=1e-12)


def test_market_orders_pay_taker_and_never_the_maker_rate():
    run = run_cerebro(make_market([FLAT, FLAT, FLAT]), BrokerConfig(slippage="none", taker_fee=0.0005,
                                                                   maker_fee=0.0001), sizes=[1, 1, 1])
    assert run.fills["fee"].tolist() == [pytest.approx(0.05)]
    assert run.fills["liquidity"].tolist() == ["taker"]


def test_default_broker_reproduces_backtraders_stock_broker_on_runs_without_liquidation():
    # the previous broker: stock BackBroker with 1 bp percentage slippage capped at the bar's high/low
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    opens = np.r_[100, close[:-1]] * (1 + rng.normal(0, 0.0005, 60))
    bars = np.c_[opens, np.maximum(opens, close) * 1.002, np.minimum(opens, close) * 0.998, close]
    market = make_market(bars, funding={i: 1e-4 for i in range(0, 60, 8)})
    sizes = np.round(rng.choice([-1, 0, 1], 60) * rng.uniform(10, 60, 60), 3)
    config = BrokerConfig(leverage=2)
    stock = bt.brokers.BackBroker(int2pnl=False, shortcash=False, checksubmit=False)
    stock.set_slippage_perc(config.slippage_bps / 10_000, slip_open=True, slip_limit=True, slip_match=True,
                            slip_out=False)
    tickless = TradingRules(margin_table=BTC_TABLE)     # these random prices are off any tick grid
    ours = run_cerebro(market, config, sizes=list(sizes), rules=tickless)
    theirs = run_cerebro(market, config, sizes=list(sizes), broker=stock)
    assert len(ours.fills) > 20
    assert ours.equity.tolist() == theirs.equity.tolist()


def test_comminfo_is_futures_like_with_percent_fees_as_fractions():
    _, comminfo = make_broker(BrokerConfig(leverage=4, taker_fee=0.0004))
    assert isinstance(comminfo, FuturesCommInfo)
    assert not comminfo.stocklike
    assert comminfo.get_margin(60_000.0) == 15_000.0  # notional / 4 per contract
    assert comminfo.getcommission(0.5, 60_000.0) == pytest.approx(12.0)  # 0.04 % of 30,000
