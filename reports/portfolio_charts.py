"""Charts of a multi-symbol run (``BacktestResult.portfolio``): contribution to equity by symbol, exposure and
leverage by symbol, the correlation of the symbols' PnL and the margin ratio with the liquidation line.

Same conventions as :mod:`reports.charts` (object-oriented matplotlib through Agg, no pyplot, UTC time axes).
Each symbol keeps one colour in every chart (:func:`symbol_color`: BTC orange, ETH indigo, others from a fixed
palette); the account's total is black; liquidations are black crosses.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from reports.charts import COLORS, WIDTH, _format_time_axis, _new_figure, _styled, _x

SYMBOL_COLORS = {"BTC": "#f7931a", "ETH": "#5b6ee1", "SOL": "#14a37f", "BNB": "#c9a100", "XRP": "#23292f"}
"""Fixed colours of common bases, so BTC is the same orange in every report."""
PALETTE = ("#17becf", "#e377c2", "#8c564b", "#bcbd22", "#9467bd", "#2ca02c", "#d62728", "#7f7f7f")
TOTAL_COLOR = "#111111"
LIQUIDATION_LINE = "#c0392b"
WARNING_LINE = "#e67e22"


def symbol_color(symbol: str, symbols: Sequence[str] = ()) -> str:
    """The colour of ``symbol`` (``"BTC/USDT:USDT"`` -> BTC orange): fixed for common bases, else the palette
    entry of its place in ``symbols`` (or of a hash of its name)."""
    base = str(symbol).split("/")[0].upper()
    if base in SYMBOL_COLORS:
        return SYMBOL_COLORS[base]
    others = [s for s in symbols if str(s).split("/")[0].upper() not in SYMBOL_COLORS]
    k = others.index(symbol) if symbol in others else sum(ord(c) for c in str(symbol))
    return PALETTE[k % len(PALETTE)]


def short_name(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC"`` for legends; other names unchanged."""
    return str(symbol).split("/")[0] if "/" in str(symbol) else str(symbol)


def _liq_points(liquidations: pd.DataFrame | None, frame: pd.DataFrame, symbol_col: bool = True):
    """``(symbol, time, y)`` for each liquidation: the frame's value for that symbol at (or just before) the time."""
    out = []
    if liquidations is None or not len(liquidations):
        return out
    index = frame.index
    for row in liquidations.to_dict("records"):
        t = pd.Timestamp(row["time"])
        t = t.tz_localize("UTC") if t.tzinfo is None else t
        i = int(np.clip(index.searchsorted(t, side="right") - 1, 0, len(index) - 1))
        s = row.get("symbol")
        col = s if symbol_col and s in frame.columns else frame.columns[0]
        out.append((s, index[i], float(frame[col].iloc[i])))
    return out


def _legend_below(fig, handles) -> None:
    """The legend centred under the plot, in as many columns as fit: a wide legend never covers the title."""
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)


def _finish_panels(fig: Figure, top, bottom, title: str, handles: list) -> Figure:
    """A two-panel chart's common ending: no side margins, the title on top, the legend below, dates on the bottom."""
    for ax in (top, bottom):
        ax.margins(x=0)
    top.set_title(title)
    _legend_below(fig, handles)
    _format_time_axis(bottom)
    return fig


def _shade_missing(axes, spans, symbols: Sequence[str]) -> list:
    """Hatch the spans where a symbol had no candle (``(symbol, start, end)``, :func:`reports.portfolio.
    coverage_spans`) on each axis, in the symbol's colour; returns the legend handles (one per symbol)."""
    handles = {}
    for symbol, start, end in spans:
        color = symbol_color(symbol, symbols)
        x0, x1 = _x(pd.DatetimeIndex([start, end]))
        for ax in axes:
            ax.axvspan(x0, x1, facecolor="none", edgecolor=color, hatch="///", alpha=0.35, lw=0, zorder=0)
        handles[symbol] = Patch(facecolor="none", edgecolor=color, hatch="///", alpha=0.6,
                                label=f"no {short_name(symbol)} data")
    return list(handles.values())


@_styled
def contribution_chart(contrib: pd.DataFrame, account: pd.Series, *, liquidations: pd.DataFrame | None = None,
                       missing: Sequence = (), title: str = "Contribution to equity by symbol") -> Figure:
    """Cumulative PnL of each symbol (USDT, its colour) and of the whole account (black; the symbols' lines sum
    to it), zero dashed; liquidations as black crosses on the liquidated symbol's line. Legend gives each final
    contribution."""
    fig, (ax,) = _new_figure(4.2)
    symbols = list(contrib.columns)
    handles = []
    for s in symbols:
        y = contrib[s].to_numpy(dtype="float64")
        color = symbol_color(s, symbols)
        ax.plot(_x(contrib.index), y, color=color, lw=1.3, zorder=2)
        handles.append(Line2D([], [], color=color, lw=2, label=f"{short_name(s)} {y[-1]:+,.0f} USDT"))
    a = account.reindex(contrib.index).to_numpy(dtype="float64")
    ax.plot(_x(contrib.index), a, color=TOTAL_COLOR, lw=1.0, ls=(0, (5, 2)), zorder=3)
    handles.append(Line2D([], [], color=TOTAL_COLOR, lw=1.0, ls=(0, (5, 2)), label=f"account {a[-1]:+,.0f} USDT"))
    points = _liq_points(liquidations, contrib)
    if points:
        ax.scatter(_x(pd.DatetimeIndex([t for _, t, _ in points])), [y for _, _, y in points], marker="X", s=80,
                   color=COLORS["liquidation"], edgecolors="white", linewidths=0.6, zorder=4)
        handles.append(Line2D([], [], marker="X", color=COLORS["liquidation"], ls="", markersize=8,
                              label=f"liquidated ({len(points)})"))
    handles += _shade_missing([ax], missing, symbols)
    ax.axhline(0, color="#555555", lw=0.7)
    ax.set_ylabel("cumulative PnL [USDT]")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+,.0f}" if v else "0"))
    ax.margins(x=0)
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_below(fig, handles)
    return fig


@_styled
def exposure_chart(exp: pd.DataFrame, symbols: Sequence[str], *, leverage: float | None = None,
                   missing: Sequence = (), title: str = "Exposure and leverage by symbol") -> Figure:
    """Top: signed exposure of each symbol (notional / equity, + long, - short) and the account's net exposure
    (black). Bottom: leverage stacked by symbol (|notional| / equity), its top edge the account's gross leverage;
    the configured ``leverage`` dashed."""
    fig, (top, bottom) = _new_figure(5.6, 2, height_ratios=[1.0, 1.0])
    x = _x(exp.index)
    symbols = list(symbols)
    handles = []
    for s in symbols:
        color = symbol_color(s, symbols)
        top.plot(x, exp[s].to_numpy(dtype="float64"), color=color, lw=1.1, drawstyle="steps-post")
        handles.append(Patch(color=color, alpha=0.75, label=short_name(s)))
    top.plot(x, exp["net"].to_numpy(dtype="float64"), color=TOTAL_COLOR, lw=0.9, ls=(0, (4, 2)),
             drawstyle="steps-post")
    handles.append(Line2D([], [], color=TOTAL_COLOR, lw=0.9, ls=(0, (4, 2)), label="net"))
    top.axhline(0, color="#555555", lw=0.7)
    top.set_ylabel("exposure [x equity]")
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.1f}x" if v else "0"))
    base = np.zeros(len(exp))
    for s in symbols:
        y = np.nan_to_num(np.abs(exp[s].to_numpy(dtype="float64")))
        bottom.fill_between(x, base, base + y, color=symbol_color(s, symbols), alpha=0.75, lw=0, step="post")
        base = base + y
    if leverage:
        bottom.axhline(leverage, color="#555555", lw=0.9, ls=(0, (4, 3)))
        handles.append(Line2D([], [], color="#555555", lw=0.9, ls=(0, (4, 3)), label=f"leverage setting {leverage:g}x"))
    handles += _shade_missing([top, bottom], missing, symbols)
    bottom.set_ylim(0, max(float(base.max()) if base.size else 0.0, leverage or 0.0, 0.1) * 1.12)
    bottom.set_ylabel("leverage, stacked [x]")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1f}x" if v else "0"))
    return _finish_panels(fig, top, bottom, title, handles)


@_styled
def correlation_chart(per_bar: pd.DataFrame, daily: pd.DataFrame, *,
                      title: str = "Correlation of symbol PnL") -> Figure:
    """Two heatmaps of the Pearson correlation of the symbols' PnL (USDT): per bar and per UTC day; -1 blue,
    +1 red, each cell labelled; undefined (a symbol whose PnL never moved) grey."""
    n = len(per_bar)
    side = min(1.6 + 0.7 * n, 5.2)
    fig = Figure(figsize=(min(WIDTH, 2 * side + 1.4), side), layout="constrained")
    axes = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#e6e6e6")
    image = None
    for ax, frame, label in ((axes[0], per_bar, "per bar"), (axes[1], daily, "per day (UTC)")):
        values = frame.to_numpy(dtype="float64")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-1, vmax=1)
        names = [short_name(s) for s in frame.columns]
        ax.set_xticks(range(n), names, rotation=0 if n <= 4 else 45)
        ax.set_yticks(range(n), [short_name(s) for s in frame.index])
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:+.2f}", ha="center", va="center", fontsize=10,
                    color="white" if np.isfinite(v) and abs(v) > 0.6 else "#1a1a1a")
        ax.grid(False)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(f"{title}, {label}", fontsize=11)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="correlation")
    return fig


_RATIO_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@_styled
def margin_chart(ratio: pd.Series, margin_balance: pd.Series, maintenance: pd.Series, *, mode: str = "cross",
                 liquidations: pd.DataFrame | None = None, warning: float = 0.8, missing: Sequence = (),
                 symbols: Sequence[str] = (), title: str = "Margin ratio") -> Figure:
    """Top: the margin ratio in percent (maintenance margin / margin balance; in isolated, the highest
    position's) on a log scale, so 2 % and 50 % are both readable; the liquidation line at 100 % (red) and the
    warning at ``warning`` (orange, dashed); liquidations as black crosses; no line while flat. Bottom: margin
    balance and total maintenance margin (USDT)."""
    fig, (top, bottom) = _new_figure(5.4, 2, height_ratios=[1.4, 1.0])
    x = _x(ratio.index)
    r = ratio.astype("float64").replace([np.inf, -np.inf], np.nan).to_numpy()
    r = np.where(r > 0, r, np.nan)
    top.plot(x, r, color=COLORS["strategy"], lw=1.0, zorder=2)
    top.axhline(1.0, color=LIQUIDATION_LINE, lw=1.4, zorder=3)
    top.axhline(warning, color=WARNING_LINE, lw=1.0, ls=(0, (4, 3)), zorder=3)
    handles = [Line2D([], [], color=COLORS["strategy"], lw=1.5, label=f"margin ratio ({mode})"),
               Line2D([], [], color=LIQUIDATION_LINE, lw=1.4, label="liquidation level (100 %)"),
               Line2D([], [], color=WARNING_LINE, lw=1.0, ls=(0, (4, 3)), label=f"warning ({warning * 100:g} %)")]
    n_liq = 0 if liquidations is None else len(liquidations)
    if n_liq:
        times = pd.DatetimeIndex(pd.to_datetime(liquidations["time"], utc=True))
        top.scatter(_x(times), np.ones(n_liq), marker="X", s=90, color=COLORS["liquidation"], edgecolors="white",
                    linewidths=0.6, zorder=4)
        names: dict[pd.Timestamp, list[str]] = {}          # one label per bar: "BTC+ETH" when both went at once
        for t, s in zip(times, liquidations["symbol"] if "symbol" in liquidations else [""] * n_liq):
            names.setdefault(t, []).append(short_name(s))
        for t, who in names.items():
            top.annotate("+".join(dict.fromkeys(who)), (_x(pd.DatetimeIndex([t]))[0], 1.0),
                         textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
        handles.append(Line2D([], [], marker="X", color=COLORS["liquidation"], ls="", markersize=8,
                              label=f"liquidated ({n_liq})"))
    handles += _shade_missing([top, bottom], missing, symbols)
    finite = r[np.isfinite(r)]
    low = max(min(float(finite.min()) if finite.size else 0.01, 0.5) / 1.5, 5e-4)
    high = max(float(finite.max()) if finite.size else 1.0, 1.0) * 1.6
    top.set_yscale("log")
    top.set_ylim(low, high)
    top.yaxis.set_major_locator(FixedLocator([t for t in _RATIO_TICKS if low <= t <= high]))
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:g} %"))
    top.yaxis.set_minor_formatter(NullFormatter())
    top.set_ylabel("margin ratio (log)")
    mb = margin_balance.reindex(ratio.index).to_numpy(dtype="float64")
    mm = maintenance.reindex(ratio.index).to_numpy(dtype="float64")
    bottom.plot(x, mb, color=COLORS["strategy"], lw=1.1, label="margin balance")
    bottom.plot(x, np.where(mm > 0, mm, np.nan), color=LIQUIDATION_LINE, lw=1.0,
                label="maintenance margin (all positions)")
    bottom.set_yscale("log")
    bottom.set_ylabel("USDT (log)")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    bottom.legend(loc="best", ncols=2)
    return _finish_panels(fig, top, bottom, title, handles)


__all__ = ["contribution_chart", "correlation_chart", "exposure_chart", "margin_chart", "short_name", "symbol_color"]
