"""The portfolio engine: several symbols on one clock, targets per symbol, the PortfolioBook it fills."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtests.config import BacktestConfig, BrokerConfig, DataConfig
from backtests.portfolio.data import PortfolioData, coverage, coverage_notice
from backtests.portfolio.engine import run_portfolio
from data_feeds import MarketData
from data_feeds.validate import find_gaps
from strategies.portfolio import PortfolioStrategy, normalised_weights
from tests.conftest import make_candles

A, B = "AAA/USDT:USDT", "BBB/USDT:USDT"
BARS = 48


def _market(symbol, candles, funding=None):
    funding = funding if funding is not None else pd.DataFrame({"funding_rate": []}, index=pd.DatetimeIndex([], tz="UTC"))
    return MarketData("binanceusdm", symbol, "1h", candles, funding, None, "hand-made", find_gaps(candles.index, "1h"))


def _late_and_gappy() -> PortfolioData:
    """A: every bar of 2024-01-01 00:00 .. 47:00. B: starts at bar 6, no candle at bars 20-22; funding for B at
    bar 16 (held), bar 21 (inside its gap: no candle, so never booked) and bar 24."""
    rng = np.random.default_rng(3)
    a = make_candles(100 * np.exp(np.cumsum(rng.normal(0, 0.01, BARS))))
    b = make_candles(50 * np.exp(np.cumsum(rng.normal(0, 0.01, BARS))))
    b = b.iloc[[i for i in range(BARS) if i >= 6 and not 20 <= i <= 22]]
    t = a.index
    fund = pd.DataFrame({"funding_rate": [0.001, 0.001, 0.001]}, index=pd.DatetimeIndex([t[16], t[21], t[24]]))
    return PortfolioData({A: _market(A, a), B: _market(B, b, fund)})


def _config(strategy="buy_hold", **kw) -> BacktestConfig:
    # fraction 0.8: B, bought six bars after A, must still find its half of the margin after A's moves
    kw.setdefault("fraction", 0.8)
    return BacktestConfig(strategy=strategy, symbols=(A, B), data=DataConfig(start="2024-01-01", end="2024-01-02"),
                          broker=BrokerConfig(leverage=2, **kw.pop("broker", {})), **kw)


class Alternate(PortfolioStrategy):
    """Long, short, long... on every symbol at every bar it has a candle: the most orders a strategy can send."""

    def target(self):
        return {s: (1.0 if len(self.feed(s)) % 2 else -1.0) for s in self.symbols if self.has_candle(s)}


def test_coverage_names_late_start_and_gap():
    data = _late_and_gappy()
    cover = coverage(data.markets[B].candles.index, data.index)
    t = data.index
    assert cover["first"] == t[6] and cover["last"] == t[-1] and cover["missing_bars"] == 9
    assert cover["gaps"] == [[t[0], t[5]], [t[20], t[22]]]
    line = coverage_notice({A: coverage(t, t), B: cover})
    assert line.startswith("coverage: AAA/USDT:USDT every bar; BBB/USDT:USDT from 2024-01-01 06:00, 9 bar(s)")
    assert "\n" not in line


def test_late_symbol_and_gap_are_never_filled_nor_traded():
    data = _late_and_gappy()
    result = run_portfolio(_config(), data=data)
    book = result.portfolio
    t = data.index
    assert len(result.equity) == BARS and list(book.symbols) == [A, B]
    missing = list(range(6)) + [20, 21, 22]
    assert book.prices[B]["close"].iloc[missing].isna().all()              # no made-up price
    assert book.prices[B]["close"].drop(t[missing]).notna().all()
    assert book.notional[B].iloc[missing].isna().all()
    fills = result.fills
    assert set(fills["symbol"]) == {A, B}
    assert fills.loc[fills["symbol"] == B, "time"].tolist() == [t[7]]       # bought at its first close, next open
    assert fills.loc[fills["symbol"] == A, "time"].tolist() == [t[1]]
    held = book.position[B]
    assert (held.iloc[7:] == held.iloc[-1]).all() and held.iloc[-1] > 0       # held through its gap
    # funding: the settlement inside B's gap has no bar and is not booked, the other two are, once each
    paid = result.funding[result.funding != 0]
    assert list(paid.index) == [t[16], t[24]]
    assert book.coverage[B]["missing_bars"] == 9 and "BBB/USDT:USDT from" in result.data_span["notices"][0]


def test_orders_only_on_bars_with_the_symbols_candle():
    data = _late_and_gappy()
    result = run_portfolio(_config(), strategy=Alternate, data=data)
    have_b = data.markets[B].candles.index
    b_fills = result.fills[result.fills["symbol"] == B]
    assert len(b_fills) > 10 and b_fills["time"].isin(have_b).all()
    # the fill after the gap is the order decided on B's last candle before it (bar 19), at B's next open (bar 23)
    t = data.index
    assert t[23] in set(b_fills["time"]) and not set(b_fills["time"]) & {t[20], t[21], t[22]}
    changes = result.portfolio.target[B].diff().fillna(result.portfolio.target[B]) != 0
    assert changes[changes].index.isin(have_b).all()


@pytest.mark.parametrize("strategy", ["buy_hold", Alternate])
def test_book_sums_to_the_account(strategy):
    data = _late_and_gappy()
    result = run_portfolio(_config(), strategy=strategy, data=data)
    book = result.portfolio
    change = result.equity.diff()
    change.iloc[0] = result.equity.iloc[0] - result.initial_cash
    assert np.allclose(book.pnl.sum(axis=1), change, atol=1e-8)
    assert book.attribution.to_numpy().sum() == pytest.approx(result.final_equity - result.initial_cash, abs=1e-8)
    assert list(book.attribution.index) == [A, B]
    for frame in (book.position, book.notional, book.target, book.pnl, book.maintenance):
        assert list(frame.columns) == [A, B] and frame.index.equals(result.equity.index)
    assert (book.margin_ratio >= 0).all() and book.margin_mode == "isolated"
    assert {"symbol"} <= set(result.trades.columns) and {"symbol"} <= set(result.rejected.columns)
    assert book.weights == {A: 0.5, B: 0.5}


def test_sizing_by_weight_of_equity_times_leverage():
    data = _late_and_gappy()
    result = run_portfolio(_config(weights={A: 3, B: 1}, broker={"slippage_bps": 0.0}), data=data)
    a_fill = result.fills[result.fills["symbol"] == A].iloc[0]
    close0 = data.markets[A].candles["close"].iloc[0]
    wanted = 0.75 * 0.8 * 10_000 * 2 / (1 + 2 * 0.0005) / close0
    assert a_fill["size"] == pytest.approx(wanted, rel=1e-9)       # no quantity step in default rules
    assert normalised_weights([A, B], {A: 3, B: 1}) == {A: 0.75, B: 0.25}


def test_cross_margin_needs_the_portfolio_account_or_runs():
    data = _late_and_gappy()
    try:
        import backtests.portfolio.broker  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ValueError, match="cross needs the portfolio account"):
            run_portfolio(_config(margin="cross"), data=data)
        return
    result = run_portfolio(_config(margin="cross"), data=data)
    book = result.portfolio
    assert book.margin_mode == "cross"
    expected = (book.maintenance.sum(axis=1) / book.margin_balance).where(book.maintenance.sum(axis=1) > 0, 0.0)
    assert np.allclose(book.margin_ratio, expected)


def test_single_symbol_strategy_is_refused_with_one_line():
    with pytest.raises(ValueError, match="trades one symbol"):
        run_portfolio(_config(strategy="sma_cross"), data=_late_and_gappy())


def test_shipped_btc_eth_pair_trade_and_buy_hold():
    from strategies.examples.pairs_trade import PairTrade

    config = BacktestConfig(strategy="buy_hold", symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"),
                            data=DataConfig(start="2025-02-01", end="2025-02-14"), broker=BrokerConfig(leverage=3))
    hold = run_portfolio(config)
    pair = run_portfolio(config, strategy=PairTrade)
    assert hold.symbol == "BTC/USDT:USDT+ETH/USDT:USDT" and len(hold.fills) == 3
    # 3 February 2025: ETH fell about 25 % within hours; the 3x isolated ETH long is liquidated, BTC's is not
    liq = hold.portfolio.liquidations
    assert list(liq["symbol"]) == ["ETH/USDT:USDT"] and liq["time"].iloc[0] == pd.Timestamp("2025-02-03 02:00", tz="UTC")
    assert liq["loss"].iloc[0] > 0 and hold.portfolio.position["BTC/USDT:USDT"].iloc[-1] > 0
    longs_shorts = pair.portfolio.target[pair.portfolio.target.abs().sum(axis=1) > 0]
    assert len(longs_shorts) and (longs_shorts.sum(axis=1) == 0).all()       # always long one, short the other
    for r in (hold, pair):
        assert r.portfolio.attribution.to_numpy().sum() == pytest.approx(r.final_equity - r.initial_cash, abs=1e-6)
        assert r.portfolio.coverage["ETH/USDT:USDT"]["missing_bars"] == 0
