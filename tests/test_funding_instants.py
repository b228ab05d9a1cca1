"""Funding is settled at each settlement instant, on the position held at that instant, at the mark price of that
instant, for any bar size and funding interval; the broker and the reference accountant agree by hand numbers.

Rule (Binance: a position held at 00:00/08:00/16:00 UTC, or at the symbol's own interval, pays
``size x mark price x rate``): a settlement exactly at a bar's open is paid on the position held through it (the
open's fills come right after it), at the mark close of the bar before; a settlement strictly inside a bar is paid
on the position held after the open's fills, at the mark price of its instant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from replay import make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import market_rules
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays, settlement_prices, split_settlements, unpriced_settlements

BASE = dict(cash=10_000.0, taker_fee=0.0005, maker_fee=0.0002, slippage="none", leverage=1)
XRP = "XRP/USDT:USDT"

# three 1d bars of an XRP-like market; long 10,000 from day 1's open, flipped to short 8,000 at day 2's open
DAYS = [(0.50, 0.50, 0.50, 0.50), (0.50, 0.56, 0.49, 0.55), (0.55, 0.56, 0.50, 0.52)]
FLIP_SETTLEMENTS = [
    ("2021-01-02 00:00", 0.0001, None),   # day 1's open: nothing held before the open's buy
    ("2021-01-02 08:00", 0.0002, 0.52),   # long 10,000 pays 10,000 x 0.52 x 0.0002 = 1.04
    ("2021-01-02 16:00", 0.0003, 0.54),   # long pays 1.62
    ("2021-01-03 00:00", 0.0001, None),   # day 2's open, before the flip: the long pays at day 1's close, 0.55
    ("2021-01-03 08:00", 0.0004, 0.51),   # short 8,000 receives 8,000 x 0.51 x 0.0004 = 1.632
    ("2021-01-03 16:00", -0.0002, 0.53),  # short pays 0.848 on a negative rate
]
FLIP_FUNDING_PER_BAR = [0.0, 1.04 + 1.62, 0.55 - 1.632 + 0.848]
# wallet 10,000 - 2.5 (buy fee) - funding + 500 (long's PnL) - 4.95 (flip fee); short 8,000 from 0.55 to 0.52: +240
FLIP_EQUITY = [10_000.0, 10_000 - 2.5 - 2.66 + 500, 10_000 - 2.5 + 500 - 4.95 - sum(FLIP_FUNDING_PER_BAR) + 240]


def _flip_market():
    return make_market(DAYS, timeframe="1d", start="2021-01-01", symbol=XRP, settlements=FLIP_SETTLEMENTS)


def test_a_1d_bar_with_three_settlements_and_a_flip_at_the_open_pays_each_on_the_position_held_then():
    market, config, sizes = _flip_market(), BrokerConfig(**BASE), [10_000.0, -8_000.0, -8_000.0]
    run = run_cerebro(market, config, sizes=sizes)
    ref = run_reference(feed_arrays(market), np.asarray(sizes), config, rules=market_rules(XRP))
    # broker: one funding entry per (bar, at-open / inside-bar) settlement group, dated by its bar
    log = run.strategy.broker.getcommissioninfo(run.strategy.data).funding_log
    bar_of = {d: i for i, d in enumerate(feed_arrays(market)["datetime"])}
    broker_per_bar = np.zeros(3)
    for when, paid in log:
        broker_per_bar[bar_of[when]] += paid
    np.testing.assert_allclose(broker_per_bar, FLIP_FUNDING_PER_BAR, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.funding, FLIP_FUNDING_PER_BAR, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run.equity, FLIP_EQUITY, rtol=1e-12)
    np.testing.assert_allclose(ref.equity, FLIP_EQUITY, rtol=1e-12)
    # the old per-bar rule (all of day 2's rates at its open on the long, at 0.55) would have booked 1.65
    assert sum(FLIP_FUNDING_PER_BAR) == pytest.approx(2.426, abs=1e-12)


def _four_hourly(hours: int, rate_of=lambda k: 0.0001 * (1 + k % 3)):
    return [(pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(hours=4 * k), rate_of(k), None)
            for k in range(hours // 4)]


def _hourly_bars(n):
    rng = np.random.default_rng(7)
    close = 1.0 + np.cumsum(rng.normal(0, 0.004, n))
    opens = np.r_[1.0, close[:-1]]
    return np.c_[opens, np.maximum(opens, close) + 0.002, np.minimum(opens, close) - 0.002, close]


def test_a_4h_funding_interval_costs_the_same_on_1h_and_on_1d_bars():
    """A position held from the first day's open: each 4h settlement (6 a day) pays size x mark x rate whether it
    falls on a 1h bar's open or inside a 1d bar (at the close of the 1h mark candle ending at it)."""
    n_days = 3
    hourly_bars = _hourly_bars(24 * n_days)
    settle = [(t, r, None) for t, r, _ in _four_hourly(24 * n_days)]
    hourly = make_market(hourly_bars, timeframe="1h", start="2024-03-01", symbol=XRP, settlements=settle)
    marks = settlement_prices(hourly)   # close of the hourly candle ending at each instant (NaN at the first)
    daily_bars = [(d[0, 0], d[:, 1].max(), d[:, 2].min(), d[-1, 3]) for d in hourly_bars.reshape(n_days, 24, 4)]
    daily = make_market(daily_bars, timeframe="1d", start="2024-03-01", symbol=XRP,
                        settlements=[(t, r, None if np.isnan(m) else m) for (t, r, _), m in zip(settle, marks)])
    assert len(unpriced_settlements(daily)) == 0
    config = BrokerConfig(**dict(BASE, taker_fee=0.0))
    # long 1,000 from the first day's close on: filled at day 2's open = hour 24's open
    hourly_run = run_reference(feed_arrays(hourly), np.where(np.arange(24 * n_days) >= 23, 1_000.0, 0.0), config)
    daily_run = run_reference(feed_arrays(daily), np.array([1_000.0] * n_days), config)
    want = sum(1_000.0 * r * m for (t, r, _), m in zip(settle, marks) if t > pd.Timestamp("2024-03-02", tz="UTC"))
    assert float(np.sum(hourly_run.funding)) == pytest.approx(want, rel=1e-12)
    assert float(np.sum(daily_run.funding)) == pytest.approx(want, rel=1e-12)
    assert daily_run.equity[-1] == pytest.approx(hourly_run.equity[-1], rel=1e-12)
    broker = run_cerebro(daily, config, sizes=[1_000.0] * n_days)
    assert sum(broker.funding) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(broker.equity, daily_run.equity, rtol=1e-12)


@pytest.mark.parametrize("timeframe, per_day", [("1h", 24), ("8h", 3)])
def test_settlements_on_bar_opens_stay_at_the_open(timeframe, per_day):
    index = pd.date_range("2024-01-01", periods=2 * per_day, freq=timeframe, tz="UTC")
    funding = pd.DataFrame({"funding_rate": [0.0001, 0.0002, 0.0003] * 2},
                           index=pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC"))
    at_open, inside, value = split_settlements(index, funding, timeframe, np.ones(6))
    assert at_open.sum() == pytest.approx(0.0012) and not inside.any() and not value.any()
    assert (at_open != 0).sum() == 6


def test_a_settlement_inside_a_bar_without_a_mark_price_is_named_and_priced_at_the_open():
    market = make_market(DAYS, timeframe="1d", start="2021-01-01", symbol=XRP,
                         settlements=[("2021-01-02 08:00", 0.001, None)])
    assert list(unpriced_settlements(market)) == [pd.Timestamp("2021-01-02 08:00", tz="UTC")]
    assert feed_arrays(market)["funding_inside"][1] == pytest.approx(0.001 * 0.50)
