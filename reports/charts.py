"""Report charts: price with positions and fills, equity vs baselines, drawdown, monthly returns, model probabilities.

Each function takes plain pandas objects and returns a ``matplotlib.figure.Figure``; :func:`save_figure` writes
a PNG. Figures are built with the object-oriented API (``Figure()``, no pyplot), so no GUI backend is ever
needed or switched: PNGs render through Agg on a headless machine, and a notebook's own backend is left alone.

Colours are the same everywhere: long green, short red, flat grey, the strategy blue, buy-and-hold grey.
Time axes are UTC. A year of hourly bars (8,760 points) renders in well under a second per chart.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.errors import ReportError
from data_feeds.files import atomic_path
from reports.metrics import drawdown, monthly_returns

COLORS = {"long": "#2e9e44", "short": "#d64541", "flat": "#9e9e9e", "strategy": "#1f77b4",
          "buy_hold": "#6f6f6f", "price": "#262626", "liquidation": "#000000"}
BASELINE_COLORS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
"""Colours for strategies without a fixed one (see :func:`strategy_color`)."""
STRATEGY_COLORS = {"lstm": "#1f77b4", "buy_hold": "#6f6f6f", "sma_cross": "#ff7f0e", "flat": "#9467bd",
                   "momentum": "#8c564b", "strategy": "#1f77b4", "gru": "#17becf", "transformer": "#e377c2",
                   "logreg": "#2ca02c", "gbm": "#bcbd22"}
"""The fixed colour of each shipped strategy, the same in every chart of every report and comparison."""
MAX_FILL_MARKERS = 300
"""Above this many fills, the price chart draws entries only (smaller), exits being where the shading ends."""


def strategy_color(name: str) -> str:
    """The colour of a strategy by name: fixed for the shipped ones (``STRATEGY_COLORS``; ``"buy_hold 1x"`` is
    ``buy_hold``'s), else one of ``BASELINE_COLORS`` chosen by a hash of the name, so a user's strategy keeps its
    colour from one report to the next whatever else is drawn."""
    key = str(name).split(" ")[0]
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    if key == "buy" or (key.startswith("buy") and "hold" in key):     # "buy & hold ..." labels too
        return STRATEGY_COLORS["buy_hold"]
    digest = sum((i + 1) * ord(c) for i, c in enumerate(key))
    return BASELINE_COLORS[digest % len(BASELINE_COLORS)]
PREDICTION_COLUMNS = ("short", "flat", "long")
"""Column order of ``BacktestResult.predictions`` (``strategies.signal.CLASS_NAMES``)."""
DPI = 110
WIDTH = 11.0   # inches: 1,210 px at DPI 110

_RC = {"font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold", "axes.titlelocation": "left",
       "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
       "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "axes.spines.top": False,
       "axes.spines.right": False, "legend.frameon": False, "timezone": "UTC"}


def _styled(fn):
    """Run a chart function under the report style (fonts, grid, spines) without touching global rcParams."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------- time axis helpers

def _x(index: pd.DatetimeIndex) -> np.ndarray:
    """Timestamps as naive UTC datetime64, which matplotlib plots as dates."""
    if not isinstance(index, pd.DatetimeIndex):
        raise ReportError("chart series must be indexed by timestamps (DatetimeIndex)")
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy()


def _bar_width(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common spacing of the index (one bar); one hour when there is a single bar."""
    if len(index) < 2:
        return pd.Timedelta(hours=1)
    steps = np.diff(index.as_unit("ns").asi8)
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def _format_time_axis(ax, label: bool = True) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=True))
    if label:
        ax.set_xlabel("time (UTC)")


def _thousands(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.4g}"))


def _legend_on_title_line(ax, handles=None) -> None:
    """Legend right-aligned above the plot, level with the left-aligned title, so it never hides data."""
    kwargs = {"handles": handles} if handles is not None else {}
    n = len(handles) if handles is not None else len(ax.get_legend_handles_labels()[0])
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=max(n, 1), borderaxespad=0.2, **kwargs)


def _new_figure(height: float, nrows: int = 1, height_ratios=None) -> tuple[Figure, list]:
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)[:, 0]
    return fig, list(axes)


# ---------------------------------------------------------------- position shading

def _runs(position: pd.Series, bar: pd.Timedelta) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, np.ndarray]:
    values = np.nan_to_num(position.to_numpy(dtype="float64"))
    signs = np.where(np.abs(values) <= 1e-12, 0, np.sign(values)).astype(int)
    change = np.flatnonzero(np.diff(signs)) + 1
    index = pd.DatetimeIndex(position.index)
    starts = index[np.r_[0, change]]
    ends = index[change].append(pd.DatetimeIndex([index[-1] + bar]))
    return starts, ends, signs[np.r_[0, change]]


def sign_runs(position: pd.Series, bar: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Runs of equal position sign as ``(start, end, sign)``, end exclusive (the next run's start, or the last
    bar's open + ``bar``). Hourly positions ``[0, 1, 1, -1]`` from 00:00 give
    ``[(00:00, 01:00, 0), (01:00, 03:00, 1), (03:00, 04:00, -1)]``."""
    if len(position) == 0:
        return []
    starts, ends, signs = _runs(position, bar)
    return [(s, e, int(g)) for s, e, g in zip(starts, ends, signs)]


def _shade_positions(ax, position: pd.Series, bar: pd.Timedelta) -> None:
    """One PolyCollection per side, one rectangle per run: thousands of bars cost a handful of rectangles."""
    starts, ends, signs = _runs(position, bar)
    x0, x1 = mdates.date2num(_x(starts)), mdates.date2num(_x(ends))
    for sign, name in ((1, "long"), (-1, "short")):
        pick = signs == sign
        if pick.any():
            a, b = x0[pick], x1[pick]
            verts = np.stack([np.c_[a, np.zeros_like(a)], np.c_[a, np.ones_like(a)],
                              np.c_[b, np.ones_like(b)], np.c_[b, np.zeros_like(b)]], axis=1)
            ax.add_collection(PolyCollection(verts, facecolors=COLORS[name], alpha=0.16, linewidths=0,
                                             transform=ax.get_xaxis_transform(), zorder=0, label=f"_{name}"),
                              autolim=False)


# ---------------------------------------------------------------- the charts

@_styled
def price_chart(close: pd.Series, position: pd.Series | None = None, fills: pd.DataFrame | None = None, *,
                title: str = "Price and position") -> Figure:
    """Close price with the position's side as background (long green, short red, flat unshaded) and fills as
    markers at their execution price: long entry ^ green, short entry v red, exit o hollow, liquidation X black
    (see :func:`fill_roles`)."""
    fig, (ax,) = _new_figure(4.6)
    x = _x(close.index)
    bar = _bar_width(close.index)
    ax.plot(x, close.to_numpy(dtype="float64"), color=COLORS["price"], lw=0.8, label="close", zorder=2)
    handles = [Line2D([], [], color=COLORS["price"], lw=1, label="close")]
    if position is not None and len(position):
        _shade_positions(ax, position, bar)
        handles += [Patch(color=COLORS["long"], alpha=0.3, label="long"),
                    Patch(color=COLORS["short"], alpha=0.3, label="short")]
    if fills is not None and len(fills):
        handles += _plot_fills(ax, fills)
    ax.set_xlim(x[0], _x(pd.DatetimeIndex([close.index[-1] + bar]))[0])
    ax.set_ylabel("price [USDT]")
    _thousands(ax)
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_on_title_line(ax, handles=handles)
    return fig


def fill_roles(fills: pd.DataFrame) -> np.ndarray:
    """Per fill, in time order: ``"entry"`` when it opens, adds to or flips the position, ``"exit"`` when it only
    reduces or closes it, ``"liquidation"`` for a forced close. Sizes ``[+1, -2, +1]`` give entry (long), entry
    (flips to short), exit."""
    size = fills["size"].to_numpy(dtype="float64")
    liq = (fills["kind"].astype(str) == "liquidation").to_numpy() if "kind" in fills else np.zeros(len(size), bool)
    before = np.r_[0.0, np.cumsum(size)[:-1]]
    after = before + size
    reduces = (np.abs(before) > 1e-12) & (np.sign(size) != np.sign(before)) & (np.sign(after) != -np.sign(before))
    return np.where(liq, "liquidation", np.where(reduces, "exit", "entry"))


def _plot_fills(ax, fills: pd.DataFrame) -> list:
    """Entries as triangles in the side's colour (long ^ green, short v red), exits as hollow circles, liquidations
    as black crosses, all at the execution price."""
    times = pd.DatetimeIndex(pd.to_datetime(fills["time"], utc=True))
    size = fills["size"].to_numpy(dtype="float64")
    price = fills["price"].to_numpy(dtype="float64")
    role = fill_roles(fills)
    x = _x(times)
    crowded = len(fills) > MAX_FILL_MARKERS
    area = 60 if len(fills) <= 200 else 34 if not crowded else 14   # smaller markers as they crowd the line
    handles = []
    styles = (((role == "entry") & (size > 0), "^", COLORS["long"], COLORS["long"], "long entry"),
              ((role == "entry") & (size < 0), "v", COLORS["short"], COLORS["short"], "short entry"),
              ((role == "exit") & (not crowded), "o", "white", COLORS["price"], "exit"),
              (role == "liquidation", "X", COLORS["liquidation"], COLORS["liquidation"], "liquidation"))
    for mask, marker, face, edge, label in styles:
        if mask.any():
            hollow = face == "white"
            ax.scatter(x[mask], price[mask], marker=marker, s=area * (0.7 if hollow else 1), facecolors=face,
                       edgecolors=edge if hollow else "white", linewidths=1.1 if hollow else 0.5, zorder=3)
            handles.append(Line2D([], [], marker=marker, markerfacecolor=face, markeredgecolor=edge, ls="",
                                  markersize=7, label=label))
    if crowded:
        handles.append(Line2D([], [], ls="", label=f"{len(fills):,} fills: exits not marked"))
    return handles


@_styled
def equity_chart(equity: pd.Series, buy_hold: pd.Series | None = None,
                 baselines: Sequence[tuple[str, pd.Series]] = (), *, name: str = "strategy", log: bool = False,
                 buy_hold_name: str = "buy & hold", title: str = "Equity") -> Figure:
    """Strategy equity against buy-and-hold (grey, dashed) and any extra ``(name, equity)`` baselines, in USDT, each
    in its strategy's colour (:func:`strategy_color`);
    ``log=True`` puts equity on a log scale, where equal percentage moves look equal."""
    fig, (ax,) = _new_figure(4.4)
    for label, series in baselines:
        ax.plot(_x(series.index), series.to_numpy(dtype="float64"), lw=1.0, color=strategy_color(label),
                label=label, zorder=2)
    if buy_hold is not None:
        ax.plot(_x(buy_hold.index), buy_hold.to_numpy(dtype="float64"), lw=1.1, color=STRATEGY_COLORS["buy_hold"],
                ls=(0, (5, 2)), label=buy_hold_name, zorder=2)
    ax.plot(_x(equity.index), equity.to_numpy(dtype="float64"), lw=1.4, color=strategy_color(name), label=name,
            zorder=3)
    ax.axhline(float(equity.iloc[0]), color="#555555", lw=0.7, ls=(0, (4, 3)), zorder=1)   # the starting capital
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))   # labels every 2-3x
        ax.yaxis.set_minor_formatter(NullFormatter())
    _thousands(ax)
    ax.set_ylabel("equity [USDT]" + (" (log)" if log else ""))
    ax.margins(x=0)
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_on_title_line(ax)
    return fig


@_styled
def drawdown_chart(equity: pd.Series, buy_hold: pd.Series | None = None, *, name: str = "strategy",
                   buy_hold_name: str = "buy & hold", title: str = "Drawdown") -> Figure:
    """Underwater curve: percent below the running equity peak (strategy filled in its colour, buy-and-hold as a
    grey dashed line),
    with the deepest point labelled."""
    fig, (ax,) = _new_figure(3.2)
    dd = drawdown(equity) * 100
    x = _x(dd.index)
    y = dd.to_numpy()
    bh = drawdown(buy_hold).to_numpy() * 100 if buy_hold is not None else None
    if buy_hold is not None:
        ax.plot(_x(buy_hold.index), bh, color=STRATEGY_COLORS["buy_hold"], lw=0.9, ls=(0, (5, 2)),
                label=buy_hold_name)
    color = strategy_color(name)
    ax.fill_between(x, y, 0, color=color, alpha=0.3, lw=0, label=name)
    ax.plot(x, y, color=color, lw=0.8)
    worst = int(np.argmin(y))
    if y[worst] < 0:
        ax.annotate(f"max {y[worst]:.1f} %", (x[worst], y[worst]), xytext=(0, -4), textcoords="offset points",
                    fontsize=9, ha="center", va="top", color="#7a1f1d", zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_ylabel("drawdown [%]")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.margins(x=0)
    low = min(float(np.nanmin(y)), float(np.nanmin(bh)) if buy_hold is not None else 0.0, -1.0)
    ax.set_ylim(low * 1.15, 0.5)       # room under the deepest point for its label
    _format_time_axis(ax)
    ax.set_title(title)
    _legend_on_title_line(ax)
    return fig


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@_styled
def monthly_returns_chart(equity: pd.Series, initial_cash: float | None = None, *,
                          title: str = "Monthly returns [%]") -> Figure:
    """Year x month heatmap of returns (green gains, red losses, each cell annotated in %), with the year's
    compounded return in a last column."""
    table = monthly_returns(equity, initial_cash)
    year = (1 + table).prod(axis=1, min_count=1) - 1
    values = np.column_stack([table.to_numpy(dtype="float64"), year.to_numpy(dtype="float64")]) * 100
    nrows = values.shape[0]
    fig, (ax,) = _new_figure(1.3 + 0.55 * nrows)
    months = values[:, :12][np.isfinite(values[:, :12])]     # the year column saturates rather than set the scale
    vmax = max(float(np.abs(months).max()) if months.size else 1.0, 1e-9)
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#f2f2f2")
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            strong = abs(v) > 0.65 * vmax
            ax.text(j, i, f"{v:+.1f}%", ha="center", va="center", fontsize=9,
                    color="white" if strong else "#1a1a1a", fontweight="bold" if j == 12 else "normal")
    ax.axvline(11.5, color="white", lw=4)
    ax.set_xticks(range(13), [*_MONTHS, "Year"])
    ax.set_yticks(range(nrows), [str(y) for y in table.index])
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, pad=6)
    return fig


def _mark_folds(axes, boundaries: Sequence[pd.Timestamp], label_ax) -> None:
    """Dashed vertical lines at each walk-forward fold's first bar, numbered on ``label_ax``."""
    for k, t in enumerate(boundaries, start=1):
        xt = _x(pd.DatetimeIndex([pd.Timestamp(t)]))[0]
        for ax in axes:
            ax.axvline(xt, color="#444444", lw=0.8, ls=(0, (4, 3)), zorder=4)
        label_ax.annotate(f"fold {k}", (xt, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                          textcoords="offset points", ha="left", va="top", fontsize=8, color="#444444")


@_styled
def predictions_chart(close: pd.Series, predictions: pd.DataFrame, *, fold_boundaries: Sequence = (),
                      min_confidence: float | pd.Series | None = None,
                      title: str = "Model class probabilities") -> Figure:
    """Close price on top and, under it on the same time axis, the model's stacked class probabilities
    (short red at the bottom, flat grey, long green on top; each bar's three sum to 1), then the confidence (the
    winning class's probability, coloured by that class) with ``min_confidence`` as a dashed line: one number,
    or a Series of thresholds indexed by the time each takes effect (one per walk-forward fold), drawn as steps.
    ``fold_boundaries``: first bar of each walk-forward fold, drawn as dashed vertical lines across all panels."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ReportError(f"predictions lack column(s) {', '.join(missing)}; expected {', '.join(PREDICTION_COLUMNS)}")
    fig, (top, middle, bottom) = _new_figure(6.4, 3, height_ratios=[1.6, 1.0, 0.8])
    top.plot(_x(close.index), close.to_numpy(dtype="float64"), color=COLORS["price"], lw=0.8)
    top.set_ylabel("price [USDT]")
    _thousands(top)
    top.set_title(title)
    x = _x(predictions.index)
    probs = predictions[list(PREDICTION_COLUMNS)].to_numpy(dtype="float64")
    middle.stackplot(x, probs.T, colors=[COLORS[c] for c in PREDICTION_COLUMNS], alpha=0.85,
                     labels=list(PREDICTION_COLUMNS), lw=0)
    middle.set_ylim(0, 1)
    middle.set_ylabel("probability")
    middle.margins(x=0)
    _confidence(bottom, x, probs, min_confidence)
    handles = [Patch(color=COLORS[c], alpha=0.85, label=c) for c in PREDICTION_COLUMNS]
    if len(fold_boundaries):
        _mark_folds((top, middle, bottom), fold_boundaries, top)
        handles.append(Line2D([], [], color="#444444", lw=0.8, ls=(0, (4, 3)), label="fold start"))
    _legend_on_title_line(top, handles=handles)
    _format_time_axis(bottom)
    return fig


def _confidence(ax, x: np.ndarray, probs: np.ndarray, min_confidence: float | pd.Series | None) -> None:
    """The winning class's probability per bar as dots coloured by class (a 1/3 floor: three classes)."""
    winner = np.nan_to_num(probs, nan=-1.0).argmax(axis=1)
    conf = probs[np.arange(len(probs)), winner]
    size = 2.0 if len(x) > 2000 else 6.0
    for k, name in enumerate(PREDICTION_COLUMNS):
        pick = winner == k
        if pick.any():
            ax.scatter(x[pick], conf[pick], s=size, color=COLORS[name], lw=0, alpha=0.7, rasterized=True)
    if isinstance(min_confidence, pd.Series) and len(min_confidence) and len(x):
        starts = np.maximum(_x(pd.DatetimeIndex(min_confidence.index)), x[0])
        levels = min_confidence.to_numpy(dtype="float64")
        ax.step(np.append(starts, x[-1]), np.append(levels, levels[-1]), where="post", color="#222222", lw=0.8,
                ls=(0, (4, 3)))
        ax.annotate("trades above the dashed threshold (tuned per fold)", (1.0, 1.0), xycoords="axes fraction",
                    xytext=(-3, -3), textcoords="offset points", ha="right", va="top", fontsize=8)
    elif min_confidence is not None and not isinstance(min_confidence, pd.Series):
        ax.axhline(min_confidence, color="#222222", lw=0.8, ls=(0, (4, 3)))
        ax.annotate(f"trades above {min_confidence:.2f}", (1.0, min_confidence), xycoords=("axes fraction", "data"),
                    xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8)
    ax.set_ylim(1 / 3 - 0.02, 1.0)
    ax.set_ylabel("confidence")
    ax.margins(x=0)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG (110 dpi) atomically (temp file, then ``os.replace``) and release it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    if "matplotlib.pyplot" in sys.modules:       # a figure made through pyplot is registered there: close it
        sys.modules["matplotlib.pyplot"].close(fig)
    fig.clear()
    return Path(path)
