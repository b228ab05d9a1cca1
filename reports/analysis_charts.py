"""Report charts beyond price and equity: rolling Sharpe and volatility, exposure and leverage, the distribution
of trade returns and the PnL attribution by source.

Same conventions as :mod:`reports.charts` (object-oriented matplotlib, no pyplot, UTC time axes) and the same
colours: long green, short red, flat grey, the strategy blue, buy-and-hold grey.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from data_feeds.timeframes import bars_per_year, timeframe_delta
from reports.charts import (COLORS, STRATEGY_COLORS, _format_time_axis, _legend_on_title_line, _new_figure, _styled,
                            _x, strategy_color)
from reports.metrics import bar_returns
from reports.pnl_sources import SOURCES, period_rule

SOURCE_COLORS = {"price": COLORS["strategy"], "fees": "#ff7f0e", "funding": "#9467bd", "slippage": "#8c564b",
                 "liquidation": COLORS["liquidation"]}
ROLLING_DAYS = 30


def rolling_window(timeframe: str, days: int = ROLLING_DAYS) -> int:
    """Bars in ``days`` days of a 24/7 market: 720 for "1h" and 30 days, 180 for "4h"; at least 2."""
    return max(int(pd.Timedelta(days=days) / timeframe_delta(timeframe)), 2)


def rolling_sharpe_volatility(equity: pd.Series, timeframe: str, window: int,
                              initial_cash: float | None = None) -> pd.DataFrame:
    """Annualised Sharpe (risk-free 0) and volatility [%] over the trailing ``window`` bar returns; NaN until the
    window is full and where the returns do not move (a flat stretch has no Sharpe)."""
    r = bar_returns(equity, initial_cash)
    periods = bars_per_year(timeframe)
    roll = r.rolling(window, min_periods=window)
    mean, std = roll.mean(), roll.std(ddof=1)
    std = std.where(std > 1e-12)
    return pd.DataFrame({"sharpe": mean / std * np.sqrt(periods), "volatility": std * np.sqrt(periods) * 100})


@_styled
def rolling_chart(equity: pd.Series, timeframe: str, *, buy_hold: pd.Series | None = None,
                  initial_cash: float | None = None, name: str = "strategy", buy_hold_name: str = "buy & hold",
                  days: int = ROLLING_DAYS, title: str | None = None) -> Figure:
    """Rolling ``days``-day Sharpe (top) and annualised volatility (bottom), each strategy in its colour
    (:func:`reports.charts.strategy_color`), buy-and-hold grey."""
    window = rolling_window(timeframe, days)
    fig, (top, bottom) = _new_figure(5.0, 2, height_ratios=[1.0, 1.0])
    curves = [(buy_hold, buy_hold_name, STRATEGY_COLORS["buy_hold"], 0.9, initial_cash)] if buy_hold is not None else []
    curves.append((equity, name, strategy_color(name), 1.2, initial_cash))
    for series, label, color, lw, cash in curves:
        stats = rolling_sharpe_volatility(series, timeframe, window, cash)
        x = _x(stats.index)
        top.plot(x, stats["sharpe"].to_numpy(), color=color, lw=lw, label=label)
        bottom.plot(x, stats["volatility"].to_numpy(), color=color, lw=lw)
    top.axhline(0, color="#555555", lw=0.7)
    top.set_ylabel("Sharpe (ann.)")
    bottom.set_ylabel("volatility (ann.) [%]")
    bottom.set_ylim(bottom=0)
    for ax in (top, bottom):
        ax.margins(x=0)
    top.set_title(title or f"Rolling {days}-day Sharpe and volatility")
    _legend_on_title_line(top)
    _format_time_axis(bottom)
    return fig


def net_exposure(position: pd.Series, close: pd.Series, equity: pd.Series) -> pd.Series:
    """Signed notional / equity per bar (x equity): +2 is long twice the account, -1 short once; 0 when flat.

    Position 0.2 BTC at a close of 50,000 USDT with 10,000 USDT equity is +1.0 (1x leverage, long)."""
    notional = position.reindex(equity.index).fillna(0.0) * close.reindex(equity.index)
    eq = equity.where(equity > 0)
    return (notional / eq).fillna(0.0).rename("exposure")


@_styled
def exposure_chart(position: pd.Series, close: pd.Series, equity: pd.Series, *, leverage: float | None = None,
                   title: str = "Exposure and leverage") -> Figure:
    """Signed exposure in multiples of equity: long green above zero, short red below; the configured leverage
    as dashed limits."""
    exposure = net_exposure(position, close, equity)
    fig, (ax,) = _new_figure(3.2)
    x, y = _x(exposure.index), exposure.to_numpy(dtype="float64")
    ax.fill_between(x, y, 0, where=y > 0, color=COLORS["long"], alpha=0.55, lw=0, step="post", label="long")
    ax.fill_between(x, y, 0, where=y < 0, color=COLORS["short"], alpha=0.55, lw=0, step="post", label="short")
    ax.axhline(0, color=COLORS["flat"], lw=0.8)
    handles = [Patch(color=COLORS["long"], alpha=0.55, label="long"),
               Patch(color=COLORS["short"], alpha=0.55, label="short")]
    if leverage:
        for level in (leverage, -leverage):
            ax.axhline(level, color="#555555", lw=0.8, ls=(0, (4, 3)))
        handles.append(Line2D([], [], color="#555555", lw=0.8, ls=(0, (4, 3)), label=f"leverage {leverage:g}x"))
    top = max(float(np.abs(y).max()) if y.size else 0.0, leverage or 0.0, 0.1) * 1.12
    ax.set_ylim(-top, top)
    ax.set_ylabel("notional / equity [x]")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.1f}x" if v else "0"))
    ax.margins(x=0)
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_on_title_line(ax, handles=handles)
    return fig


@_styled
def trade_distribution_chart(trades: pd.DataFrame, *, title: str = "Distribution of trade returns") -> Figure:
    """Histogram of net trade returns [%], long trades green stacked under short trades red, with the zero line
    and the mean dashed."""
    fig, (ax,) = _new_figure(3.4)
    ret = pd.to_numeric(trades["return_pct"], errors="coerce").to_numpy(dtype="float64") if len(trades) else []
    ret = np.asarray(ret, dtype="float64")
    if ret.size == 0:
        ax.text(0.5, 0.5, "no trades", transform=ax.transAxes, ha="center", va="center", color="#777777")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        side = pd.to_numeric(trades["direction"], errors="coerce").to_numpy() if "direction" in trades else \
            np.ones(ret.size)
        lo, hi = float(ret.min()), float(ret.max())
        pad = max(hi - lo, 1e-6) * 0.02
        bins = np.linspace(lo - pad, hi + pad, int(np.clip(np.sqrt(ret.size) * 2, 10, 60)) + 1)
        ax.hist([ret[side > 0], ret[side < 0]], bins=bins, stacked=True, color=[COLORS["long"], COLORS["short"]],
                alpha=0.8, label=[f"long ({int((side > 0).sum())})", f"short ({int((side < 0).sum())})"],
                edgecolor="white", linewidth=0.4)
        ax.axvline(0, color="#555555", lw=0.8)
        ax.axvline(float(ret.mean()), color=COLORS["price"], lw=1.0, ls=(0, (4, 3)),
                   label=f"mean {ret.mean():+.2f} %")
        ax.set_xlabel("net return per trade [%]")
        ax.set_ylabel("trades")
        _legend_on_title_line(ax)
    ax.set_title(title)
    return fig


@_styled
def attribution_chart(sources: pd.DataFrame, *, title: str = "PnL attribution") -> Figure:
    """Stacked bars of each source's contribution per period (month, week or day by span length; gains above
    zero, costs below) in USDT, the period's net change as a black dot, the run totals in the legend."""
    rule, unit = period_rule(sources.index)
    kw = {"label": "left", "closed": "left"} if rule.startswith("W") else {}
    per = sources.resample(rule, **kw).sum()
    fig, (ax,) = _new_figure(3.8)
    x = _x(per.index)
    width = (np.diff(x).min() if len(x) > 1 else np.timedelta64(1, "D")) * 0.8
    pos_base, neg_base = np.zeros(len(per)), np.zeros(len(per))
    handles = []
    for name in SOURCES:
        values = per[name].to_numpy(dtype="float64")
        total = float(sources[name].sum())
        if not np.any(values) and total == 0.0:
            continue
        base = np.where(values >= 0, pos_base, neg_base)
        ax.bar(x, values, width=width, bottom=base, align="edge", color=SOURCE_COLORS[name], alpha=0.85, lw=0)
        pos_base += np.where(values >= 0, values, 0.0)
        neg_base += np.where(values < 0, values, 0.0)
        handles.append(Patch(color=SOURCE_COLORS[name], alpha=0.85, label=f"{name} {total:+,.0f}"))
    net = per.sum(axis=1).to_numpy(dtype="float64")
    ax.scatter(x + width / 2, net, s=14, color="#111111", zorder=3)
    handles.append(Line2D([], [], marker="o", color="#111111", ls="", markersize=4,
                          label=f"net {float(sources.to_numpy().sum()):+,.0f}"))
    ax.axhline(0, color="#555555", lw=0.8)
    ax.set_ylabel(f"USDT per {unit}")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_on_title_line(ax, handles=handles)
    return fig
