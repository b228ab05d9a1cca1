"""One account over several perpetuals: the portfolio broker through a real Cerebro, against hand-worked numbers
and against the portfolio reference accountant, in isolated and cross margin.

Markets are hand-made (no mark prices: the last-price candle is the mark). Tiers: "BTC" on Binance's BTCUSDT table
(0.4 % below 50,000 USDT of notional), "ETH" on its ETHUSDT table (0.5 % below 10,000). Liquidation fee 1.25 %,
Binance's protocol (``liquidation_model="binance"``). Sizes are contracts held after each bar's close; the order for
the difference fills at the next bar's open (taker 0.05 %, no slippage).
"""

from __future__ import annotations

import dataclasses

import backtrader as bt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from replay import make_market

from backtests.broker import BrokerConfig, make_broker
from backtests.margin import BTC_TABLE, ETH_TABLE, TradingRules
from backtests.portfolio.account import Position, available_balance, cross_breached, cross_liquidation, maintenance, \
    margin_balance, margin_ratio
from backtests.portfolio.broker import PortfolioBroker, make_portfolio_broker
from backtests.portfolio.reference import run_portfolio_reference
from data_feeds.feed import FuturesData, feed_arrays

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
RULES = {BTC: TradingRules(margin_table=BTC_TABLE, liquidation_fee=0.0125),
         ETH: TradingRules(margin_table=ETH_TABLE, liquidation_fee=0.0125)}
CONFIG = BrokerConfig(cash=2_000.0, leverage=10, taker_fee=0.0005, slippage="none", liquidation_model="binance")


class Targets(bt.Strategy):
    """Holds ``sizes[symbol][i]`` contracts of each feed after bar i's close (an order for the difference)."""

    params = (("sizes", {}),)

    def __init__(self):
        self.refused: list[tuple[str, int, str]] = []

    def notify_order(self, order):
        if order.status in (order.Margin, order.Rejected):
            reason = order.info.get("reason", None) or order.getstatusname()
            self.refused.append((order.data.p.market.symbol, len(self) - 1, reason))

    def next(self):
        for data in self.datas:
            want = float(self.p.sizes[data.p.market.symbol][len(self) - 1])
            if want != self.getposition(data).size:
                self.order_target_size(data=data, target=want)


def run(markets, sizes, broker):
    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    for market in markets:
        cerebro.adddata(FuturesData(market=market), name=market.symbol)
    cerebro.broker = broker
    cerebro.addstrategy(Targets, sizes=sizes)
    strat = cerebro.run()[0]
    return strat, np.array([row["equity"] for row in broker.margin_log])


def fills(broker, symbol=None):
    return [(f["symbol"], f["size"], pytest.approx(f["price"], abs=1e-9), pytest.approx(f["fee"], abs=1e-9), f["kind"])
            for f in broker.fill_log if symbol in (None, f["symbol"])]


def flat(price, n):
    return [(price, price, price, price)] * n


def steps(start, step, n):
    """``n`` bars moving by ``step`` each: open, high, low, close with the range exactly open..close."""
    rows = []
    for k in range(n):
        o, c = start + step * k, start + step * (k + 1)
        rows.append((o, max(o, c), min(o, c), c))
    return rows


# ---------------------------------------------------------------- (a) a loss on one symbol

BTC_CRASH = flat(100.0, 2) + [(100.0, 100.0, 75.0, 78.0), (78.0, 78.0, 78.0, 78.0)]
ETH_QUIET = flat(10.0, 4)


def test_a_loss_on_one_symbol_liquidates_only_that_position_in_isolated():
    # buy 100 BTC at 100 (fee 5, margin 1,000) and 900 ETH at 10 (fee 4.5, margin 900), 10x.
    # BTC's isolated liquidation price: (100 x 100 - 1,000) / (100 x (1 - 0.004)) = 90.3614; left there is its
    # maintenance 36.14 < the 1.25 % fee (112.95): margin-deficient, closed at the bankruptcy price
    # 100 - 1,000 / 100 = 90 with no fee. ETH, on its own margin, is untouched.
    broker = make_portfolio_broker(CONFIG, RULES, "isolated")
    strat, equity = run([make_market(BTC_CRASH, symbol=BTC), make_market(ETH_QUIET, symbol=ETH)],
                        {BTC: [100, 100, 0, 0], ETH: [900] * 4}, broker)
    assert fills(broker) == [(BTC, 100.0, 100.0, 5.0, "market"), (ETH, 900.0, 10.0, 4.5, "market"),
                             (BTC, -100.0, 90.0, 0.0, "liquidation")]
    np.testing.assert_allclose(equity, [2_000, 1_990.5, 990.5, 990.5], atol=1e-9)
    assert strat.getposition(strat.datas[1]).size == 900


def test_the_same_loss_liquidates_the_whole_account_in_cross():
    # cross: margin balance 1,990.5 + 100 (p - 100) meets the total maintenance 0.4 % x 100 p + 0.5 % x 9,000 at
    # p = (1,990.5 - 10,000 - 45) / -99.6 = 80.8685; left there 77.35 < the fees 1.25 % x (8,086.8 + 9,000) = 213.6:
    # margin-deficient, both closed at the account's bankruptcy point, margin balance 0:
    # 1,990.5 + 100 (p - 100) = 0 -> BTC at 80.095, ETH (no move in the bar) at 10; the account is left with 0,
    # and ETH's order to buy again is refused.
    broker = make_portfolio_broker(CONFIG, RULES, "cross")
    strat, equity = run([make_market(BTC_CRASH, symbol=BTC), make_market(ETH_QUIET, symbol=ETH)],
                        {BTC: [100, 100, 0, 0], ETH: [900] * 4}, broker)
    assert fills(broker) == [(BTC, 100.0, 100.0, 5.0, "market"), (ETH, 900.0, 10.0, 4.5, "market"),
                             (BTC, -100.0, 80.095, 0.0, "liquidation"), (ETH, -900.0, 10.0, 0.0, "liquidation")]
    np.testing.assert_allclose(equity, [2_000, 1_990.5, 0.0, 0.0], atol=1e-9)
    # left with 0 (to rounding): refused for want of margin, or as a wiped-out account when rounding left it below 0
    assert [r[:2] for r in strat.refused] == [(ETH, 2)] and strat.refused[0][2] in ("Margin", "account wiped out")
    assert broker.margin_log[1]["maintenance"] == pytest.approx({BTC: 40.0, ETH: 45.0})


# ---------------------------------------------------------------- (b) a hedge

@pytest.mark.parametrize("direction", [1, -1])
def test_a_hedge_survives_in_cross_a_move_that_liquidates_a_leg_in_isolated(direction):
    # long 100 BTC at 100, short 900 ETH at 10 (10x: margins 1,000 and 900); both move 5 % a bar for 5 bars.
    # Up: the ETH short's isolated liquidation price is (-9,000 - 900) / (-900 x 1.005) = 10.9453, reached in bar 2
    # (high 11): deficient (left 49.3 < fee 123.1), closed at its bankruptcy price 10 + 900 / 900 = 11.
    # Down: the BTC long's, 90.3614, in bar 2 (low 90): closed at 90.
    # Cross, each leg at its adverse extreme of every bar at once: margin balance 1,990.5 + 500 (k - 1) - 450 k
    # (up, bar k) or 1,990.5 - 500 k + 450 (k - 1) (down), at least 1,290.5 against at most 50 + 58.1 of
    # maintenance (ETH at 12.5 is in its 0.65 % tier).
    btc, eth = flat(100.0, 1) + steps(100.0, 5.0 * direction, 5), flat(10.0, 1) + steps(10.0, 0.5 * direction, 5)
    sizes = {BTC: [100] * 6, ETH: [-900] * 6}
    isolated = make_portfolio_broker(CONFIG, RULES, "isolated")
    run([make_market(btc, symbol=BTC), make_market(eth, symbol=ETH)], sizes, isolated)
    leg, price = (ETH, 11.0) if direction > 0 else (BTC, 90.0)
    liquidations = [f for f in fills(isolated) if f[-1] == "liquidation"]
    # (the strategy still wants the leg: it opens it again at the next open, the first liquidation is the one here)
    assert liquidations[0] == (leg, 900.0 if leg == ETH else -100.0, price, 0.0, "liquidation")
    first = next(f for f in isolated.fill_log if f["kind"] == "liquidation")
    assert first["time"] == isolated.margin_log[2]["time"]

    cross = make_portfolio_broker(CONFIG, RULES, "cross")
    _, equity = run([make_market(btc, symbol=BTC), make_market(eth, symbol=ETH)], sizes, cross)
    assert [f[-1] for f in fills(cross)] == ["market", "market"]
    # final: 1,990.5 + 100 x (125 - 100) - 900 x (12.5 - 10) = 2,240.5 up; 1,990.5 - 2,500 + 2,250 = 1,740.5 down
    assert equity[-1] == pytest.approx(2_240.5 if direction > 0 else 1_740.5, abs=1e-9)
    assert max(row["ratio"] for row in cross.margin_log) < 0.1


def test_one_bar_extremes_of_different_symbols_count_as_reached_together():
    # the stated assumption: in one bar a candle does not say when each symbol made its extreme, so the check puts
    # every leg at its worst at once. The hedge above moving 25 % in a single bar: BTC at its low 100 (no gain),
    # ETH at its high 12.5 (-2,250): 1,990.5 - 2,250 < 0 -> liquidated, though its close is fine.
    positions = {BTC: Position(100, 100.0, 100.0), ETH: Position(-900, 10.0, 10.0)}
    tables = {BTC: BTC_TABLE, ETH: ETH_TABLE}
    assert cross_breached(1_990.5, positions, {BTC: 100.0, ETH: 10.0}, {BTC: 125.0, ETH: 12.5}, tables)
    assert not cross_breached(1_990.5, positions, {BTC: 125.0, ETH: 10.0}, {BTC: 125.0, ETH: 12.5}, tables)


def test_a_single_cross_position_is_liquidated_at_its_isolated_liquidation_price():
    # wallet 5 behind a long of 1 at 100 (as 20x isolated): (100 - 5) / (1 - 0.004) = 95.3815 on the "flat" model
    # with the fee capped at what is left (0.3815); "binance": deficient, the bankruptcy price 95 and no fee
    pos = {BTC: Position(1.0, 100.0, 100.0)}
    args = (5.0, pos, {BTC: 100.0}, {BTC: 95.0}, {BTC: 101.0}, {BTC: BTC_TABLE}, {BTC: 0.0125})
    flat_model = cross_liquidation(*args, model="flat")
    assert flat_model.prices[BTC] == pytest.approx(95 / 0.996, abs=1e-12)
    assert flat_model.fees[BTC] == pytest.approx(95 / 0.996 - 95, abs=1e-12)
    assert cross_liquidation(*args, model="binance") == ((({BTC: 95.0}), {BTC: 0.0}, True))
    assert margin_ratio("cross", 5.0, pos, {BTC: 95 / 0.996}, {BTC: BTC_TABLE}, 20) == pytest.approx(1.0)


def test_a_cross_position_crossing_a_tier_on_the_way_is_liquidated_where_the_isolated_formula_says():
    # long 1,000 at 100 with 5,000 behind it: 100,000 of notional is tier 2 (0.5 %, amount 50) at the breach:
    # (1,000 x 100 - 5,000 - 50) / (1,000 x (1 - 0.005)) = 94,950 / 995 = 95.4271 (margin.liquidation_price's example)
    out = cross_liquidation(5_000.0, {BTC: Position(1_000.0, 100.0, 100.0)}, {BTC: 100.0}, {BTC: 90.0},
                            {BTC: 100.0}, {BTC: BTC_TABLE}, {BTC: 0.0125}, model="flat")
    assert out.prices[BTC] == pytest.approx(94_950 / 995, abs=1e-12)


def test_a_margin_compliant_cross_account_pays_the_fees_and_keeps_the_rest():
    # a 0.2 % liquidation fee is below the 0.4 % / 0.5 % maintenance left at the breach: compliant. Long 100 BTC at
    # 100 and long 900 ETH at 10, wallet 1,990.5, ETH still, BTC low 75: breach at BTC 80.8685 (see the cross
    # scenario above), left = its maintenance 32.35 + 45 = 77.35, fees 0.2 % x (8,086.85 + 9,000) = 34.17: kept 43.17
    positions = {BTC: Position(100, 100.0, 100.0), ETH: Position(900, 10.0, 10.0)}
    out = cross_liquidation(1_990.5, positions, {BTC: 100.0, ETH: 10.0}, {BTC: 75.0, ETH: 10.0},
                            {BTC: 100.0, ETH: 10.0}, {BTC: BTC_TABLE, ETH: ETH_TABLE}, {BTC: 0.002, ETH: 0.002})
    p = (1_990.5 - 10_000 - 45) / -99.6
    assert not out.bankrupt and out.prices == pytest.approx({BTC: p, ETH: 10.0}, abs=1e-9)
    assert out.fees == pytest.approx({BTC: 0.002 * 100 * p, ETH: 18.0}, abs=1e-9)
    kept = 1_990.5 + 100 * (p - 100) - sum(out.fees.values())
    assert kept == pytest.approx(0.004 * 100 * p + 45 - 0.002 * (100 * p + 9_000), abs=1e-9) and kept > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(1, 3_000), st.floats(0.0, 0.3), st.floats(0, 0.3),
                          st.floats(0.0, 1.0)), min_size=1, max_size=3),
       st.floats(10, 20_000), st.sampled_from(["binance", "flat"]))
def test_a_cross_liquidation_closes_where_the_balance_meets_maintenance_or_zero(legs, wallet, model):
    # each leg: side, size, how far its bar's low and high reach from the entry 100, where it opened in that range
    symbols = [f"S{k}/USDT:USDT" for k in range(len(legs))]
    positions = {s: Position(side * size, 100.0, 100.0) for s, (side, size, *_) in zip(symbols, legs)}
    lows = {s: 100 * (1 - down) for s, (_, _, down, _, _) in zip(symbols, legs)}
    highs = {s: 100 * (1 + up) for s, (_, _, _, up, _) in zip(symbols, legs)}
    opens = {s: lows[s] + at * (highs[s] - lows[s]) for s, (*_, at) in zip(symbols, legs)}
    tables = {s: BTC_TABLE if k % 2 else ETH_TABLE for k, s in enumerate(symbols)}
    out = cross_liquidation(wallet, positions, opens, lows, highs, tables, {s: 0.0125 for s in symbols}, model)
    if out is None:
        assert not cross_breached(wallet, positions, lows, highs, tables)
        return
    balance = margin_balance(wallet, positions, out.prices)
    mm = sum(maintenance(positions, out.prices, tables).values())
    at_open = margin_balance(wallet, positions, opens) - sum(maintenance(positions, opens, tables).values())
    scale = 1e-9 * (wallet + sum(abs(p.size) * 100 for p in positions.values()))
    if out.bankrupt:
        assert balance == pytest.approx(0.0, abs=scale) or at_open < 0
    elif at_open >= 0:  # no gap: at the breach, on the bar's path
        assert balance == pytest.approx(mm, abs=scale)
        assert all(lows[s] - 1e-9 <= out.prices[s] <= highs[s] + 1e-9 for s in symbols)
    assert balance - sum(out.fees.values()) >= -scale  # the account never goes below 0


def test_funding_beyond_the_initial_margin_of_a_position_in_profit_still_costs_only_its_margin():
    # long 1 at 100, 10x (margin 10), 15 of funding paid out of it: its isolated margin is -5, held up by its profit.
    # A fall to a mark of 104 breaches maintenance (-5 + 4 < 0.416). Liquidation price (100 + 5) / 0.996 = 105.42,
    # left there 0.42 < the 1.25 % fee: margin-deficient, closed at the bankruptcy price 100 - (-5) / 1 = 105:
    # +5 realised against 15 of funding, 10 lost, the margin. (Closing at the entry would lose 15 and let an
    # isolated portfolio's wallet go below 0: seen on the shipped BTC+ETH data held long at 10x for two years.)
    from backtests.margin import liquidation_exit
    assert liquidation_exit(1.0, 100.0, -5.0, 106.0, BTC_TABLE, 0.0125, "binance") == (105.0, 0.0)


# ---------------------------------------------------------------- (c) funding while the other symbol trades

BTC_RATES = {3: 0.001}  # longs pay 100 x 100 x 0.001 = 10 at bar 3's open
ETH_RATES = {4: -0.002}  # shorts pay 900 x 10 x 0.002 = 18 at bar 4's open


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_a_symbol_settles_funding_at_the_open_where_the_other_symbol_trades(margin):
    # BTC long 100 from bar 1 to bar 4; ETH short 900 opens at bar 3's open, the instant BTC settles: BTC pays 10
    # on its own position and price, ETH nothing (it opened after the settlement). At bar 4's open ETH settles 18
    # on its short while BTC closes (fee 5) and pays nothing (no settlement of its own there).
    broker = make_portfolio_broker(CONFIG, RULES, margin)
    strat, equity = run([make_market(flat(100.0, 6), symbol=BTC, funding=BTC_RATES),
                         make_market(flat(10.0, 6), symbol=ETH, funding=ETH_RATES)],
                        {BTC: [100, 100, 100, 0, 0, 0], ETH: [0, 0, -900, -900, -900, -900]}, broker)
    btc, eth = (broker.getcommissioninfo(d) for d in strat.datas)
    assert [paid for _, paid in btc.funding_log] == pytest.approx([10.0])
    assert [paid for _, paid in eth.funding_log] == pytest.approx([18.0])
    assert btc.funding_log[0][0] == broker.margin_log[3]["time"]
    assert eth.funding_log[0][0] == broker.margin_log[4]["time"]
    assert eth.held_funding == pytest.approx(18.0)  # isolated: out of the short's own margin
    np.testing.assert_allclose(equity, [2_000, 1_995, 1_995, 1_980.5, 1_957.5, 1_957.5], atol=1e-9)


def test_the_funding_at_an_open_is_paid_before_that_opens_fills_from_the_shared_wallet():
    # cross, 1,915 USDT: after BTC (margin 1,000, fee 5) 910 is available, enough for ETH (900 + 4.5); BTC's 10 of
    # funding at the same open comes first and leaves 900: the ETH order is refused, and again at every close
    broker = make_portfolio_broker(BrokerConfig(**{**CONFIG.__dict__, "cash": 1_915.0}), RULES, "cross")
    strat, _ = run([make_market(flat(100.0, 5), symbol=BTC, funding=BTC_RATES),
                    make_market(flat(10.0, 5), symbol=ETH)],
                   {BTC: [100] * 5, ETH: [0, 0, -900, -900, -900]}, broker)
    assert strat.refused == [(ETH, 2, "Margin"), (ETH, 3, "Margin")]
    assert strat.getposition(strat.datas[1]).size == 0


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_a_feed_without_a_bar_at_a_step_pays_no_funding_twice_and_is_held_at_its_last_mark(margin):
    # ETH has no candle at bar 3 (a gap): at that step of the portfolio clock its lines still hold bar 2, whose
    # settlement (short 900 x 10 x 0.001: 9 received) must not be paid again. BTC long 100, ETH short 900, flat
    # prices: equity 2,000 - 5 - 4.5 + 9 = 1,999.5 from bar 2 on, with or without the gap.
    eth = make_market(flat(10.0, 6), symbol=ETH, funding={2: 0.001})
    eth = dataclasses.replace(eth, candles=eth.candles.drop(eth.candles.index[3]))
    broker = make_portfolio_broker(CONFIG, RULES, margin)
    strat, equity = run([make_market(flat(100.0, 6), symbol=BTC), eth],
                        {BTC: [100] * 6, ETH: [-900] * 6}, broker)
    assert [paid for _, paid in broker.getcommissioninfo(strat.datas[1]).funding_log] == pytest.approx([-9.0])
    np.testing.assert_allclose(equity, [2_000, 1_990.5, 1_999.5, 1_999.5, 1_999.5, 1_999.5], atol=1e-9)
    assert [row["maintenance"][ETH] for row in broker.margin_log][2:] == pytest.approx([45.0] * 4)


def test_a_symbol_that_starts_later_joins_the_account_without_touching_it_before():
    # ETH's first candle is bar 2 of BTC's clock: no margin-log entry for it before, and once there it trades
    # (Backtrader calls the strategy's next only when every feed has a bar: the first orders go at bar 2's close)
    eth = make_market(flat(10.0, 4), symbol=ETH, start="2024-01-01 02:00")
    broker = make_portfolio_broker(CONFIG, RULES, "cross")
    strat, equity = run([make_market(flat(100.0, 6), symbol=BTC), eth], {BTC: [0, 0, 100, 100, 100, 100],
                                                                      ETH: [0, 0, -900, -900, -900, -900]}, broker)
    assert [set(row["maintenance"]) for row in broker.margin_log] == [{BTC}] * 2 + [{BTC, ETH}] * 4
    assert [f[:2] for f in fills(broker)] == [(BTC, 100.0), (ETH, -900.0)]
    np.testing.assert_allclose(equity, [2_000, 2_000, 2_000, 1_990.5, 1_990.5, 1_990.5], atol=1e-9)
    assert broker.wiped_out_at is None


@pytest.mark.parametrize("margin, filled", [("cross", True), ("isolated", False)])
def test_a_paper_gain_on_one_symbol_pays_a_new_margin_in_cross_only(margin, filled):
    # long 100 BTC at 100 (margin 1,000, fee 5), BTC closes at 120: +2,000 unrealised. ETH then buys 1,800 at 10
    # (margin 1,800, fee 9). Cross: available 1,995 + 2,000 - 1,000 = 2,995: filled. Isolated: BTC's gain stays
    # in its own margin, 1,995 - 1,000 = 995 available: refused (else a later BTC liquidation could leave the
    # wallet owing ETH's margin)
    broker = make_portfolio_broker(CONFIG, RULES, margin)
    strat, _ = run([make_market(flat(100.0, 2) + flat(120.0, 3), symbol=BTC), make_market(flat(10.0, 5), symbol=ETH)],
                   {BTC: [100] * 5, ETH: [0, 0, 1_800, 1_800, 1_800]}, broker)
    assert strat.getposition(strat.datas[1]).size == (1_800 if filled else 0)
    assert (strat.refused == []) if filled else (strat.refused[0] == (ETH, 2, "Margin"))


def test_the_available_balance_counts_other_isolated_positions_pnl_in_cross_only():
    positions = {BTC: Position(1, 10_000.0, 11_000.0), ETH: Position(10, 1_000.0, 900.0)}
    assert available_balance(10_000.0, positions, 5, "cross") == pytest.approx(6_000.0)
    assert available_balance(10_000.0, positions, 5, "isolated", ETH) == pytest.approx(5_000.0)
    assert available_balance(10_000.0, positions, 5, "isolated", BTC) == pytest.approx(7_000.0)


# ---------------------------------------------------------------- (e) one symbol = the single-symbol broker

def _wild_market(seed, n=60, symbol=BTC):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    opens = np.r_[100.0, close[:-1]]
    high = np.maximum(opens, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(opens, close) * (1 - rng.uniform(0, 0.01, n))
    wick = rng.random(n) < 0.08
    low[wick] *= 0.9
    high[rng.random(n) < 0.08] *= 1.1
    mark = np.c_[opens, high * (1 + 0.002), low * (1 - 0.002), close * (1 + rng.normal(0, 0.001, n))]
    mark[:, 1] = np.maximum(mark[:, 1], mark[:, [0, 3]].max(axis=1))
    mark[:, 2] = np.minimum(mark[:, 2], mark[:, [0, 3]].min(axis=1))
    rates = {int(i): float(r) for i, r in zip(rng.choice(np.arange(1, n), n // 6, replace=False),
                                                 rng.normal(0.0005, 0.002, n // 6))}
    return make_market(np.c_[opens, high, low, close], mark=mark, funding=rates, symbol=symbol)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_one_symbol_isolated_portfolio_is_the_single_symbol_broker_exactly(seed):
    market = _wild_market(seed)
    rng = np.random.default_rng(seed + 100)
    sizes = {BTC: np.round(rng.choice([-1, 0, 1], 60) * rng.uniform(50, 400, 60), 3).tolist()}
    config = BrokerConfig(cash=10_000.0, leverage=20, slippage="fixed", liquidation_model="binance")
    single, _ = make_broker(config, rules=RULES[BTC])
    single_strat, single_equity = run_single(market, sizes, single)
    portfolio = make_portfolio_broker(config, RULES, "isolated")
    strat, equity = run([market], sizes, portfolio)
    assert equity.tolist() == single_equity
    assert [{k: v for k, v in f.items() if k != "symbol"} for f in portfolio.fill_log] == single.fill_log
    assert any(f["kind"] == "liquidation" for f in single.fill_log) and single.fill_log
    single_funding = single.getcommissioninfo(single_strat.datas[0]).funding_log
    assert portfolio.getcommissioninfo(strat.datas[0]).funding_log == single_funding


def run_single(market, sizes, broker):
    values = []

    class Watch(Targets):
        def next(self):
            values.append(self.broker.getvalue())
            super().next()

    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    cerebro.adddata(FuturesData(market=market), name=market.symbol)
    cerebro.broker = broker
    cerebro.addstrategy(Watch, sizes=sizes)
    return cerebro.run()[0], values


# ---------------------------------------------------------------- (d) broker = reference, random paths

TICKED = {s: dataclasses.replace(r, price_tick=0.1, qty_step=0.001) for s, r in RULES.items()}


def _broker_against_reference(seed, margin, leverage, model, rules=RULES, scale=1.0):
    """Random targets (some beyond what the account can pay) on two wild markets: equity, margin balance and every
    fill agree with the reference accountant to 1e-9 of the peak account value. ``scale`` multiplies cash and
    sizes (large accounts reach the tiers where Binance liquidates partially)."""
    n = 40
    markets = [_wild_market(seed, n, BTC), _wild_market(seed + 1, n, ETH)]
    rng = np.random.default_rng(seed)
    sizes = {m.symbol: np.round(rng.choice([-1, 0, 0.5, 1], n) * rng.uniform(10, 60, n) * leverage / 5 * scale,
                                3).tolist()
             for m in markets}
    config = BrokerConfig(cash=10_000.0 * scale, leverage=leverage, slippage="fixed", liquidation_model=model)
    broker = make_portfolio_broker(config, rules, margin)
    strat, equity = run(markets, sizes, broker)
    ref = run_portfolio_reference({m.symbol: feed_arrays(m) for m in markets}, sizes, config, rules, margin)
    tol = 1e-9 * max(float(np.max(np.abs(equity))), config.cash)
    np.testing.assert_allclose(equity, ref.equity, rtol=0, atol=tol)
    np.testing.assert_allclose([r["margin_balance"] for r in broker.margin_log], ref.margin_balance, rtol=0, atol=tol)
    for s in (BTC, ETH):
        np.testing.assert_allclose([r["maintenance"][s] for r in broker.margin_log], ref.maintenance[s], atol=tol)
    assert [(f["symbol"], f["kind"]) for f in broker.fill_log] == [(f["symbol"], f["kind"]) for f in ref.fills]
    np.testing.assert_allclose([f["size"] for f in broker.fill_log], [f["size"] for f in ref.fills], rtol=1e-12)
    np.testing.assert_allclose([f["price"] for f in broker.fill_log], [f["price"] for f in ref.fills], rtol=1e-12)
    np.testing.assert_allclose([f["fee"] for f in broker.fill_log], [f["fee"] for f in ref.fills], rtol=0, atol=tol)
    assert [(r[0], r[1]) for r in strat.refused] == [(r["symbol"], r["bar"] - 1) for r in ref.rejected]
    by_symbol = broker.attribution_by_symbol()
    assert sum(a.total for a in by_symbol.values()) == pytest.approx(equity[-1] - config.cash, abs=tol)
    pnl = np.array([[row["pnl"][s] for s in (BTC, ETH)] for row in broker.margin_log])
    np.testing.assert_allclose(pnl.sum(axis=1), np.diff(equity, prepend=config.cash), rtol=0, atol=tol)
    np.testing.assert_allclose(pnl.sum(axis=0), [by_symbol[s].total for s in (BTC, ETH)], rtol=0, atol=tol)
    for s in (BTC, ETH):
        theirs = ref.attribution[s]
        for term in ("price", "fees_taker", "slippage", "funding", "liquidation"):
            assert getattr(by_symbol[s], term) == pytest.approx(getattr(theirs, term), abs=tol), (s, term)
    return broker


@pytest.mark.parametrize("seed, margin, leverage, model, ticked", [
    (0, "cross", 50, "binance", False), (6, "cross", 50, "flat", True), (3, "isolated", 50, "binance", True),
    (11, "isolated", 20, "flat", False)])
def test_broker_matches_the_portfolio_reference_through_liquidations(seed, margin, leverage, model, ticked):
    broker = _broker_against_reference(seed, margin, leverage, model, TICKED if ticked else RULES)
    assert any(f["kind"] == "liquidation" for f in broker.fill_log)


def test_broker_matches_the_portfolio_reference_through_partial_isolated_liquidations():
    # a 500x larger account at 10x reaches BTC's 2.5 % tier (1M to 10M USDT) where a liquidation first cuts the
    # position one tier down (backtests.margin.liquidation_steps); the portfolio keeps the single-symbol steps
    broker = _broker_against_reference(0, "isolated", 10, "binance", TICKED, scale=500.0)
    liquidations = [f for f in broker.fill_log if f["kind"] == "liquidation"]
    assert len({f["time"] for f in liquidations}) < len(liquidations)  # a bar with more than one step


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), margin=st.sampled_from(["isolated", "cross"]),
       leverage=st.sampled_from([1, 3, 10, 50]), model=st.sampled_from(["binance", "flat"]), ticked=st.booleans())
def test_broker_equity_matches_the_portfolio_reference_on_random_targets(seed, margin, leverage, model, ticked):
    _broker_against_reference(seed, margin, leverage, model, TICKED if ticked else RULES)


def test_make_portfolio_broker_refuses_an_unknown_margin_mode():
    with pytest.raises(ValueError, match="isolated, cross"):
        make_portfolio_broker(CONFIG, RULES, "portfolio")
    assert isinstance(make_portfolio_broker(CONFIG, RULES, "cross"), PortfolioBroker)
