"""position_size: what the target-position base class orders."""

import pytest

from strategies.base import position_size


def test_margin_plus_opening_costs_use_the_fraction_of_equity():
    size, why = position_size(1, 10_000, 50_000, fraction=0.99, leverage=2, cost_rate=0.0006, qty_step=0.001)
    assert (size, why) == (pytest.approx(0.395), "")
    notional = 0.99 * 10_000 * 2 / (1 + 2 * 0.0006)
    assert notional / 2 + notional * 0.0006 == pytest.approx(0.99 * 10_000)


def test_short_targets_give_negative_sizes_rounded_toward_zero():
    size, _ = position_size(-0.5, 1_000, 3_000, fraction=1.0, leverage=1, qty_step=0.01)
    assert size == pytest.approx(-0.16)


def test_below_minimum_quantity_is_flat_with_a_reason():
    assert position_size(1, 10, 100_000, fraction=0.99, leverage=1, qty_step=0.001, min_qty=0.001) == \
        (0.0, "size 9.9e-05 below the market's minimum quantity 0.001")


def test_no_equity_left_never_trades_even_in_the_opposite_direction():
    assert position_size(1, -45.0, 60_000, fraction=0.99, leverage=50) == (0.0, "no equity left")
    assert position_size(-1, 0.0, 60_000, fraction=0.99, leverage=50) == (0.0, "no equity left")
    assert position_size(0, -45.0, 60_000, fraction=0.99, leverage=50) == (0.0, "")
