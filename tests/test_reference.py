"""The reference accountant's kernels, one behaviour at a time (state in, state out)."""

from __future__ import annotations

import numpy as np
import pytest

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE
from backtests.reference import Account, apply_fill, apply_funding, check_liquidation, equity, free_cash, \
    mark_to_market, position_margin, run_reference

CASH = 10_000.0


def _long(size=2.0, entry=100.0, wallet=CASH):
    return Account(wallet=wallet, size=size, entry=entry, mark=entry)


def test_opening_pays_the_fee_and_holds_initial_margin():
    acct, fill, status = apply_fill(Account(CASH), 4.0, 10_000.0, 10_000.0, 0.0005, leverage=5)
    assert status == "filled"
    assert fill.size == 4.0 and fill.fee == pytest.approx(20.0)
    assert position_margin(acct, 5) == pytest.approx(8_000.0)
    assert free_cash(acct, 5) == pytest.approx(1_980.0)
    assert equity(mark_to_market(acct, 10_100.0), 10_100.0) == pytest.approx(10_380.0)


def test_adding_to_a_position_averages_the_entry_price():
    acct, fill, _ = apply_fill(_long(), 2.0, 110.0, 110.0, 0.0, leverage=1)
    assert (acct.size, acct.entry) == (4.0, 105.0)
    assert fill.pnl == 0.0


def test_reducing_realises_pnl_and_keeps_the_entry_price():
    acct, fill, _ = apply_fill(_long(), -1.0, 110.0, 110.0, 0.001, leverage=1)
    assert (acct.size, acct.entry) == (1.0, 100.0)
    assert fill.pnl == 10.0
    assert acct.wallet == pytest.approx(CASH + 10.0 - 0.11)


def test_a_flip_closes_then_opens_in_one_fill():
    acct, fill, status = apply_fill(_long(), -3.0, 110.0, 110.0, 0.0005, leverage=1)
    assert status == "filled"
    assert (acct.size, acct.entry) == (-1.0, 110.0)
    assert fill.pnl == 20.0
    assert fill.fee == pytest.approx(0.11 + 0.055)


def test_an_unaffordable_order_is_a_status_not_an_exception_nor_a_smaller_order():
    start = Account(1_000.0)
    acct, fill, status = apply_fill(start, 20.0, 100.0, 100.0, 0.0005, leverage=1)
    assert (acct, fill, status) == (start, None, "margin")


def test_a_flip_whose_new_side_is_unaffordable_still_closes():
    acct, fill, status = apply_fill(_long(9.0, wallet=1_000.0), -24.0, 100.0, 100.0, 0.0005, leverage=1)
    assert status == "margin"
    assert fill.size == -9.0 and acct.size == 0.0
    assert acct.wallet == pytest.approx(1_000.0 - 0.45)


def test_a_position_above_its_tiers_leverage_limit_is_refused_whole():
    # BTC at 50x is allowed up to 1,000,000 USDT of notional: 9,000 at 100 is fine, 10,001 at 100 is not
    start = Account(1e6)
    _, fill, status = apply_fill(start, 9_000.0, 100.0, 100.0, 0.0, leverage=50, table=BTC_TABLE)
    assert status == "filled" and fill.size == 9_000.0
    flip = _long(9_000.0, wallet=1e6)
    assert apply_fill(flip, -19_001.0, 100.0, 100.0, 0.0, leverage=50, table=BTC_TABLE) == (flip, None, "leverage")


def test_affordability_counts_unrealised_pnl_at_the_last_mark():
    # long 5 at 100 marked at 120: free cash = 1,000 + 100 - 500 = 600, enough for 5 more at 120 (600 margin)
    acct = _long(5.0, wallet=1_000.0)._replace(mark=120.0)
    _, fill, status = apply_fill(acct, 5.0, 120.0, 120.0, 0.0, leverage=1)
    assert status == "filled" and fill.size == 5.0
    _, fill, status = apply_fill(acct._replace(mark=119.0), 5.0, 120.0, 120.0, 0.0, leverage=1)
    assert (fill, status) == (None, "margin")


def test_slippage_is_recorded_as_a_cost_against_the_reference():
    acct, fill, _ = apply_fill(Account(CASH), -2.0, 99.9, 100.0, 0.0, leverage=1)
    assert fill.slippage == pytest.approx(0.2)
    assert acct.slippage == pytest.approx(0.2)


@pytest.mark.parametrize("size, rate, paid", [(2.0, 0.0001, 0.02), (-2.0, 0.0001, -0.02), (2.0, -0.0001, -0.02),
                                              (0.0, 0.0001, 0.0)])
def test_funding_longs_pay_positive_rates_shorts_receive_them(size, rate, paid):
    acct, got = apply_funding(_long(size), rate, 100.0)
    assert got == pytest.approx(paid)
    assert acct.wallet == pytest.approx(CASH - paid)
    assert acct.funding == pytest.approx(paid)


def test_liquidation_closes_at_the_liquidation_price_and_loses_the_margin():
    acct = _long(1.0, 100.0)
    survived, fill = check_liquidation(acct, 95.5, 101.0, leverage=20, table=BTC_TABLE)
    assert (survived, fill) == (acct, None)
    gone, fill = check_liquidation(acct, 95.0, 101.0, leverage=20, table=BTC_TABLE)
    assert fill.price == pytest.approx(95 / 0.996) and fill.liquidity == "liquidation"
    assert gone.size == 0.0
    assert gone.wallet == pytest.approx(CASH - 5.0)  # the whole margin of 100 / 20


def test_a_short_is_liquidated_on_the_mark_high():
    acct = Account(CASH, size=-1.0, entry=100.0, mark=100.0)
    _, fill = check_liquidation(acct, 50.0, 104.0, leverage=20, table=BTC_TABLE)
    assert fill is None
    gone, fill = check_liquidation(acct, 50.0, 106.0, leverage=20, table=BTC_TABLE)
    assert fill.price == pytest.approx(105 / 1.004) and fill.size == 1.0
    assert gone.wallet == pytest.approx(CASH - 5.0)


def test_run_reference_follows_targets_with_next_open_fills():
    n = 4
    arrays = {k: np.full(n, 100.0) for k in ("open", "high", "low", "close", "mark_high", "mark_low", "mark_close")}
    arrays["close"] = np.array([100.0, 101.0, 102.0, 103.0])
    arrays.update(volume=np.ones(n), funding_rate=np.zeros(n))
    out = run_reference(arrays, np.array([1.0, 1.0, 0.0, 0.0]), BrokerConfig(slippage="none", taker_fee=0.0))
    assert [f["bar"] for f in out.fills] == [1, 3]
    assert out.position.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert out.equity.tolist() == pytest.approx([CASH, CASH + 1.0, CASH + 2.0, CASH])
    assert out.attribution.total == pytest.approx(out.equity[-1] - CASH)
