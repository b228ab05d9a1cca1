"""Table-driven accounting scenarios on hand-made candles, expected numbers worked out by hand.

Each scenario runs through both accountants: the Backtrader broker (``FuturesBroker`` via a replay strategy)
and the reference accountant (``backtests.reference``). Sizes are contracts held after each bar's close; the
order for the difference fills at the next bar's open. Margin tiers: the BTC table (0.4 % below 50,000 USDT
notional, 0.5 % - 50 from 50,000 to 250,000).
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest
from replay import FractionReplay, make_market, run_cerebro

from backtests.broker import BrokerConfig
from backtests.margin import BTC_TABLE, TradingRules
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays

FLAT = (100.0, 100.0, 100.0, 100.0)
HAND = TradingRules(margin_table=BTC_TABLE)   # the BTC tiers on a market of prices near 100: no tick, no minimums
# the "flat" liquidation model: the Binance protocol's loss booked as a fee at the liquidation price (the Binance
# model's own fills are in test_liquidation_protocol.py)
BASE = dict(cash=10_000.0, taker_fee=0.0005, maker_fee=0.0002, slippage="none", liquidation_fee=0.0125,
            liquidation_model="flat")

LIQ_LONG = 9_500 / 99.6            # (100 x 100 - 500) / (100 x (1 - 0.004)) = 95.3815...
LIQ_LONG_FEE = 0.004 * 100 * LIQ_LONG  # capped at maintenance: 38.1526...
LIQ_20X = 94_950 / 995              # (1000 x 100 - 5000 - 50) / (1000 x (1 - 0.005)) = 95.4271...
LIQ_AFTER_FUNDING = 9_520 / 99.6   # margin 500 - 20 funding: (100 x 100 - 480) / (100 x (1 - 0.004)) = 95.5823...

SCENARIOS = {
    "long liquidated on a mark-price wick the last price never reached": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (100, 100.5, 96, 99.5), (99.5, 100, 99, 99.8)],
        mark=[FLAT, (100, 101, 99, 100), (100, 100.4, 95.2, 99.5), (99.5, 100, 99, 99.8)],
        sizes=[100, 100, 0, 0],
        # buy 100 @ 100 (fee 5, margin 500); mark low 95.2 < 95.38: closed there, losing the 500 margin
        fills=[(100, 100.0, 5.0, "market"), (-100, LIQ_LONG, LIQ_LONG_FEE, "liquidation")],
        equity=[10_000, 9_995, 9_495, 9_495],
        funding=[],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-5.0, liquidation=-500.0),
    ),
    "without mark prices the last-price wick liquidates": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (100, 100.5, 95, 99.5), (99.5, 100, 99, 99.8)],
        sizes=[100, 100, 0, 0],
        fills=[(100, 100.0, 5.0, "market"), (-100, LIQ_LONG, LIQ_LONG_FEE, "liquidation")],
        equity=[10_000, 9_995, 9_495, 9_495],
        funding=[],
        rejected=0,
    ),
    "a wick short of the liquidation price only marks to market": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (100, 100.5, 95.5, 99.5), (99.5, 100, 99, 99.8)],
        sizes=[100, 100, 100, 100],
        fills=[(100, 100.0, 5.0, "market")],
        equity=[10_000, 9_995, 9_945, 9_975],
        funding=[],
        rejected=0,
    ),
    "funding paid out of the isolated margin brings the liquidation closer": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (100, 100.5, 95.5, 99.5), (99.5, 100, 99, 99.8)],
        rates={2: 0.002},
        sizes=[100, 100, 0, 0],
        # the same 95.5 wick that leaves the position alone without funding (above 95.38) now liquidates it:
        # 20 of funding (100 x 100 x 0.002) came out of its 500 margin, moving the price up to 95.58
        fills=[(100, 100.0, 5.0, "market"),
               (-100, LIQ_AFTER_FUNDING, 0.004 * 100 * LIQ_AFTER_FUNDING, "liquidation")],
        equity=[10_000, 9_995, 9_495, 9_495],
        funding=[20.0],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-5.0, funding=-20.0, liquidation=-480.0),
    ),
    "a gap through the liquidation price loses the margin, not more": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (94, 95, 93, 94.5), (94.5, 95, 94, 94.8)],
        sizes=[100, 100, 0, 0],
        # opens at 94, below 95.38 and below the bankruptcy price 95 (= 100 - 500 / 100): closed at 95, no fee
        # left to pay; the exchange's insurance fund takes the rest
        fills=[(100, 100.0, 5.0, "market"), (-100, 95.0, 0.0, "liquidation")],
        equity=[10_000, 9_995, 9_495, 9_495],
        funding=[],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-5.0, liquidation=-500.0),
    ),
    "a gap between the bankruptcy and liquidation prices closes at the open": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 101, 99, 100), (95.2, 95.6, 95.1, 95.4), (95.4, 96, 95, 95.8)],
        sizes=[100, 100, 0, 0],
        # opens at 95.2: loss 480, and the fee is the 20 of margin left (less than 0.4 % x 9,520 = 38.08)
        fills=[(100, 100.0, 5.0, "market"), (-100, 95.2, 20.0, "liquidation")],
        equity=[10_000, 9_995, 9_495, 9_495],
        funding=[],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-5.0, liquidation=-500.0),
    ),
    "a short receives positive funding on the mark price": dict(
        config=dict(BASE, leverage=1),
        bars=[FLAT, (100, 101, 99, 100.5), (100.5, 101, 100, 100), FLAT],
        mark=[FLAT, (100, 100.9, 99.1, 100.4), (100.4, 101, 100, 100), FLAT],
        rates={2: 0.0001},
        sizes=[-2, -2, -2, -2],
        # sell 2 @ 100 (fee 0.1); at bar 2's open the short receives 2 x 100.4 (mark close) x 0.0001
        fills=[(-2, 100.0, 0.1, "market")],
        equity=[10_000, 9_998.9, 9_999.92008, 9_999.92008],
        funding=[-0.02008],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-0.1, funding=0.02008),
    ),
    "a long pays positive funding": dict(
        config=dict(BASE, leverage=1),
        bars=[FLAT, FLAT, FLAT],
        rates={2: 0.0003},
        sizes=[2, 2, 2],
        fills=[(2, 100.0, 0.1, "market")],
        equity=[10_000, 9_999.9, 9_999.84],
        funding=[0.06],
        rejected=0,
    ),
    "a flip from long to short in one bar, with 10 bps slippage": dict(
        config=dict(BASE, leverage=1, slippage="fixed", slippage_bps=10),
        bars=[FLAT, (100, 101, 99, 100), (110, 111, 109, 110), (110, 110, 110, 110)],
        sizes=[2, -1, -1, -1],
        # buy 2 @ 100.1; one sell of 3 @ 109.89 realises 2 x 9.79 = 19.58 and leaves short 1 @ 109.89
        fills=[(2, 100.1, 0.1001, "market"), (-3, 109.89, 0.164835, "market")],
        equity=[10_000, 9_999.6999, 10_019.205065, 10_019.205065],
        funding=[],
        rejected=0,
        attribution=dict(price=20.0, fees_taker=-0.264935, slippage=-0.53),
    ),
    "an increase is paid from free cash that counts unrealised PnL at the previous close": dict(
        config=dict(BASE, cash=1_000.0, leverage=1),
        bars=[FLAT, (100, 120, 100, 120), (119, 119, 119, 119)],
        sizes=[5, 10, 10],
        # free cash at bar 1's close: 1,000 - 0.25 + 5 x 20 - 500 = 599.75 >= 595 + 0.2975 for 5 more at 119
        fills=[(5, 100.0, 0.25, "market"), (5, 119.0, 0.2975, "market")],
        equity=[1_000, 1_099.75, 1_094.4525],
        funding=[],
        rejected=0,
    ),
    "an order that cannot be afforded is rejected, not resized": dict(
        config=dict(BASE, cash=1_000.0, leverage=1),
        bars=[FLAT, FLAT, FLAT],
        sizes=[20, 20, 20],
        fills=[],
        equity=[1_000, 1_000, 1_000],
        funding=[],
        rejected=2,  # sent at bars 0 and 1, refused at bars 1 and 2
    ),
    "a flip whose new side cannot be afforded only closes": dict(
        config=dict(BASE, cash=1_000.0, leverage=1),
        bars=[FLAT, FLAT, FLAT],
        sizes=[9, -15, -15],
        # long 9 (margin 900, fee 0.45); the flip closes 9 (fee 0.45) but short 15 needs 1,500.75 > 999.10
        fills=[(9, 100.0, 0.45, "market"), (-9, 100.0, 0.45, "market")],
        equity=[1_000, 999.55, 999.1],
        funding=[],
        rejected=1,
    ),
    "leverage 20: half the equity as margin is liquidated by a 5 % wick": dict(
        config=dict(BASE, leverage=20),
        bars=[FLAT, (100, 100.5, 99.5, 100), (100, 102, 99, 102), (102, 102, 95, 96), (96, 97, 95.5, 96)],
        sizes=[1000, 1000, 1000, 0, 0],
        # notional 100,000 is in tier 2; margin 5,000 is lost, the entry fee was 50
        fills=[(1000, 100.0, 50.0, "market"), (-1000, LIQ_20X, 1000 * LIQ_20X * 0.005 - 50, "liquidation")],
        equity=[10_000, 9_950, 11_950, 4_950, 4_950],
        funding=[],
        rejected=0,
        attribution=dict(price=0.0, fees_taker=-50.0, liquidation=-5_000.0),
    ),
    "a position above its tier's leverage limit is rejected whole": dict(
        # 50x allows at most 1,000,000 USDT of BTC (above it tier 4 allows 20x): short 15,000 at 100 (1,500,000)
        # is refused although its margin (30,000) is affordable, and the flip's closing part does not execute
        config=dict(BASE, cash=100_000.0, leverage=50),
        bars=[FLAT, FLAT, FLAT],
        sizes=[9_000, -15_000, -15_000],
        fills=[(9_000, 100.0, 450.0, "market")],
        equity=[100_000, 99_550, 99_550],
        funding=[],
        rejected=1,
    ),
    "leverage 1: the same path and margin, no liquidation": dict(
        config=dict(BASE, leverage=1),
        bars=[FLAT, (100, 100.5, 99.5, 100), (100, 102, 99, 102), (102, 102, 95, 96), (96, 97, 95.5, 96)],
        sizes=[50, 50, 50, 50, 50],
        fills=[(50, 100.0, 2.5, "market")],
        equity=[10_000, 9_997.5, 10_097.5, 9_797.5, 9_797.5],
        funding=[],
        rejected=0,
        attribution=dict(price=-200.0, fees_taker=-2.5),
    ),
}


def _market(s):
    return make_market(s["bars"], mark=s.get("mark"), funding=s.get("rates"))


def _via_backtrader(s):
    run = run_cerebro(_market(s), BrokerConfig(**s["config"]), sizes=s["sizes"], rules=HAND)
    fills = [(f.size, f.price, f.fee, f.kind) for f in run.fills.itertuples()]
    return fills, run.equity, run.funding, len(run.rejected), run.attribution


def _via_reference(s):
    ref = run_reference(feed_arrays(_market(s)), np.asarray(s["sizes"], float), BrokerConfig(**s["config"]),
                        BTC_TABLE)
    fills = [(f["size"], f["price"], f["fee"], f["kind"]) for f in ref.fills]
    return fills, ref.equity, [p for p in ref.funding if p], len(ref.rejected), ref.attribution


@pytest.mark.parametrize("accountant", [_via_backtrader, _via_reference], ids=["backtrader", "reference"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_fills_equity_funding_and_rejections(name, accountant):
    s = SCENARIOS[name]
    fills, equity, funding, rejected, attribution = accountant(s)
    assert len(fills) == len(s["fills"])
    for got, want in zip(fills, s["fills"]):
        assert got[:3] == pytest.approx(want[:3], rel=1e-12, abs=1e-9)
        assert got[3] == want[3]
    assert list(equity) == pytest.approx(s["equity"], rel=1e-12)
    assert funding == pytest.approx(s["funding"], rel=1e-12)
    assert rejected == s["rejected"]
    assert attribution.total == pytest.approx(s["equity"][-1] - s["config"]["cash"], rel=1e-12, abs=1e-9)
    for term, value in s.get("attribution", {}).items():
        assert getattr(attribution, term) == pytest.approx(value, rel=1e-12, abs=1e-9), term


@pytest.mark.parametrize("leverage, size", [(1, 50.0), (20, 1000.0)])
def test_fraction_of_equity_times_leverage_sizes_the_position(leverage, size):
    # fraction 0.5 of 10,000 at a close of 100: 50 contracts at 1x, 1,000 at 20x
    name = "leverage 20: half the equity as margin is liquidated by a 5 % wick" if leverage == 20 else \
        "leverage 1: the same path and margin, no liquidation"
    s = SCENARIOS[name]
    run = run_cerebro(_market(s), BrokerConfig(**s["config"]), FractionReplay, symbol="BTC/USDT:USDT",
                      fractions=[1.0] * 5, fraction=0.5, leverage=leverage, qty_step=0.001, min_qty=0.001)
    assert run.fills["size"].iloc[0] == size
    assert list(run.equity) == pytest.approx(s["equity"], rel=1e-12)


def test_liquidation_is_notified_to_the_strategy_as_a_completed_sell():
    seen = []

    class Watch(FractionReplay):
        def notify_order(self, order):
            if order.status == order.Completed:
                seen.append((order.info.get("kind", "market"), order.executed.size))

    s = SCENARIOS["leverage 20: half the equity as margin is liquidated by a 5 % wick"]
    run_cerebro(_market(s), BrokerConfig(**s["config"]), Watch, symbol="BTC/USDT:USDT", fractions=[1.0] * 5,
                fraction=0.5, leverage=20)
    assert seen == [("market", 1000.0), ("liquidation", -1000.0)]


def test_after_a_liquidation_the_run_goes_on_with_what_is_left():
    # liquidated at bar 2, the replay asks for 10 contracts again: they fill at bar 3 from the 9,495 left
    s = SCENARIOS["long liquidated on a mark-price wick the last price never reached"]
    run = run_cerebro(_market(s), BrokerConfig(**s["config"]), sizes=[100, 100, 10, 10], symbol="BTC/USDT:USDT")
    assert list(run.fills["kind"]) == ["market", "liquidation", "market"]
    assert run.equity[-1] == pytest.approx(9_495 - 10 * 99.5 * 0.0005 + 10 * (99.8 - 99.5), rel=1e-12)


class _LimitBuy(bt.Strategy):
    params = (("limit", 99.0),)

    def __init__(self):
        self.rejected = []

    def next(self):
        if len(self) == 1:
            self.buy(size=10, price=self.p.limit, exectype=bt.Order.Limit)


@pytest.mark.parametrize("limit, price, fee, liquidity", [
    (99.0, 99.0, 10 * 99.0 * 0.0002, "maker"),      # rests below the close of 100, filled on the way down
    (101.0, 100.0, 10 * 100.0 * 0.0005, "taker"),   # marketable when placed: fills at the open as a taker
])
def test_resting_limit_orders_pay_maker_and_marketable_ones_taker(limit, price, fee, liquidity):
    market = make_market([FLAT, (100, 100.5, 98.5, 99.5), (99.5, 100, 99, 99.5)])
    run = run_cerebro(market, BrokerConfig(**dict(BASE, leverage=1)), _LimitBuy, limit=limit)
    (fill,) = run.fills.itertuples()
    assert (fill.price, fill.fee, fill.kind, fill.liquidity) == (price, pytest.approx(fee, rel=1e-12), "limit",
                                                                  liquidity)
    assert run.attribution.fees_maker == pytest.approx(-fee if liquidity == "maker" else 0.0, rel=1e-12)


@pytest.mark.parametrize("symbol, liquidated", [("ETH/USDT:USDT", True), ("BTC/USDT:USDT", False)])
def test_margin_tiers_follow_the_feeds_market_when_no_symbol_is_given(symbol, liquidated):
    # long 100 at 100 with 20x: liquidation at 95.4774 on ETH's tiers (0.5 %), 95.3815 on BTC's (0.4 %)
    bars = [FLAT, (100, 101, 99, 100), (100, 100, 95.45, 99), (99, 99, 99, 99)]
    run = run_cerebro(make_market(bars, symbol=symbol), BrokerConfig(**dict(BASE, leverage=20)),
                      sizes=[100, 100, 100, 100])
    assert ("liquidation" in run.fills["kind"].tolist()) is liquidated
