"""trades_from_fills: round trips, adds, partial closes and flips, written out by hand."""

import pandas as pd
import pytest

from backtests.trades import trades_from_fills

INDEX = pd.date_range("2024-01-01", periods=10, freq="1h", tz="UTC")


def fills(*rows):
    return pd.DataFrame([{"time": INDEX[i], "size": s, "price": p, "fee": f} for i, s, p, f in rows])


def no_funding():
    return pd.Series(0.0, index=INDEX)


def test_long_round_trip_nets_fees():
    t = trades_from_fills(fills((1, 1.0, 100.0, 0.05), (3, -1.0, 110.0, 0.055)), INDEX, no_funding(), 110.0)
    assert len(t) == 1
    row = t.iloc[0]
    assert (row.direction, row["size"], row.entry_price, row.exit_price, row.bars) == (1, 1.0, 100.0, 110.0, 2)
    assert row.price_pnl == pytest.approx(10.0) and row.pnl == pytest.approx(9.895)
    assert row.return_pct == pytest.approx(9.895) and row.status == "closed"


def test_flip_closes_one_trade_and_opens_the_next_splitting_the_fee():
    # long 1 @ 100, then sell 3 @ 90: closes the long (1/3 of the fee) and opens a short of 2
    t = trades_from_fills(fills((1, 1.0, 100.0, 0.0), (2, -3.0, 90.0, 0.3), (4, 2.0, 80.0, 0.2)),
                          INDEX, no_funding(), 80.0)
    assert list(t.direction) == [1, -1]
    assert t.price_pnl.tolist() == pytest.approx([-10.0, 20.0])
    assert t.fees.tolist() == pytest.approx([0.1, 0.4])
    assert t.exit_time.tolist() == [INDEX[2], INDEX[4]] and t.entry_time.tolist() == [INDEX[1], INDEX[2]]


def test_adding_averages_the_entry_and_partial_closes_realise_at_that_average():
    t = trades_from_fills(fills((0, 1.0, 100.0, 0.0), (1, 1.0, 110.0, 0.0), (2, -1.0, 120.0, 0.0),
                                (3, -1.0, 100.0, 0.0)), INDEX, no_funding(), 100.0)
    row = t.iloc[0]
    assert row.entry_price == pytest.approx(105.0) and row["size"] == 2.0
    assert row.price_pnl == pytest.approx((120 - 105) + (100 - 105))


def test_funding_is_charged_from_the_bar_after_entry_through_the_exit_bar():
    funding = pd.Series(0.0, index=INDEX)
    funding.iloc[[1, 2, 4, 5]] = [100.0, 1.0, 2.0, 100.0]  # bar 1 is the entry bar, bar 5 after the exit
    t = trades_from_fills(fills((1, 1.0, 100.0, 0.0), (4, -1.0, 100.0, 0.0)), INDEX, funding, 100.0)
    assert t.funding.iloc[0] == pytest.approx(3.0) and t.pnl.iloc[0] == pytest.approx(-3.0)


def test_position_open_at_the_end_is_valued_at_the_last_close():
    t = trades_from_fills(fills((1, -2.0, 100.0, 0.1)), INDEX, no_funding(), 95.0)
    row = t.iloc[0]
    assert row.status == "open" and row.exit_time == INDEX[-1]
    assert row.price_pnl == pytest.approx(10.0) and row.pnl == pytest.approx(9.9)


def test_float_noise_in_sizes_never_opens_a_phantom_trade():
    t = trades_from_fills(fills((1, 0.3, 100.0, 0.0), (2, -(0.1 + 0.2), 101.0, 0.0)), INDEX, no_funding(), 101.0)
    assert len(t) == 1 and t.status.iloc[0] == "closed"
