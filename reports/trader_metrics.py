"""What a perpetual-futures trader reads besides return and Sharpe: pure functions of plain pandas objects.

- :func:`distribution_metrics`: skew, excess kurtosis, daily VaR / CVaR (95 %, historical), yearly returns and the
  share of positive months;
- :func:`benchmark_metrics`: alpha, beta, correlation and information ratio against a benchmark (buy-and-hold)
  on the same bars;
- :func:`drawdown_periods` and :func:`recovery_metrics`: the worst drawdowns (peak, trough, recovery, depth,
  length), the time the deepest one took to recover and whether a drawdown is still going on;
- :func:`perp_metrics`: liquidations, leverage used, margin ratio, funding paid and received, slippage.

Units are in the keys; returns are percent in the output (fractions in the inputs). Undefined is NaN (JSON
``null``), unbounded is ``inf`` (JSON ``"inf"``): see :func:`reports.formatting.jsonable`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_MAINTENANCE_RATE = 0.004
"""Maintenance margin rate used for the margin ratio when the result does not say: 0.4 %, Binance USDT-M BTCUSDT's
first tier (positions up to 50,000 USDT notional)."""
POSITION_EPSILON = 1e-12


def _moments(r: np.ndarray) -> tuple[float, float]:
    """(skew g1, excess kurtosis g2) with population moments (as scipy.stats' defaults); NaN without spread."""
    if r.size < 3:
        return np.nan, np.nan
    d = r - r.mean()
    m2 = float(np.mean(d ** 2))
    if m2 <= 0:
        return np.nan, np.nan
    return float(np.mean(d ** 3)) / m2 ** 1.5, float(np.mean(d ** 4)) / m2 ** 2 - 3.0


def daily_returns(equity: pd.Series, initial_cash: float | None = None) -> pd.Series:
    """Returns (fraction) from one UTC day's last equity to the next; the first day from ``initial_cash`` (or the
    first equity value)."""
    day_end = equity.astype("float64").resample("1D").last().dropna()
    base = float(initial_cash) if initial_cash is not None else float(equity.iloc[0])
    return (day_end / day_end.shift(1).fillna(base) - 1.0).rename("daily")


def value_at_risk(returns, level: float = 0.95) -> tuple[float, float]:
    """Historical (VaR, CVaR) at ``level`` as returns (fractions, negative for a loss): VaR is the
    ``1 - level`` quantile (linear interpolation), CVaR the mean of the returns at or below it. Returns 1 .. 20 (%)
    at 95 %: VaR = 1.95 %, CVaR = mean of those <= 1.95 % = 1 %."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if r.size < 2:
        return np.nan, np.nan
    var = float(np.quantile(r, 1.0 - level))
    return var, float(r[r <= var].mean())


def distribution_metrics(returns: pd.Series, equity: pd.Series, monthly: pd.DataFrame,
                         initial_cash: float | None = None) -> dict[str, object]:
    """Skew and excess kurtosis of the bar ``returns``, daily VaR/CVaR 95 %, share of positive months (of
    ``monthly``, a year x month table of fractions) and one ``"Return YYYY [%]"`` per calendar year (each year
    from the previous year's last equity; the first from ``initial_cash``)."""
    skew, kurt = _moments(np.asarray(returns, dtype="float64"))
    var, cvar = value_at_risk(daily_returns(equity, initial_cash).to_numpy())
    months = monthly.to_numpy(dtype="float64")
    months = months[np.isfinite(months)]
    out: dict[str, object] = {
        "Skew": skew, "Excess kurtosis": kurt,
        "Daily VaR 95 [%]": var * 100, "Daily CVaR 95 [%]": cvar * 100,
        "Positive months [%]": float((months > 0).mean() * 100) if months.size else np.nan,
    }
    year_end = equity.astype("float64").groupby(equity.index.year).last()
    base = float(initial_cash) if initial_cash is not None else float(equity.iloc[0])
    prev = np.r_[base, year_end.to_numpy()[:-1]]
    for year, end, start in zip(year_end.index, year_end.to_numpy(), prev):
        out[f"Return {year} [%]"] = (end / start - 1.0) * 100 if start > 0 else np.nan
    return out


def benchmark_metrics(returns, benchmark, periods: float) -> dict[str, float]:
    """Against ``benchmark`` bar returns on the same bars (``periods`` bars a year):

    - Beta = cov(r, b) / var(b); Alpha (ann.) = (mean(r) - beta * mean(b)) * periods (CAPM, risk-free 0 since both
      series are raw returns);
    - Correlation: Pearson of r and b;
    - Information ratio = mean(r - b) / std(r - b, ddof=1) * sqrt(periods) (tracking error in the denominator).

    A strategy that is the benchmark scaled by 0.5 has beta 0.5, alpha 0, correlation 1.
    """
    r = np.asarray(returns, dtype="float64")
    b = np.asarray(benchmark, dtype="float64")
    keep = np.isfinite(r) & np.isfinite(b)
    r, b = r[keep], b[keep]
    nan = {"Alpha (ann.) [%]": np.nan, "Beta": np.nan, "Correlation": np.nan, "Information ratio": np.nan}
    if r.size < 3:
        return nan
    var_b = float(np.var(b, ddof=1))
    cov = float(np.cov(r, b, ddof=1)[0, 1])
    beta = cov / var_b if var_b > 0 else np.nan
    std_r = float(np.std(r, ddof=1))
    active = r - b
    te = float(np.std(active, ddof=1))
    return {
        "Alpha (ann.) [%]": (float(r.mean()) - beta * float(b.mean())) * periods * 100 if np.isfinite(beta) else np.nan,
        "Beta": beta,
        "Correlation": cov / (std_r * np.sqrt(var_b)) if std_r > 0 and var_b > 0 else np.nan,
        "Information ratio": float(active.mean()) / te * np.sqrt(periods) if te > 0 else np.nan,
    }


def drawdown_periods(equity: pd.Series, top: int = 5) -> pd.DataFrame:
    """The ``top`` deepest drawdowns, deepest first: ``peak`` (the high before it), ``trough``, ``recovery`` (first
    bar back at or above the peak; NaT while still under water), ``depth [%]`` (negative), ``length [days]`` (peak
    to recovery, or to the last bar when ongoing), ``recovery [days]`` (trough to recovery; NaN when ongoing) and
    ``ongoing``. Equity ``[100, 120, 90, 130, 117]`` gives a -25 % drawdown from the 2nd bar, trough at the 3rd,
    recovered at the 4th, and an ongoing -10 % one from the 4th."""
    cols = ["peak", "trough", "recovery", "depth [%]", "length [days]", "recovery [days]", "ongoing"]
    values = equity.to_numpy(dtype="float64")
    if values.size == 0:
        return pd.DataFrame(columns=cols)
    times = equity.index
    peak = np.maximum.accumulate(values)
    under = values < peak
    rows = []
    i, n = 0, values.size
    while i < n:
        if not under[i]:
            i += 1
            continue
        start = i - 1 if i > 0 else 0          # the peak bar
        j = i
        while j < n and under[j]:
            j += 1
        seg = values[i:j]
        k = i + int(np.argmin(seg))
        depth = (values[k] / peak[k] - 1.0) * 100 if peak[k] > 0 else np.nan
        ongoing = j >= n
        end_time = times[-1] if ongoing else times[j]
        rows.append({"peak": times[start], "trough": times[k], "recovery": pd.NaT if ongoing else times[j],
                     "depth [%]": depth, "length [days]": (end_time - times[start]) / pd.Timedelta(days=1),
                     "recovery [days]": np.nan if ongoing else (times[j] - times[k]) / pd.Timedelta(days=1),
                     "ongoing": ongoing})
        i = j
    frame = pd.DataFrame(rows, columns=cols)
    return frame.sort_values("depth [%]", kind="stable").head(top).reset_index(drop=True)


def recovery_metrics(equity: pd.Series) -> dict[str, object]:
    """``"Max drawdown recovery [days]"`` (trough to the first bar back at the old peak; NaN when it has not
    recovered), ``"Current drawdown [%]"`` (last bar below the peak, 0 at a high) and ``"Drawdown ongoing"``."""
    periods = drawdown_periods(equity, top=1)
    values = equity.to_numpy(dtype="float64")
    peak = float(values.max()) if values.size else np.nan
    current = (values[-1] / peak - 1.0) * 100 if values.size and peak > 0 else np.nan
    return {"Max drawdown recovery [days]": float(periods["recovery [days]"].iloc[0]) if len(periods) else 0.0,
            "Current drawdown [%]": float(current),
            "Drawdown ongoing": bool(values.size and values[-1] < peak)}


def leverage_used(position: pd.Series, close: pd.Series, equity: pd.Series) -> pd.Series:
    """|position x close| / equity per bar (1.0 = notional equal to equity); NaN where equity <= 0."""
    pos = position.reindex(equity.index).astype("float64").fillna(0.0).to_numpy()
    px = close.reindex(equity.index).astype("float64").to_numpy()
    eq = equity.to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        lev = np.where(eq > 0, np.abs(pos * px) / eq, np.nan)
    return pd.Series(lev, index=equity.index, name="leverage")


def perp_metrics(*, position: pd.Series | None, close: pd.Series | None, equity: pd.Series,
                 fills: pd.DataFrame | None, funding: pd.Series | float,
                 maintenance_rate: float = DEFAULT_MAINTENANCE_RATE) -> dict[str, object]:
    """Futures figures of one run.

    - ``"Liquidations"``: fills of kind ``"liquidation"``;
    - ``"Avg leverage [x]"`` / ``"Max leverage [x]"``: :func:`leverage_used` over the bars with a position (avg) and
      all bars (max), at each bar's close;
    - ``"Max margin ratio [%]"``: Binance's margin ratio, maintenance margin / margin balance, at its worst (highest)
      close; 100 % is liquidation. Derived, since the result holds no per-bar margin: maintenance =
      ``|notional| x maintenance_rate`` (0.4 % by default, Binance's first BTCUSDT tier), margin balance = equity
      (the whole account backs the one isolated position). A 1x position has 0.4 %, a 10x one 4 %. Intrabar
      extremes are not seen (the broker checks liquidation against them; this figure does not);
    - ``"Funding paid (gross) [USDT]"`` / ``"Funding received [USDT]"``: the positive and the negative payments of the
      per-bar ``funding`` series (positive = paid), both as positive numbers; NaN when only a total is given;
    - ``"Slippage [USDT]"``: the fills' slippage cost.
    """
    out: dict[str, object] = {}
    has_kind = fills is not None and len(fills) and "kind" in fills
    kinds = fills["kind"].astype(str) if has_kind else pd.Series([], dtype=str)
    out["Liquidations"] = int((kinds == "liquidation").sum())
    if position is not None and close is not None and len(position):
        lev = leverage_used(position, close, equity)
        held = np.abs(position.reindex(equity.index).fillna(0.0).to_numpy(dtype="float64")) > POSITION_EPSILON
        out["Avg leverage [x]"] = float(np.nanmean(lev.to_numpy()[held])) if held.any() else 0.0
        out["Max leverage [x]"] = float(np.nanmax(lev.to_numpy())) if np.isfinite(lev.to_numpy()).any() else np.nan
        out["Max margin ratio [%]"] = out["Max leverage [x]"] * maintenance_rate * 100
    else:
        out.update({"Avg leverage [x]": np.nan, "Max leverage [x]": np.nan, "Max margin ratio [%]": np.nan})
    if isinstance(funding, pd.Series):
        f = funding.to_numpy(dtype="float64")
        out["Funding paid (gross) [USDT]"] = float(f[f > 0].sum())
        out["Funding received [USDT]"] = float(-f[f < 0].sum()) + 0.0       # + 0.0: no -0.0
    else:
        out["Funding paid (gross) [USDT]"] = np.nan
        out["Funding received [USDT]"] = np.nan
    slip = fills["slippage"] if fills is not None and len(fills) and "slippage" in fills else pd.Series([], dtype=float)
    out["Slippage [USDT]"] = float(pd.to_numeric(slip, errors="coerce").fillna(0.0).sum())
    return out


__all__ = ["DEFAULT_MAINTENANCE_RATE", "benchmark_metrics", "daily_returns", "distribution_metrics",
           "drawdown_periods", "leverage_used", "perp_metrics", "recovery_metrics", "value_at_risk"]
