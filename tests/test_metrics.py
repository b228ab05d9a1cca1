"""Metrics: golden values worked out by hand on tiny curves, edge cases, and a peer check against quantstats."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data_feeds import load
from reports import ReportError, buy_and_hold_equity, compute_metrics, drawdown, monthly_returns
from reports.metrics import bar_returns, equity_metrics

HOURLY = 8760  # bars in a 365-day year of a 24/7 market


def hourly(values, start="2024-01-01") -> pd.Series:
    return pd.Series(np.asarray(values, dtype="float64"),
                     index=pd.date_range(start, periods=len(values), freq="h", tz="UTC"))


def no_trades() -> pd.DataFrame:
    return pd.DataFrame()


def trades_frame(pnl, return_pct, bars) -> pd.DataFrame:
    return pd.DataFrame({"pnl": pnl, "return_pct": return_pct, "bars": bars})


# ---------------------------------------------------------------- golden values

def test_return_risk_and_drawdown_match_hand_computed_values():
    # equity 100 -> 110 -> 99 -> 108.9: bar returns +0.1, -0.1, +0.1
    m = compute_metrics(hourly([100, 110, 99, 108.9]), no_trades(), "1h")
    # mean = 0.1/3 = 1/30; deviations 2/30, -4/30, 2/30 -> var(ddof=1) = (4+16+4)/900/2 = 1/75
    assert m["Return [%]"] == pytest.approx(8.9, rel=1e-12)
    assert m["Volatility (ann.) [%]"] == pytest.approx(math.sqrt(HOURLY / 75) * 100, rel=1e-12)
    assert m["Sharpe"] == pytest.approx((1 / 30) * math.sqrt(75) * math.sqrt(HOURLY), rel=1e-12)
    # downside deviation = sqrt(mean([0, 0.01, 0])) = 0.1 / sqrt(3) -> Sortino = (1/30) / (0.1/sqrt 3) * sqrt(P)
    assert m["Sortino"] == pytest.approx(math.sqrt(3) / 3 * math.sqrt(HOURLY), rel=1e-12)
    # peak 110, trough 99: 99/110 - 1 = -10 %; 99 and 108.9 are both under 110 -> 2 bars = 2 hours
    assert m["Max drawdown [%]"] == pytest.approx(-10.0, rel=1e-12)
    assert m["Max drawdown duration [bars]"] == 2
    assert m["Max drawdown duration [days]"] == pytest.approx(2 / 24, rel=1e-12)
    assert m["Bars"] == 4 and m["Start"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert m["Final equity [USDT]"] == 108.9 and m["Peak equity [USDT]"] == 110.0


def test_cagr_uses_elapsed_time_in_365_day_years():
    # 731 daily closes from 2023-01-01 to 2024-12-31: 730 days = exactly 2 years of 365 days; 100 -> 121
    index = pd.date_range("2023-01-01", "2024-12-31", freq="D", tz="UTC")
    equity = pd.Series(np.linspace(100, 121, len(index)), index=index)
    m = compute_metrics(equity, no_trades(), "1d")
    assert m["Duration [days]"] == 730
    assert m["CAGR [%]"] == pytest.approx((math.sqrt(1.21) - 1) * 100, rel=1e-12)   # 10 % a year
    # linear growth never draws down -> Calmar undefined
    assert m["Max drawdown [%]"] == 0 and math.isnan(m["Calmar"])


def test_initial_cash_counts_as_one_bar_before_the_first_close():
    # 730 daily closes from 2023-01-02; initial cash sits one day earlier -> again 730 days, 100 -> 121
    index = pd.date_range("2023-01-02", "2024-12-31", freq="D", tz="UTC")
    equity = pd.Series(np.linspace(101, 121, len(index)), index=index)
    m = compute_metrics(equity, no_trades(), "1d", initial_cash=100.0)
    assert m["Initial equity [USDT]"] == 100.0
    assert m["Return [%]"] == pytest.approx(21.0, rel=1e-12)
    assert m["CAGR [%]"] == pytest.approx(10.0, rel=1e-12)


def test_a_loss_on_the_first_bar_is_a_drawdown_from_the_initial_cash():
    m = compute_metrics(hourly([90, 95]), no_trades(), "1h", initial_cash=100.0)
    assert m["Max drawdown [%]"] == pytest.approx(-10.0)           # 90 / 100 - 1
    assert m["Max drawdown duration [bars]"] == 2                  # 90 and 95 are both under 100
    assert m["Calmar"] == pytest.approx(m["CAGR [%]"] / 100 / 0.10)


def test_trade_statistics_match_hand_computed_values():
    trades = trades_frame(pnl=[50.0, -20.0, 30.0, -10.0], return_pct=[5.0, -2.0, 3.0, -1.0], bars=[10, 5, 3, 2])
    m = compute_metrics(hourly([100, 101, 102]), trades, "1h", fees=12.5, funding=-3.25)
    assert m["Trades"] == 4
    assert m["Win rate [%]"] == 50.0                               # 2 of 4 made money
    assert m["Profit factor"] == pytest.approx(80 / 30)            # (50 + 30) / (20 + 10)
    assert (m["Best trade [%]"], m["Worst trade [%]"], m["Avg trade [%]"]) == (5.0, -2.0, 1.25)
    assert m["Avg trade PnL [USDT]"] == 12.5                       # 50 / 4
    assert m["Avg trade duration [bars]"] == 5.0                   # 20 / 4
    assert (m["Fees paid [USDT]"], m["Funding paid [USDT]"]) == (12.5, -3.25)


def test_profit_factor_is_infinite_without_a_losing_trade():
    m = compute_metrics(hourly([100, 101]), trades_frame([10.0, 5.0], [1.0, 0.5], [1, 1]), "1h")
    assert m["Profit factor"] == math.inf and m["Win rate [%]"] == 100.0


def test_exposure_is_the_share_of_bars_with_a_position_and_float_residue_is_flat():
    position = hourly([0.0, 0.5, 0.5, -0.25, 1e-15])
    m = compute_metrics(hourly([100] * 5), no_trades(), "1h", position=position)
    assert m["Exposure [%]"] == pytest.approx(60.0)
    assert math.isnan(compute_metrics(hourly([100] * 5), no_trades(), "1h")["Exposure [%]"])


def test_no_row_restates_buy_and_hold_from_the_closes():
    # buy-and-hold is its own column (a 1x run with fees and funding), never a close-to-close row that could
    # contradict it
    m = compute_metrics(hourly([100, 105]), no_trades(), "1h", close=hourly([40_000, 42_000]))
    assert not any("buy" in k.lower() or "b&h" in k.lower() for k in m.index)


# ---------------------------------------------------------------- edge cases

def test_flat_equity_gives_undefined_ratios_not_a_crash():
    m = compute_metrics(hourly([10_000] * 50), no_trades(), "1h")
    assert m["Return [%]"] == 0 and m["CAGR [%]"] == 0 and m["Volatility (ann.) [%]"] == 0
    assert math.isnan(m["Sharpe"]) and math.isnan(m["Sortino"]) and math.isnan(m["Calmar"])
    assert m["Max drawdown [%]"] == 0 and m["Max drawdown duration [bars]"] == 0


def test_no_trades_gives_zero_count_and_nan_trade_statistics():
    for trades in (pd.DataFrame(), pd.DataFrame(columns=["pnl", "return_pct", "bars"])):
        m = compute_metrics(hourly([100, 101]), trades, "1h")
        assert m["Trades"] == 0
        assert all(math.isnan(m[k]) for k in ("Win rate [%]", "Profit factor", "Avg trade [%]", "Best trade [%]"))


def test_one_bar_is_reported_with_undefined_risk_figures():
    m = compute_metrics(hourly([100]), no_trades(), "1h")
    assert m["Bars"] == 1 and m["Return [%]"] == 0
    assert math.isnan(m["Sharpe"]) and math.isnan(m["Volatility (ann.) [%]"]) and math.isnan(m["CAGR [%]"])
    with_cash = compute_metrics(hourly([110]), no_trades(), "1h", initial_cash=100.0)
    assert with_cash["Return [%]"] == pytest.approx(10.0) and math.isnan(with_cash["Sharpe"])
    assert with_cash["CAGR [%]"] > 0


def test_a_wiped_out_account_reports_minus_100_percent():
    m = compute_metrics(hourly([100, 50, 0, 0]), no_trades(), "1h")
    assert m["Return [%]"] == -100 and m["CAGR [%]"] == -100 and m["Max drawdown [%]"] == -100


def test_a_big_gain_over_hours_annualises_to_infinity_without_an_error():
    assert compute_metrics(hourly([100, 200, 400]), no_trades(), "1h")["CAGR [%]"] == math.inf


@pytest.mark.parametrize("equity, message", [
    (hourly([100, np.nan]), "NaN"),
    (hourly([]), "empty"),
    (pd.Series([100.0, 101.0]), "DatetimeIndex"),
])
def test_unusable_equity_is_refused_with_a_one_line_message(equity, message):
    with pytest.raises(ReportError, match=message):
        compute_metrics(equity, no_trades(), "1h")


def test_trades_without_pnl_and_unknown_timeframes_are_refused():
    with pytest.raises(ReportError, match="pnl"):
        compute_metrics(hourly([100, 101]), pd.DataFrame({"size": [1.0]}), "1h")
    with pytest.raises(ValueError, match="timeframe"):
        compute_metrics(hourly([100, 101]), no_trades(), "7h")
    with pytest.raises(ReportError, match="initial_cash"):
        compute_metrics(hourly([100, 101]), no_trades(), "1h", initial_cash=0.0)


# ---------------------------------------------------------------- helpers

def test_bar_returns_start_from_initial_cash_when_given():
    assert bar_returns(hourly([100, 110, 99])).tolist() == pytest.approx([0.10, -0.10])
    assert bar_returns(hourly([110, 99]), initial_cash=100).tolist() == pytest.approx([0.10, -0.10])


def test_drawdown_is_the_fraction_below_the_running_peak():
    assert drawdown(hourly([100, 120, 90, 130])).tolist() == [0.0, 0.0, -0.25, 0.0]


def test_buy_and_hold_equity_scales_closes_to_the_initial_cash():
    assert buy_and_hold_equity(hourly([100, 110, 90]), 10_000).tolist() == pytest.approx([10_000, 11_000, 9_000])
    with pytest.raises(ReportError):
        buy_and_hold_equity(hourly([0.0, 1.0]), 10_000)


def test_monthly_returns_chain_month_ends_into_a_year_by_month_table():
    index = pd.date_range("2024-01-01", "2024-02-29 23:00", freq="h", tz="UTC")
    equity = pd.Series(100.0, index=index)
    equity[index.month == 1] = np.linspace(100, 110, (index.month == 1).sum())   # ends January at 110
    equity.iloc[-1] = 99.0                                                      # ends February at 99
    table = monthly_returns(equity)
    assert list(table.index) == [2024] and list(table.columns) == list(range(1, 13))
    assert table.loc[2024, 1] == pytest.approx(0.10) and table.loc[2024, 2] == pytest.approx(-0.10)
    assert table.loc[2024, 3:].isna().all()
    assert monthly_returns(equity, initial_cash=50.0).loc[2024, 1] == pytest.approx(110 / 50 - 1)


def test_monthly_returns_span_year_boundaries():
    equity = pd.Series([100.0, 120.0, 90.0], index=pd.DatetimeIndex(
        ["2023-12-01", "2023-12-31", "2024-01-31"], tz="UTC"))
    table = monthly_returns(equity)
    assert table.loc[2023, 12] == pytest.approx(0.2) and table.loc[2024, 1] == pytest.approx(-0.25)


# ---------------------------------------------------------------- peer check against quantstats

def _peer(returns: pd.Series, periods: float) -> dict[str, float]:
    qs = pytest.importorskip("quantstats")
    return {
        "Sharpe": qs.stats.sharpe(returns, periods=periods),
        "Sortino": qs.stats.sortino(returns, periods=periods),
        "Volatility (ann.) [%]": qs.stats.volatility(returns, periods=periods) * 100,
        "Max drawdown [%]": qs.stats.max_drawdown(returns) * 100,
        "CAGR [%]": qs.stats.cagr(returns, periods=periods) * 100,
        "Calmar": qs.stats.calmar(returns, periods=periods),
    }


def test_metrics_agree_with_quantstats_on_a_synthetic_curve():
    rng = np.random.default_rng(7)
    equity = hourly(10_000 * np.cumprod(1 + rng.normal(0.0002, 0.01, 2000)))
    ours = compute_metrics(equity, no_trades(), "1h", initial_cash=10_000.0)
    # with initial cash, CAGR's elapsed time (2000 h) equals quantstats' len(returns) / periods years
    for key, value in _peer(bar_returns(equity, initial_cash=10_000.0), HOURLY).items():
        assert ours[key] == pytest.approx(value, rel=1e-9), key


def test_metrics_agree_with_quantstats_on_real_btc_hourly_closes():
    close = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-12-31")["close"]
    ours = equity_metrics(close, "1h")
    for key, value in _peer(bar_returns(close), HOURLY).items():
        assert ours[key] == pytest.approx(value, rel=1e-9), key
