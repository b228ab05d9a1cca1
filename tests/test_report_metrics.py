"""The report's extra metrics: long/short split, streaks, holding time, best/worst month, turnover; by hand and
against quantstats (periods passed explicitly) where quantstats has the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reports import compute_metrics
from reports.metrics import bar_returns
from reports.trade_metrics import longest_streak, trade_metrics, traded_notional

HOURLY = 8760


def hourly(values, start="2024-01-01") -> pd.Series:
    return pd.Series(np.asarray(values, dtype="float64"),
                     index=pd.date_range(start, periods=len(values), freq="h", tz="UTC"))


def trades_of(pnl, direction, hours=None) -> pd.DataFrame:
    """Trades with a 1,000 USDT notional each (return_pct = pnl / 10), entries a day apart."""
    n = len(pnl)
    entry = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    hours = hours if hours is not None else [1] * n
    return pd.DataFrame({"entry_time": entry, "exit_time": entry + pd.to_timedelta(hours, unit="h"),
                         "direction": direction, "bars": hours, "pnl": np.asarray(pnl, dtype="float64"),
                         "return_pct": np.asarray(pnl, dtype="float64") / 10})


def test_longest_streak_counts_the_longest_run_of_true():
    assert longest_streak(np.array([1, 1, 0, 1, 1, 1], dtype=bool)) == 3
    assert longest_streak(np.array([], dtype=bool)) == 0
    assert longest_streak(np.zeros(4, dtype=bool)) == 0


def test_trade_statistics_split_long_and_short_and_count_streaks_by_hand():
    m = trade_metrics(trades_of([10, 5, -3, -2, -1, 4], [1, 1, -1, 1, -1, -1], hours=[2, 4, 6, 8, 10, 12]))
    assert m["Trades"] == 6 and m["Win rate [%]"] == 50.0
    assert m["Max consecutive wins"] == 2 and m["Max consecutive losses"] == 3
    assert m["Long trades"] == 3 and m["Short trades"] == 3
    assert m["Long win rate [%]"] == pytest.approx(200 / 3) and m["Short win rate [%]"] == pytest.approx(100 / 3)
    assert m["Long PnL [USDT]"] == 13.0 and m["Short PnL [USDT]"] == 0.0
    assert m["Long avg trade [%]"] == pytest.approx(1.3 / 3) and m["Short avg trade [%]"] == 0.0
    assert m["Avg holding time [hours]"] == 7.0 and m["Avg trade duration [bars]"] == 7.0
    assert m["Avg win [%]"] == pytest.approx(19 / 30) and m["Avg loss [%]"] == pytest.approx(-0.2)


def test_a_zero_pnl_trade_breaks_both_streaks():
    m = trade_metrics(trades_of([1, 0, 1, -1, 0, -1], [1] * 6))
    assert m["Max consecutive wins"] == 1 and m["Max consecutive losses"] == 1


def test_no_trades_gives_zero_counts_and_undefined_averages():
    m = trade_metrics(pd.DataFrame())
    assert m["Trades"] == 0 and m["Long trades"] == 0 and m["Max consecutive wins"] == 0
    assert np.isnan(m["Avg holding time [hours]"]) and np.isnan(m["Long win rate [%]"])
    assert m["Long PnL [USDT]"] == 0.0


def test_turnover_is_traded_notional_per_mean_equity_per_year():
    # a constant 10,000 USDT account trading 4 x 50,000 USDT over half a year (4,380 h) turns over 40x a year
    equity = hourly(np.full(4380, 10_000.0))
    fills = pd.DataFrame({"size": [1.0, -1.0, -1.0, 1.0], "price": 50_000.0, "notional": 50_000.0})
    m = compute_metrics(equity, pd.DataFrame(), "1h", fills=fills, initial_cash=10_000.0)
    assert m["Traded notional [USDT]"] == 200_000.0
    assert m["Turnover (ann.) [x]"] == pytest.approx(40.0)
    assert traded_notional(fills.drop(columns="notional")) == 200_000.0
    assert compute_metrics(equity, pd.DataFrame(), "1h")["Turnover (ann.) [x]"] == 0.0


def test_best_and_worst_month_are_calendar_months_from_the_initial_cash():
    equity = pd.Series([110.0, 99.0, 99.0], index=pd.DatetimeIndex(["2024-01-31", "2024-02-29", "2024-03-31"],
                                                                   tz="UTC"))
    m = compute_metrics(equity, pd.DataFrame(), "1d", initial_cash=100.0)
    assert m["Best month [%]"] == pytest.approx(10.0) and m["Worst month [%]"] == pytest.approx(-10.0)


# ---------------------------------------------------------------- peer check against quantstats

def test_streaks_win_averages_and_months_agree_with_quantstats():
    qs = pytest.importorskip("quantstats")
    rng = np.random.default_rng(11)
    equity = hourly(10_000 * np.cumprod(1 + rng.normal(0.0001, 0.01, 24 * 200)))     # 200 days: 7 months
    pnl = np.round(rng.normal(1, 10, 120), 1)
    trades = trades_of(pnl, np.where(rng.random(120) > 0.5, 1, -1))
    ours = compute_metrics(equity, trades, "1h", initial_cash=10_000.0)

    r = bar_returns(equity, initial_cash=10_000.0)
    assert ours["Best month [%]"] == pytest.approx(qs.stats.best(r, aggregate="ME") * 100, rel=1e-9)
    assert ours["Worst month [%]"] == pytest.approx(qs.stats.worst(r, aggregate="ME") * 100, rel=1e-9)
    assert ours["Sharpe"] == pytest.approx(qs.stats.sharpe(r, periods=HOURLY), rel=1e-9)

    per_trade = pd.Series(trades["return_pct"].to_numpy() / 100, index=trades["exit_time"])
    assert ours["Max consecutive wins"] == qs.stats.consecutive_wins(per_trade)
    assert ours["Max consecutive losses"] == qs.stats.consecutive_losses(per_trade)
    assert ours["Win rate [%]"] == pytest.approx(qs.stats.win_rate(per_trade) * 100, rel=1e-12)
    assert ours["Avg win [%]"] == pytest.approx(qs.stats.avg_win(per_trade) * 100, rel=1e-12)
    assert ours["Avg loss [%]"] == pytest.approx(qs.stats.avg_loss(per_trade) * 100, rel=1e-12)
    assert ours["Max consecutive wins"] >= 2 and ours["Max consecutive losses"] >= 2    # the check is not vacuous
