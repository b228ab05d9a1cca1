"""The report's analysis charts and the series behind them: fill roles, PnL by source, rolling Sharpe, exposure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reports.analysis_charts import (attribution_chart, exposure_chart, net_exposure, rolling_chart,
                                     rolling_sharpe_volatility, rolling_window, trade_distribution_chart)
from reports.charts import COLORS, fill_roles, predictions_chart
from reports.pnl_sources import SOURCES, pnl_by_source, period_rule


def hourly(values, start="2024-01-01") -> pd.Series:
    return pd.Series(np.asarray(values, dtype="float64"),
                     index=pd.date_range(start, periods=len(values), freq="h", tz="UTC"))


def test_fills_that_open_or_flip_are_entries_and_fills_that_reduce_are_exits():
    fills = pd.DataFrame({"size": [1.0, -2.0, 0.5, 0.5, 1.0, -1.0], "kind": ["market"] * 5 + ["liquidation"]})
    assert list(fill_roles(fills)) == ["entry", "entry", "exit", "exit", "entry", "liquidation"]


def test_pnl_by_source_splits_each_bar_and_sums_to_the_equity_change():
    # buy 1 at 100 (open 99.9, fee 0.05) on bar 1, sell at 109.9 (open 110, fee 0.05) on bar 3; funding 0.3 on bar 2
    equity = hourly([1000.0, 1000.0, 1004.0, 1009.5])
    fills = pd.DataFrame({"time": equity.index[[1, 3]], "size": [1.0, -1.0], "price": [100.0, 109.9],
                          "fee": [0.05, 0.05], "slippage": [0.1, 0.1], "kind": "market"})
    funding = hourly([0.0, 0.0, 0.3, 0.0])
    got = pnl_by_source(equity, fills, funding, 1000.0)
    assert list(got.columns) == list(SOURCES)
    assert got["fees"].tolist() == [0.0, -0.05, 0.0, -0.05]
    assert got["slippage"].tolist() == [0.0, -0.1, 0.0, -0.1]
    assert got["funding"].tolist() == [0.0, 0.0, -0.3, 0.0]
    assert got.sum(axis=1).to_numpy() == pytest.approx(np.diff(np.r_[1000.0, equity.to_numpy()]))
    assert got["liquidation"].eq(0).all()


def test_a_liquidation_counts_its_realised_loss_and_fee_as_liquidation():
    equity = hourly([1000.0, 1000.0, 900.0])
    fills = pd.DataFrame({"time": equity.index[[0, 2]], "size": [2.0, -2.0], "price": [100.0, 60.0],
                          "fee": [0.0, 1.5], "slippage": [0.0, 0.0], "kind": ["market", "liquidation"]})
    got = pnl_by_source(equity, fills, hourly([0.0, 0.0, 0.0]), 1000.0)
    assert got["liquidation"].iloc[2] == pytest.approx(2 * (60 - 100) - 1.5)
    assert got["fees"].sum() == 0.0


def test_pnl_by_source_totals_match_the_engine_attribution():
    from backtests import BacktestConfig
    from backtests.config import DataConfig
    from backtests.engine import run_backtest

    result = run_backtest(BacktestConfig(strategy="sma_cross", params={"fast": 5, "slow": 20},
                                         data=DataConfig(start="2024-03-01", end="2024-03-10")))
    totals = pnl_by_source(result.equity, result.fills, result.funding, result.initial_cash).sum()
    a = result.attribution
    assert len(result.fills) > 4
    assert totals["fees"] == pytest.approx(a["fees_taker"] + a["fees_maker"], abs=1e-6)
    assert totals["slippage"] == pytest.approx(a["slippage"], abs=1e-6)
    assert totals["funding"] == pytest.approx(a["funding"], abs=1e-6)
    assert totals["price"] == pytest.approx(a["price"], abs=1e-6)


def test_periods_are_months_weeks_or_days_by_span_length():
    assert period_rule(pd.date_range("2024-01-01", periods=200 * 24, freq="h", tz="UTC"))[1] == "month"
    assert period_rule(pd.date_range("2024-01-01", periods=30 * 24, freq="h", tz="UTC"))[1] == "week"
    assert period_rule(pd.date_range("2024-01-01", periods=5 * 24, freq="h", tz="UTC"))[1] == "day"


def test_rolling_sharpe_is_undefined_until_the_window_fills_and_on_flat_stretches():
    assert rolling_window("1h") == 720 and rolling_window("4h") == 180
    equity = hourly(np.r_[100 * np.cumprod(1 + np.random.default_rng(2).normal(0, 0.01, 50)), np.full(30, 90.0)])
    stats = rolling_sharpe_volatility(equity, "1h", 10)
    assert stats["sharpe"].iloc[:9].isna().all() and stats["sharpe"].iloc[20:40].notna().all()
    assert stats["sharpe"].iloc[-5:].isna().all() and (stats["volatility"].dropna() >= 0).all()
    r = equity.pct_change().iloc[30:40]
    assert stats["sharpe"].loc[equity.index[39]] == pytest.approx(r.mean() / r.std() * np.sqrt(8760), rel=1e-12)


def test_exposure_is_signed_notional_over_equity():
    exposure = net_exposure(hourly([0.0, 0.2, -0.1]), hourly([50_000.0] * 3), hourly([10_000.0] * 3))
    assert exposure.tolist() == [0.0, 1.0, -0.5]


def test_analysis_charts_draw_their_series_in_the_shared_colours():
    equity = hourly(10_000 * np.cumprod(1 + np.random.default_rng(5).normal(0, 0.01, 2000)))
    fig = rolling_chart(equity, "1h", buy_hold=equity * 1.1, days=5)
    assert [line.get_color() for line in fig.axes[0].get_lines()[:2]] == [COLORS["buy_hold"], COLORS["strategy"]]
    fig = exposure_chart(hourly([0.0, 0.2, -0.1]), hourly([50_000.0] * 3), hourly([10_000.0] * 3), leverage=2)
    assert fig.axes[0].get_ylim()[1] >= 2
    trades = pd.DataFrame({"return_pct": [1.0, -2.0, 0.5], "direction": [1, -1, 1]})
    labels = [t.get_text() for t in trade_distribution_chart(trades).axes[0].get_legend().get_texts()]
    assert labels == ["long (2)", "short (1)", "mean -0.17 %"]
    sources = pd.DataFrame({"price": [10.0, -5.0], "fees": [-1.0, -1.0], "funding": 0.0, "slippage": -0.5,
                            "liquidation": 0.0}, index=pd.DatetimeIndex(["2024-01-01", "2024-02-01"], tz="UTC"))
    labels = [t.get_text() for t in attribution_chart(sources).axes[0].get_legend().get_texts()]
    assert labels == ["price +5", "fees -2", "slippage -1", "net +2"]


def test_predictions_chart_marks_each_walk_forward_fold_start():
    close = hourly(np.linspace(100, 110, 48))
    probs = pd.DataFrame(np.full((48, 3), 1 / 3), index=close.index, columns=["short", "flat", "long"])
    fig = predictions_chart(close, probs, fold_boundaries=[close.index[0], close.index[24]], min_confidence=0.5)
    assert [t.get_text() for t in fig.axes[0].texts] == ["fold 1", "fold 2"]
    assert "fold start" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
