"""run_backtest on the shipped data and on hand-made candles: timing, sizing, fees, funding, results."""

import numpy as np
import pandas as pd
import pytest

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from backtests.engine import load_run_data
from data_feeds import MarketData
from data_feeds.feed import FuturesData, feed_arrays, funding_per_bar
from conftest import make_candles

SPAN = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-31")


def _market(candles, funding=None, timeframe="1h") -> MarketData:
    if funding is None:
        funding = pd.DataFrame({"funding_rate": []}, index=pd.DatetimeIndex([], tz="UTC"))
    return MarketData("test", "TEST/USDT:USDT", timeframe, candles, funding, None, "hand-made")


def _run(candles, strategy, funding=None, **broker):
    config = BacktestConfig(strategy=strategy, data=DataConfig(start=str(candles.index[0]), end=str(candles.index[-1])),
                            broker=BrokerConfig(**broker))
    return run_backtest(config, market=_market(candles, funding))


def test_flat_ends_with_exactly_the_starting_cash():
    result = run_backtest(BacktestConfig(strategy="flat", data=SPAN))
    assert (result.equity == 10_000.0).all()
    assert result.fills.empty and result.trades.empty
    assert result.fees_paid == 0.0 and result.funding_paid == 0.0


def test_buy_hold_at_1x_tracks_price_minus_fees_and_funding():
    result = run_backtest(BacktestConfig(strategy="buy_hold", data=SPAN))
    assert len(result.fills) == 1
    fill = result.fills.iloc[0]
    # decided on the first bar's close, filled at the second bar's open plus 1 bp slippage
    assert fill.time == result.prices.index[1]
    assert fill.price == pytest.approx(result.prices.open.iloc[1] * 1.0001)
    # margin + fee + slippage = 99 % of equity at the deciding close, rounded down to BTCUSDT's 0.001 step
    notional = 0.99 * 10_000 / (1 + 0.0005 + 0.0001)
    assert fill["size"] == pytest.approx(np.floor(notional / result.prices.close.iloc[0] / 0.001) * 0.001)
    assert fill.fee == pytest.approx(fill["size"] * fill.price * 0.0005)
    expected = (10_000 - fill.fee - result.funding.cumsum()
                + fill["size"] * (result.prices.close - fill.price))
    np.testing.assert_allclose(result.equity.iloc[1:], expected.iloc[1:], rtol=1e-12)
    # BTC funding was positive in March 2024: the long paid it, every 8 hours
    paid = result.funding[result.funding != 0]
    assert len(paid) == 3 * 31 - 1 and (paid > 0).all()  # every settlement of March after the entry


def test_funding_is_size_times_mark_times_rate_at_settlement():
    candles = make_candles([100, 100, 100, 100, 100, 100])
    funding = pd.DataFrame({"funding_rate": [0.001]}, index=[candles.index[3]])
    result = _run(candles, "buy_hold", funding, slippage_bps=0)
    size = result.position.iloc[2]
    assert size == pytest.approx(0.99 * 10_000 / (1 + 0.0005) / 100, abs=0.001)  # margin + fee = 99 % of equity
    assert result.funding.iloc[3] == pytest.approx(size * 100 * 0.001)
    assert result.funding.drop(result.funding.index[3]).eq(0).all()


def test_short_receives_positive_funding():
    candles = make_candles([100, 100, 100, 100, 100, 100])
    funding = pd.DataFrame({"funding_rate": [0.001]}, index=[candles.index[4]])
    config = BacktestConfig(strategy="sma_cross", params={"fast": 1, "slow": 2},
                            data=DataConfig(start="2024-01-01", end="2024-01-01T05:00"),
                            broker=BrokerConfig(slippage_bps=0))
    result = run_backtest(config, market=_market(candles, funding))
    # fast == slow -> not above -> SHORT from bar 1's close, filled at bar 2's open
    assert result.position.iloc[3] < 0
    assert result.funding.iloc[4] == pytest.approx(result.position.iloc[3] * 100 * 0.001)
    assert result.funding.iloc[4] < 0


def test_decision_on_close_fills_at_next_open_with_slippage_against_the_order():
    candles = make_candles([100, 101, 102, 103, 104])
    result = _run(candles, "buy_hold", slippage_bps=10)
    fill = result.fills.iloc[0]
    assert fill.time == candles.index[1]
    assert fill.price == pytest.approx(candles.open.iloc[1] * 1.001)
    assert fill.slippage == pytest.approx(fill["size"] * candles.open.iloc[1] * 0.001)
    assert result.position.iloc[0] == 0 and result.position.iloc[1] == pytest.approx(fill["size"])


def test_high_leverage_leaves_room_for_the_opening_fee_instead_of_being_refused():
    # BTC-like prices: the 1 bp slipped fill (60,006.0) lies on BTCUSDT's 0.1 tick grid
    candles = make_candles([60_000, 60_000, 60_300, 60_600, 60_600])
    # at 20x the fee and slippage (0.06 % of notional) are 1.2 % of equity: more than a 1 % buffer
    result = _run(candles, "buy_hold", leverage=20, cash=100_000)   # 1.98M notional: inside the 20x tier
    assert result.rejected.empty and len(result.fills) == 1
    fill = result.fills.iloc[0]
    margin = fill["notional"] / 20
    assert margin + fill.fee + fill.slippage == pytest.approx(0.99 * 100_000, rel=1e-3)


def test_leverage_scales_position_and_pnl():
    candles = make_candles([100, 100, 110, 110])
    one = _run(candles, "buy_hold", slippage_bps=0, taker_fee=0)
    five = _run(candles, "buy_hold", slippage_bps=0, taker_fee=0, leverage=5)
    assert five.fills["size"].iloc[0] == pytest.approx(5 * one.fills["size"].iloc[0])
    assert one.final_equity - 10_000 == pytest.approx(one.fills["size"].iloc[0] * 10)
    assert five.final_equity - 10_000 == pytest.approx(5 * (one.final_equity - 10_000))


def test_trades_and_fills_sum_to_the_equity_change():
    result = run_backtest(BacktestConfig(strategy="sma_cross", data=SPAN, params={"fast": 5, "slow": 20}))
    assert len(result.trades) > 5
    assert result.initial_cash + result.trades.pnl.sum() == pytest.approx(result.final_equity, rel=1e-12)
    assert result.trades.fees.sum() == pytest.approx(result.fees_paid, rel=1e-12)
    assert result.trades.funding.sum() == pytest.approx(result.funding_paid, rel=1e-9, abs=1e-9)


def test_same_config_twice_gives_identical_results():
    a = run_backtest(BacktestConfig(strategy="sma_cross", data=SPAN))
    b = run_backtest(BacktestConfig(strategy="sma_cross", data=SPAN))
    pd.testing.assert_series_equal(a.equity, b.equity)
    pd.testing.assert_frame_equal(a.fills, b.fills)


def test_feed_serves_every_column_and_funding_on_the_settlement_bar():
    market, _, _ = load_run_data(BacktestConfig(strategy="flat", data=SPAN))
    arrays = feed_arrays(market)
    np.testing.assert_array_equal(arrays["close"], market.candles.close.to_numpy())
    settled = market.candles.index[arrays["funding_rate"] != 0]
    booked = market.funding[market.funding.index >= market.candles.index[0]]  # not the one before the span
    assert set(settled.hour) == {0, 8, 16} and len(settled) == len(booked)
    np.testing.assert_array_equal(arrays["mark_close"], market.mark.close.to_numpy())


def test_funding_per_bar_sums_settlements_inside_long_bars():
    days = pd.date_range("2024-01-01", periods=2, freq="1D", tz="UTC")
    settle = pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC")
    funding = pd.DataFrame({"funding_rate": [1, 2, 3, 4, 5, 6]}, index=settle, dtype="float64")
    np.testing.assert_array_equal(funding_per_bar(days, funding, "1d"), [6.0, 15.0])
