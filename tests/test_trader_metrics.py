"""Perp-trader metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from reports.metrics import compute_metrics
from reports.trade_metrics import trade_metrics
from reports.trader_metrics import (benchmark_metrics, drawdown_periods, perp_metrics, recovery_metrics,
                                    value_at_risk)


def hourly(values, start="2024-01-01"):
    return pd.Series(np.asarray(values, dtype="float64"),
                     index=pd.date_range(start, periods=len(values), freq="1h", tz="UTC"))


def test_drawdown_periods_peak_trough_recovery_and_ongoing():
    periods = drawdown_periods(hourly([100, 120, 90, 130, 117]))
    first, second = periods.iloc[0], periods.iloc[1]
    assert first["depth [%]"] == pytest.approx(-25.0) and not first["ongoing"]
    assert (first["peak"].hour, first["trough"].hour, first["recovery"].hour) == (1, 2, 3)
    assert first["recovery [days]"] == pytest.approx(1 / 24) and first["length [days]"] == pytest.approx(2 / 24)
    assert second["depth [%]"] == pytest.approx(-10.0) and second["ongoing"] and pd.isna(second["recovery"])
    r = recovery_metrics(hourly([100, 120, 90, 130, 117]))
    assert r["Drawdown ongoing"] and r["Current drawdown [%]"] == pytest.approx(-10.0)
    assert r["Max drawdown recovery [days]"] == pytest.approx(1 / 24)
    assert math.isnan(recovery_metrics(hourly([100, 80, 90]))["Max drawdown recovery [days]"])


def test_value_at_risk_is_the_5th_percentile_and_cvar_the_tail_mean():
    r = np.arange(1, 21) / 100.0                       # 1 % .. 20 %
    var, cvar = value_at_risk(r)
    assert var == pytest.approx(0.0195) and cvar == pytest.approx(0.01)   # only 1 % is at or below 1.95 %


def test_half_the_benchmark_has_beta_half_no_alpha_and_correlation_one():
    b = np.random.default_rng(0).normal(0.001, 0.01, 500)
    m = benchmark_metrics(0.5 * b, b, 8760)
    assert m["Beta"] == pytest.approx(0.5) and m["Correlation"] == pytest.approx(1.0)
    assert m["Alpha (ann.) [%]"] == pytest.approx(0.0, abs=1e-9)
    active = -0.5 * b
    assert m["Information ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * math.sqrt(8760))


def test_perp_metrics_leverage_margin_funding_slippage_liquidations():
    equity = hourly([1000, 1000, 1000, 500])
    position = hourly([0, 0.02, -0.04, 0])            # 0.02 x 100,000 = 2,000 notional on 1,000 equity: 2x
    close = hourly([100_000] * 4)
    fills = pd.DataFrame({"kind": ["market", "market", "liquidation"], "slippage": [0.2, 0.4, 0.0]})
    funding = hourly([0, 1.5, -0.5, 0])
    m = perp_metrics(position=position, close=close, equity=equity, fills=fills, funding=funding)
    assert m["Liquidations"] == 1 and m["Slippage [USDT]"] == pytest.approx(0.6)
    assert m["Avg leverage [x]"] == pytest.approx(3.0) and m["Max leverage [x]"] == pytest.approx(4.0)
    assert m["Max margin ratio [%]"] == pytest.approx(4.0 * 0.4)
    assert (m["Funding paid (gross) [USDT]"], m["Funding received [USDT]"]) == pytest.approx((1.5, 0.5))


def test_expectancy_payoff_and_sqn():
    trades = pd.DataFrame({"pnl": [10.0, 20.0, -5.0, -5.0], "return_pct": [1.0, 2.0, -0.5, -0.5]})
    m = trade_metrics(trades)
    assert m["Expectancy [USDT]"] == pytest.approx(5.0) and m["Payoff ratio"] == pytest.approx(3.0)
    assert m["SQN"] == pytest.approx(2 * 5.0 / np.std([10, 20, -5, -5], ddof=1))
    assert trade_metrics(trades[trades.pnl > 0])["Payoff ratio"] == math.inf


def test_yearly_returns_positive_months_and_risk_free_in_compute_metrics():
    idx = pd.date_range("2023-12-30", periods=5, freq="1D", tz="UTC")
    equity = pd.Series([100.0, 110.0, 121.0, 121.0, 133.1], index=idx)
    m = compute_metrics(equity, pd.DataFrame(), "1d", initial_cash=100.0)
    assert m["Return 2023 [%]"] == pytest.approx(10.0) and m["Return 2024 [%]"] == pytest.approx(21.0)
    assert m["Positive months [%]"] == pytest.approx(100.0)
    rf = compute_metrics(equity, pd.DataFrame(), "1d", initial_cash=100.0, risk_free=0.05)
    assert rf["Sharpe"] < m["Sharpe"]
