"""Property tests: on random markets, costs, leverages and position sequences, the Backtrader broker and the
reference accountant agree on every fill, every rejection and every bar's equity, and the attribution terms sum
to the change in equity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import market_rules
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TERMS = ("price", "fees_taker", "fees_maker", "slippage", "funding", "liquidation")


@st.composite
def runs(draw):
    """A random hand-made market, broker config, margin table and target sizes (contracts)."""
    n = draw(st.integers(3, 30))
    floats = lambda lo, hi: st.lists(st.floats(lo, hi), min_size=n, max_size=n).map(np.array)  # noqa: E731
    start = draw(st.floats(1.0, 60_000.0))
    close = start * np.cumprod(1 + draw(floats(-0.06, 0.06)))
    opens = np.r_[start, close[:-1]] * (1 + draw(floats(-0.005, 0.005)))
    high = np.maximum(opens, close) * (1 + draw(floats(0.0, 0.08)))
    low = np.minimum(opens, close) * (1 - draw(floats(0.0, 0.08)))
    mark = None
    if draw(st.booleans()):
        basis = 1 + draw(floats(-0.004, 0.004))
        mark = np.c_[opens * basis, high * basis * (1 + draw(floats(0, 0.01))),
                     low * basis * (1 - draw(floats(0, 0.01))), close * basis]
    funding = draw(st.dictionaries(st.integers(0, n - 1), st.floats(-0.003, 0.003), max_size=n))
    volume = draw(floats(0.0, 1_000.0))
    config = BrokerConfig(
        cash=draw(st.floats(100.0, 1e6)),
        leverage=draw(st.one_of(st.sampled_from([1.0, 3.0, 10.0, 20.0, 125.0]), st.floats(1.0, 125.0))),
        taker_fee=draw(st.floats(0.0, 0.001)),
        maker_fee=draw(st.floats(0.0, 0.0005)),
        slippage=draw(st.sampled_from(["none", "fixed", "range", "volume"])),
        slippage_bps=draw(st.floats(0.0, 50.0)),
        slippage_coef=draw(st.floats(0.0, 1.0)),
        funding=draw(st.sampled_from([True, True, True, False])),
        liquidation_fee=draw(st.floats(0.0, 0.02)),
    )
    # the share of equity x leverage asked for: small positions stay in the low-margin tiers
    unit = config.cash * config.leverage / start * draw(st.sampled_from([0.02, 0.3, 1.0]))
    wanted = draw(st.lists(st.one_of(st.just(0.0), st.sampled_from([-1.0, 1.0]), st.floats(-1.4, 1.4)),
                           min_size=n, max_size=n))
    sizes = np.round(np.array(wanted) * unit, 6)
    symbol = draw(st.sampled_from(["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]))
    market = make_market(np.c_[opens, high, low, close], mark=mark, funding=funding, volume=volume, symbol=symbol)
    return market, config, sizes, symbol


def _both(market, config, sizes, symbol):
    # the broker finds the margin tiers from the feed's market symbol; the reference is told them
    bt_run = run_cerebro(market, config, sizes=list(sizes))
    ref = run_reference(feed_arrays(market), sizes, config, rules=market_rules(symbol))
    return bt_run, ref


def _scale(config, fills) -> float:
    """Size of the numbers involved: cancellation errors scale with cash plus everything traded."""
    return config.cash + float(np.abs(fills["notional"]).sum())


@SETTINGS
@given(runs())
def test_backtrader_and_reference_agree_on_every_fill_and_bar(case):
    market, config, sizes, symbol = case
    bt_run, ref = _both(market, config, sizes, symbol)
    assert len(bt_run.fills) == len(ref.fills)
    for got, want in zip(bt_run.fills.to_dict("records"), ref.fills):
        assert got["kind"] == want["kind"]
        for key in ("size", "price"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), key
        assert got["fee"] == pytest.approx(want["fee"], rel=1e-9, abs=1e-12)
    assert [r[1] for r in bt_run.rejected] == pytest.approx([r["size"] for r in ref.rejected], rel=1e-9)
    tol = 1e-9 * _scale(config, bt_run.fills)
    assert bt_run.equity == pytest.approx(ref.equity, rel=1e-9, abs=tol)
    assert bt_run.position == pytest.approx(ref.position, rel=1e-9, abs=1e-12)


@SETTINGS
@given(runs())
def test_attribution_sums_to_the_change_in_equity_in_both_accountants(case):
    market, config, sizes, symbol = case
    bt_run, ref = _both(market, config, sizes, symbol)
    tol = 1e-9 * _scale(config, bt_run.fills)
    assert bt_run.attribution.total == pytest.approx(bt_run.equity[-1] - config.cash, abs=tol)
    assert ref.attribution.total == pytest.approx(ref.equity[-1] - config.cash, abs=tol)
    for term in TERMS:
        assert getattr(bt_run.attribution, term) == pytest.approx(getattr(ref.attribution, term), abs=tol), term


@SETTINGS
@given(runs())
def test_an_isolated_position_never_loses_more_than_its_margin_and_fees(case):
    market, config, sizes, symbol = case
    _, ref = _both(market, config, sizes, symbol)
    for fill in ref.fills:
        if fill["kind"] == "liquidation":
            # what the liquidated position gave back is never negative: balance at the price >= the fee
            # (to float rounding: |size| x rate x price and (|size| x price) x rate may differ by an ulp, 7e-12 at 5e4)
            assert fill["fee"] <= fill["notional"] * config.liquidation_fee * (1 + 1e-12) + 1e-12
    assert ref.attribution.liquidation <= 1e-9 * config.cash
