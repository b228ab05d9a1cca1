"""Performance metrics as pure functions of an equity curve, its trades and the timeframe.

Conventions (a 24/7 market, risk-free rate 0):

- A *bar return* is the relative change of equity from one bar's close to the next. When ``initial_cash``
  is given it is the account value before the first bar, so the first bar has a return too
  (``initial_cash=10_000``, first close 10_100 -> first return +1 %).
- Annualisation uses ``P = bars_per_year(timeframe)`` periods (8,760 for "1h", 365 for "1d").
- Time-based figures (CAGR, durations in days) use elapsed clock time and 365-day years.

:func:`compute_metrics` returns one ``pd.Series`` with the units in its keys, in the spirit of
backtesting.py's ``compute_stats``; the helpers (:func:`bar_returns`, :func:`drawdown`,
:func:`buy_and_hold_equity`, :func:`monthly_returns`) return fractions (0.05 = 5 %).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data_feeds.timeframes import SECONDS_PER_YEAR, bars_per_year, timeframe_delta
from reports.errors import ReportError
from reports.trade_metrics import trade_metrics, traded_notional
from reports.trader_metrics import (DEFAULT_MAINTENANCE_RATE, benchmark_metrics, distribution_metrics,
                                    perp_metrics, recovery_metrics)

if TYPE_CHECKING:
    from backtests.result import BacktestResult

_DAY = pd.Timedelta(days=1)
POSITION_EPSILON = 1e-12
"""A position whose size is at most this (in contracts) counts as flat, so float residue after a close is flat."""


# ---------------------------------------------------------------- checks

def _check_equity(equity: pd.Series, initial_cash: float | None = None) -> None:
    if not isinstance(equity, pd.Series) or not isinstance(equity.index, pd.DatetimeIndex):
        raise ReportError("equity must be a pandas Series indexed by bar open times (DatetimeIndex)")
    if equity.empty:
        raise ReportError("equity curve is empty: the backtest produced no bars")
    values = equity.to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        raise ReportError(f"equity has {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
    if not equity.index.is_monotonic_increasing:
        raise ReportError("equity index must be in increasing time order")
    if initial_cash is not None and not (np.isfinite(initial_cash) and initial_cash > 0):
        raise ReportError(f"initial_cash must be a positive number, got {initial_cash!r}")


def _check_trades(trades: pd.DataFrame) -> None:
    if not isinstance(trades, pd.DataFrame):
        raise ReportError("trades must be a pandas DataFrame (see backtests.result.TRADE_COLUMNS)")
    missing = [c for c in ("pnl", "return_pct") if c not in trades.columns]
    if len(trades) and missing:
        raise ReportError(f"trades lack column(s) {', '.join(missing)}; expected backtests.result.TRADE_COLUMNS")


# ---------------------------------------------------------------- helpers

def bar_returns(equity: pd.Series, initial_cash: float | None = None) -> pd.Series:
    """Relative equity change per bar (fraction), indexed by the bar it ends on.

    Without ``initial_cash`` the first bar is the base and has no return (N bars -> N-1 returns); with it,
    ``initial_cash`` is the base before the first bar (N returns). Equity ``[100, 110, 99]`` gives
    ``[+0.10, -0.10]``; with ``initial_cash=100`` equity ``[110, 99]`` gives the same. A bar that starts from
    zero or negative equity has return 0 (nothing left to gain or lose).
    """
    _check_equity(equity, initial_cash)
    values = equity.to_numpy(dtype="float64")
    if initial_cash is not None:
        prev, cur, index = np.r_[initial_cash, values[:-1]], values, equity.index
    else:
        prev, cur, index = values[:-1], values[1:], equity.index[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, cur / prev - 1.0, 0.0)
    return pd.Series(r, index=index, name="return")


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown per bar as a fraction <= 0: equity / running peak - 1.

    Equity ``[100, 120, 90, 130]`` gives ``[0, 0, -0.25, 0]`` (90 is 25 % below the peak of 120).
    """
    _check_equity(equity)
    values = equity.to_numpy(dtype="float64")
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, values / peak - 1.0, 0.0)
    return pd.Series(np.minimum(dd, 0.0), index=equity.index, name="drawdown")


def buy_and_hold_equity(close: pd.Series, initial_cash: float) -> pd.Series:
    """Equity of putting ``initial_cash`` into the asset at the first close and holding it (no fees, no leverage).

    ``initial_cash=10_000`` with closes ``[100, 110, 90]`` gives ``[10_000, 11_000, 9_000]`` USDT.
    """
    if not isinstance(close, pd.Series) or close.empty:
        raise ReportError("close prices must be a non-empty pandas Series")
    first = float(close.iloc[0])
    if not (np.isfinite(first) and first > 0):
        raise ReportError(f"first close must be a positive price, got {first!r}")
    if not (np.isfinite(initial_cash) and initial_cash > 0):
        raise ReportError(f"initial_cash must be a positive number, got {initial_cash!r}")
    return (close.astype("float64") * (initial_cash / first)).rename("buy_hold")


def monthly_returns(equity: pd.Series, initial_cash: float | None = None) -> pd.DataFrame:
    """Calendar-month returns (fraction) as a year x month table (columns 1..12, NaN where no data).

    Each month compares its last equity with the previous month's last equity; the first month starts from
    ``initial_cash`` (or the first equity value). Equity 100 at the start, 110 at the end of January and
    99 at the end of February gives January +0.10 and February -0.10.
    """
    _check_equity(equity, initial_cash)
    month_end = equity.astype("float64").resample("ME").last().dropna()
    base = float(initial_cash) if initial_cash is not None else float(equity.iloc[0])
    prev = month_end.shift(1).fillna(base)
    ret = month_end / prev - 1.0
    table = pd.DataFrame({"year": ret.index.year, "month": ret.index.month, "r": ret.to_numpy()})
    out = table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))
    out.columns.name = "month"
    return out


def _longest_underwater(dd: np.ndarray, times: pd.DatetimeIndex) -> tuple[int, float]:
    """(bars, days) of the longest run of consecutive bars below the running peak.

    Days run from the peak (the bar before the run) to the run's last bar: with hourly bars, a peak at
    00:00 and three bars under water gives ``(3, 0.125)``.
    """
    under = np.r_[False, dd < 0, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(under))
    if edges.size == 0:
        return 0, 0.0
    starts, ends = edges[0::2], edges[1::2]      # run covers [start, end)
    longest = int(np.argmax(ends - starts))
    start, end = int(starts[longest]), int(ends[longest])
    peak = max(start - 1, 0)
    return end - start, (times[end - 1] - times[peak]) / _DAY


# ---------------------------------------------------------------- the metrics

def compute_metrics(equity: pd.Series, trades: pd.DataFrame, timeframe: str, *, position: pd.Series | None = None,
                    fees: float = 0.0, funding: float | pd.Series = 0.0, initial_cash: float | None = None,
                    close: pd.Series | None = None, fills: pd.DataFrame | None = None,
                    benchmark: pd.Series | None = None, risk_free: float = 0.0,
                    maintenance_rate: float = DEFAULT_MAINTENANCE_RATE) -> pd.Series:
    """Performance of one equity curve, keys with their units (``"Return [%]"``, ``"Fees paid [USDT]"``).

    - ``equity``: account value in USDT at each bar's close, indexed by bar open time (UTC).
    - ``trades``: round trips with ``pnl`` (USDT, net) and ``return_pct`` (percent: 1.5 = +1.5 %); may be empty.
    - ``position``: signed size per bar, for ``"Exposure [%]"`` (share of bars not flat); NaN when omitted.
    - ``fees`` / ``funding``: totals paid in USDT; ``funding`` may be the per-bar series (positive = paid), which
      adds funding paid and received apart.
    - ``initial_cash``: account value before the first bar (see :func:`bar_returns`); else the first equity.
    - ``close``: the asset's closes, for the leverage used (with ``position``).
    - ``benchmark``: buy-and-hold's equity on the same bars (same ``initial_cash``), for alpha, beta, correlation
      and information ratio (:func:`reports.trader_metrics.benchmark_metrics`); NaN without it.
    - ``risk_free``: annual rate (0.04 = 4 %) taken out of every bar return, compounded per bar, for Sharpe and
      Sortino (not for the other figures).
    - ``fills``: executions with ``notional`` (USDT), for ``"Turnover (ann.) [x]"``: traded notional / mean
      equity / years (10,000 USDT equity trading 200,000 USDT over half a year turns over 40x a year).

    ``"Start"``/``"End"`` are the first and last bars' open times (UTC); ``"Trades"`` counts every row of
    ``trades``, including a position still open at the end (valued at the last close).

    Formulas, with ``r`` the bar returns and ``P = bars_per_year(timeframe)`` (8,760 for "1h"):

    - Volatility (ann.) = std(r, ddof=1) * sqrt(P); Sharpe = mean(r - rf) / std(r, ddof=1) * sqrt(P), with
      rf = (1 + risk_free) ** (1 / P) - 1 per bar (0 by default).
    - Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P): the downside deviation averages the squared
      losses over *all* bars, as quantstats does.
    - CAGR = (final / start) ** (1 / years) - 1 with years = elapsed time / 365 days, the elapsed time running
      from ``initial_cash`` (one bar before the first close) or the first close to the last close. On
      gap-free bars this equals quantstats' ``len(r) / P`` years.
    - Calmar = CAGR / |max drawdown|. Max drawdown includes ``initial_cash`` as a possible peak.
    - Profit factor = gross profit / gross loss of trade PnL (inf when no trade lost); trade statistics
      (long/short split, streaks, holding time) are :func:`reports.trade_metrics.trade_metrics`.
    - Best / worst month: calendar-month returns (UTC) of :func:`monthly_returns`, the first month from
      ``initial_cash``.
    - Futures, distribution, benchmark and recovery figures: :mod:`reports.trader_metrics` (liquidations,
      leverage, margin ratio, funding paid/received, slippage, skew, kurtosis, VaR/CVaR, yearly returns,
      positive months, time to recovery, ongoing drawdown); expectancy, payoff ratio and SQN:
      :func:`reports.trade_metrics.trade_metrics`.

    Infinite and undefined are kept apart: a profit factor with no losing trade is ``inf`` (JSON ``"inf"``), a
    Sharpe ratio without spread is NaN (JSON ``null``).

    Undefined values are NaN, never an error: Sharpe and volatility with fewer than 2 returns; Sharpe on a flat
    curve (std 0, volatility 0); Sortino without a losing bar; Calmar without a drawdown; CAGR over zero elapsed time; win rate
    and trade averages without trades. Worked example: hourly equity 100 -> 110 -> 99 gives Return -1 %,
    max drawdown -10 %, Sharpe 0 (mean return 0).
    """
    _check_equity(equity, initial_cash)
    _check_trades(trades)
    periods = bars_per_year(timeframe)
    bar = timeframe_delta(timeframe)

    values = equity.to_numpy(dtype="float64")
    times = equity.index
    if initial_cash is not None:
        values, times = np.r_[float(initial_cash), values], times.insert(0, times[0] - bar)
    start, final = float(values[0]), float(values[-1])
    r = bar_returns(equity, initial_cash).to_numpy()

    elapsed_days = (times[-1] - times[0]) / _DAY
    years = elapsed_days * 86400 / SECONDS_PER_YEAR
    total = final / start if start > 0 else np.nan
    if years <= 0 or not np.isfinite(total):
        cagr = np.nan
    else:
        with np.errstate(over="ignore"):   # a big gain over a few hours annualises to inf, not an error
            cagr = float(np.power(np.float64(total), 1.0 / years)) - 1 if total > 0 else -1.0

    std = float(np.std(r, ddof=1)) if r.size >= 2 else np.nan
    rf = (1.0 + risk_free) ** (1.0 / periods) - 1.0 if risk_free else 0.0
    mean = float(np.mean(r)) - rf if r.size else np.nan
    downside = float(np.sqrt(np.mean(np.minimum(r - rf, 0.0) ** 2))) if r.size else np.nan
    dd = drawdown(pd.Series(values, index=times)).to_numpy()
    max_dd = float(dd.min())
    dd_bars, dd_days = _longest_underwater(dd, times)

    s: dict[str, object] = {
        "Start": equity.index[0],
        "End": equity.index[-1],
        "Duration [days]": float(elapsed_days),
        "Bars": int(len(equity)),
        "Exposure [%]": _exposure(position),
        "Initial equity [USDT]": start,
        "Final equity [USDT]": final,
        "Peak equity [USDT]": float(values.max()),
        "Return [%]": (total - 1) * 100,
    }
    s.update({
        "CAGR [%]": cagr * 100,
        "Volatility (ann.) [%]": std * np.sqrt(periods) * 100,
        "Sharpe": mean / std * np.sqrt(periods) if std > 0 else np.nan,
        "Sortino": mean / downside * np.sqrt(periods) if downside > 0 else np.nan,
        "Calmar": cagr / abs(max_dd) if max_dd < 0 else np.nan,
        "Max drawdown [%]": max_dd * 100,
        "Max drawdown duration [bars]": dd_bars,
        "Max drawdown duration [days]": float(dd_days),
    })
    s.update(recovery_metrics(pd.Series(values, index=times)))
    monthly = monthly_returns(equity, initial_cash)
    months = monthly.to_numpy(dtype="float64")
    months = months[np.isfinite(months)]
    s["Best month [%]"] = float(months.max() * 100) if months.size else np.nan
    s["Worst month [%]"] = float(months.min() * 100) if months.size else np.nan
    s.update(trade_metrics(trades))
    notional = traded_notional(fills)
    mean_equity = float(np.mean(values))
    s["Traded notional [USDT]"] = notional
    s["Turnover (ann.) [x]"] = notional / mean_equity / years if years > 0 and mean_equity > 0 else np.nan
    s["Fees paid [USDT]"] = float(fees)
    s["Funding paid [USDT]"] = float(funding.sum()) if isinstance(funding, pd.Series) else float(funding)
    s.update(perp_metrics(position=position, close=close, equity=equity, fills=fills, funding=funding,
                          maintenance_rate=maintenance_rate))
    s.update(distribution_metrics(pd.Series(r), equity, monthly, initial_cash))
    bench = bar_returns(benchmark.reindex(equity.index).ffill(), initial_cash).to_numpy() \
        if benchmark is not None else np.full(r.size, np.nan)
    s.update(benchmark_metrics(r, bench, periods))
    return pd.Series(s, dtype=object, name="metrics")


def _exposure(position: pd.Series | None) -> float:
    if position is None or len(position) == 0:
        return np.nan
    held = np.abs(np.nan_to_num(np.asarray(position, dtype="float64"))) > POSITION_EPSILON
    return float(held.mean() * 100)


def result_risk_free(result: "BacktestResult") -> float:
    """The annual risk-free rate the run's config asks for (``risk_free``), 0 when it says nothing."""
    config = result.config if isinstance(result.config, dict) else {}
    value = config.get("risk_free", 0.0)
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else 0.0


def result_metrics(result: "BacktestResult", benchmark: pd.Series | None = None,
                   risk_free: float | None = None) -> pd.Series:
    """:func:`compute_metrics` of a backtest result: its equity, trades, position, fees, funding per bar and closes;
    ``benchmark`` is buy-and-hold's equity on the same bars; ``risk_free`` defaults to the config's."""
    close = result.prices["close"] if result.prices is not None and "close" in result.prices else None
    rf = result_risk_free(result) if risk_free is None else risk_free
    m = compute_metrics(result.equity, result.trades, result.timeframe, position=result.position,
                        fees=result.fees_paid, funding=result.funding, initial_cash=result.initial_cash,
                        close=close, fills=result.fills, benchmark=benchmark, risk_free=rf)
    wiped = (result.data_span or {}).get("wiped_out_at")
    if wiped:  # the account could no longer trade: its risk ratios (Sharpe, Sortino, Calmar...) are not meaningful
        m["Wiped out at"] = wiped
    return m


def equity_metrics(equity: pd.Series, timeframe: str, initial_cash: float | None = None) -> pd.Series:
    """:func:`compute_metrics` of a bare equity curve (a baseline given only as a series): no trades, no position."""
    return compute_metrics(equity, pd.DataFrame(), timeframe, initial_cash=initial_cash)
