"""The comparison of a grid of backtests (strategy x date range x symbol): table, statistics, charts and pages.

:func:`build_comparison` turns cell outcomes (``backtests.grid.CellOutcome``: a ``BacktestResult`` or an error) into
one row per cell with its metrics and how far its Sharpe ratio can be trusted (:mod:`reports.statistics`);
:func:`write_comparison` writes the folder:

- ``comparison.csv`` (every column, full precision) and ``comparison.md`` (the columns a reader needs);
- ``sharpe_heatmap.png``: annualised Sharpe, strategy x range, one panel per symbol;
- ``range_<name>.png``: per range, equity and drawdown of every strategy against buy-and-hold, one column per symbol;
- ``cells/<range>__<symbol>__<strategy>/``: each cell's own report folder (``reports.write_report``), or
  ``error.txt`` for a cell that failed;
- ``comparison.html``, last: one self-contained page (images embedded, no scripts, every user string escaped)
  that links the cell folders.

The reference in every range is buy-and-hold of the traded symbol: the initial cash put into the asset at the
first close, 1x, no fees (as in each cell's report). Row order is the order of the outcomes given, so the table does
not depend on which worker finished first.
"""

from __future__ import annotations

import base64
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.charts import BASELINE_COLORS, COLORS, WIDTH, _format_time_axis, _styled, _x, save_figure
from data_feeds.files import atomic_write
from reports.formatting import format_value
from reports.metrics import bar_returns, buy_and_hold_equity, drawdown, result_metrics
from reports.statistics import (annualised_sharpe, block_bootstrap_sharpe,
                                deflated_sharpe_ratio, expected_max_sharpe, probabilistic_sharpe_ratio, sharpe_ratio)
from reports.writer import LOG_SCALE_RATIO, write_report

if TYPE_CHECKING:
    from backtests.grid import CellOutcome
    from backtests.result import BacktestResult

BEATS = "Beats B&H"
REFERENCE = "buy & hold (1x, no fees)"
VERDICT_CONFIDENT, VERDICT_LUCK, VERDICT_NO, VERDICT_NA = "yes, with confidence", "only by luck", "no", "n/a"
METRIC_KEYS = {"Bars": "Bars", "Return [%]": "Return [%]", "B&H return [%]": "Buy & hold return [%]",
               "CAGR [%]": "CAGR [%]", "Max drawdown [%]": "Max drawdown [%]", "Exposure [%]": "Exposure [%]",
               "Trades": "Trades", "Win rate [%]": "Win rate [%]", "Fees paid [USDT]": "Fees paid [USDT]",
               "Funding paid [USDT]": "Funding paid [USDT]", "Sharpe": "Sharpe", "Sortino": "Sortino"}
"""Table column -> ``compute_metrics`` key."""
STAT_COLUMNS = ("Sharpe CI low", "Sharpe CI high", "B&H Sharpe", "PSR vs 0", "PSR vs B&H", "DSR vs 0", "DSR vs B&H")
ID_COLUMNS = ("strategy", "range", "symbol", "start", "end", "status", "error")
COLUMNS = (*ID_COLUMNS, *METRIC_KEYS, *STAT_COLUMNS, BEATS)
SHORT_COLUMNS = ("Return [%]", "B&H return [%]", "Sharpe", "Sharpe CI", "B&H Sharpe", "Max drawdown [%]", "Trades",
                 "PSR vs 0", "PSR vs B&H", "DSR vs B&H", BEATS)
"""The columns of the Markdown and HTML tables (all of them are in the CSV)."""


@dataclass
class Comparison:
    """The table and the grid-wide numbers behind its deflated Sharpe ratios (annualised Sharpe units).

    ``trials``: cells with a defined Sharpe ratio (every configuration tried counts); ``sharpe_std``: the standard
    deviation of their Sharpe ratios; ``expected_max_sharpe``: what the best of them would reach by luck alone.
    """

    table: pd.DataFrame
    trials: int
    sharpe_std: float
    expected_max_sharpe: float
    confidence: float
    n_boot: int
    timeframe: str | None


# ---------------------------------------------------------------- the table

def verdict(sharpe: float, bh_sharpe: float, dsr_vs_bh: float, confidence: float) -> str:
    """Does the cell beat buy-and-hold? ``"no"`` when its Sharpe is not higher; ``"yes, with confidence"`` when the
    deflated PSR against buy-and-hold's Sharpe reaches ``confidence``; else ``"only by luck"``; ``"n/a"`` when a
    Sharpe ratio is undefined (no spread, as for ``flat``). Sharpe 1.2 vs 0.4 with DSR vs B&H 0.97 -> confident."""
    if not (math.isfinite(sharpe) and math.isfinite(bh_sharpe)):
        return VERDICT_NA
    if sharpe <= bh_sharpe:
        return VERDICT_NO
    return VERDICT_CONFIDENT if math.isfinite(dsr_vs_bh) and dsr_vs_bh >= confidence else VERDICT_LUCK


def _returns(result: "BacktestResult") -> tuple[np.ndarray, np.ndarray]:
    """Per-bar returns of the strategy and of buy-and-hold on the same bars (both from the initial cash)."""
    cash = float(result.initial_cash)
    strat = bar_returns(result.equity, cash).to_numpy()
    bh = bar_returns(buy_and_hold_equity(result.prices["close"], cash), cash).to_numpy()
    return strat, bh


def build_comparison(outcomes: Sequence["CellOutcome"], *, confidence: float = 0.95, n_boot: int = 1000,
                     seed: int = 0) -> Comparison:
    """One row per outcome (columns :data:`COLUMNS`), in the order given, plus the grid's deflation numbers.

    Per cell: compute_metrics figures; a ``confidence`` block-bootstrap interval of the annualised Sharpe
    (``n_boot`` resamples, blocks of ``n ** (1/3)`` bars, ``seed``); PSR against 0 and against buy-and-hold's
    Sharpe on the same bars; DSR against both, deflated by the expected maximum Sharpe of all the grid's trials.
    """
    ok = [o for o in outcomes if o.ok]
    per_bar: dict[int, tuple[np.ndarray, float, float]] = {}
    for i, o in enumerate(outcomes):
        if o.ok:
            r, bh = _returns(o.result)
            per_bar[i] = (r, sharpe_ratio(r), sharpe_ratio(bh))
    trial_sharpes = np.array([sr for _, sr, _ in per_bar.values() if math.isfinite(sr)])
    timeframe = ok[0].result.timeframe if ok else None
    rows = []
    for i, o in enumerate(outcomes):
        row = {"strategy": o.cell.strategy, "range": o.cell.range.name, "symbol": o.cell.symbol,
               "start": o.cell.range.start, "end": o.cell.range.end, "status": "ok" if o.ok else "error",
               "error": "" if o.ok else (o.error or "no result"), BEATS: ""}
        if i in per_bar:
            r, sr, sr_bh = per_bar[i]
            tf = o.result.timeframe
            metrics = result_metrics(o.result)
            row.update({col: metrics.get(key, np.nan) for col, key in METRIC_KEYS.items()})
            low, high = block_bootstrap_sharpe(r, confidence=confidence, n_boot=n_boot, seed=seed)
            dsr_bh = deflated_sharpe_ratio(r, trial_sharpes, sr_bh) if math.isfinite(sr_bh) else np.nan
            row.update({
                "Sharpe CI low": annualised_sharpe(low, tf), "Sharpe CI high": annualised_sharpe(high, tf),
                "B&H Sharpe": annualised_sharpe(sr_bh, tf),
                "PSR vs 0": probabilistic_sharpe_ratio(r, 0.0),
                "PSR vs B&H": probabilistic_sharpe_ratio(r, sr_bh) if math.isfinite(sr_bh) else np.nan,
                "DSR vs 0": deflated_sharpe_ratio(r, trial_sharpes, 0.0), "DSR vs B&H": dsr_bh,
                BEATS: verdict(sr, sr_bh, dsr_bh, confidence)})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in (*METRIC_KEYS, *STAT_COLUMNS):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    n = int(trial_sharpes.size)
    variance = float(np.var(trial_sharpes, ddof=1)) if n > 1 else 0.0
    per_bar_max = expected_max_sharpe(n, variance) if n else float("nan")
    scale = (lambda x: annualised_sharpe(x, timeframe)) if timeframe else (lambda x: float("nan"))
    return Comparison(table, n, scale(math.sqrt(variance)), scale(per_bar_max), confidence, n_boot, timeframe)


# ---------------------------------------------------------------- text

def _fmt(column: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if column.startswith(("PSR", "DSR")):
        return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"
    if column in ("Bars", "Trades") and isinstance(value, float) and np.isfinite(value):
        return f"{int(value):,}"
    return format_value(column, value)


def short_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """The table as text cells: identity columns, :data:`SHORT_COLUMNS` (``"Sharpe CI"`` as ``"[0.12, 1.80]"``)
    and ``error``."""
    out = []
    for row in table.to_dict("records"):
        cells = {k: str(row[k]) for k in ("strategy", "range", "symbol")}
        for col in SHORT_COLUMNS:
            if col == "Sharpe CI":
                lo, hi = row["Sharpe CI low"], row["Sharpe CI high"]
                cells[col] = f"[{_fmt('Sharpe', lo)}, {_fmt('Sharpe', hi)}]" if np.isfinite(lo) else "-"
            else:
                cells[col] = _fmt(col, row[col])
        cells["error"] = str(row["error"])
        out.append(cells)
    return out


def method_notes(c: Comparison) -> list[str]:
    """Plain sentences on how the statistics were made, for the Markdown and HTML pages."""
    pct = f"{c.confidence:.0%}"
    return [
        "Reference (B&H): buy-and-hold of the symbol over the same bars, initial cash at the first close, 1x, no fees.",
        f"Sharpe CI: {pct} percentile interval of the annualised Sharpe ratio from {c.n_boot:,} circular block-"
        "bootstrap resamples of the bar returns (blocks of n^(1/3) bars, fixed seed).",
        "PSR: probability that the true Sharpe ratio exceeds 0 (PSR vs 0) or buy-and-hold's Sharpe on the same bars "
        "(PSR vs B&H), allowing for skewness and fat tails (Bailey & López de Prado 2012).",
        f"DSR: the PSR against the Sharpe ratio the best of the grid's {c.trials} trials would reach by luck alone "
        f"(expected maximum {_fmt('Sharpe', c.expected_max_sharpe)} annualised, from the spread "
        f"{_fmt('Sharpe', c.sharpe_std)} of their Sharpe ratios; Bailey & López de Prado 2014).",
        f"{BEATS}: '{VERDICT_CONFIDENT}' when the Sharpe ratio is above buy-and-hold's and the DSR vs B&H is at "
        f"least {c.confidence:.2f}; '{VERDICT_LUCK}' when it is above but not by enough to rule out luck.",
    ]


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def comparison_markdown(c: Comparison, title: str = "Comparison") -> str:
    """The table as GitHub Markdown (user strings with ``|`` escaped) and the notes on the method."""
    head = ["strategy", "range", "symbol", *SHORT_COLUMNS, "error"]
    lines = [f"# {_md(title)}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 3 or h in (BEATS, "error") else "---:" for i, h in enumerate(head)) + "|"]
    for cells in short_rows(c.table):
        lines.append("| " + " | ".join(_md(cells[h]) for h in head) + " |")
    lines += ["", *[f"- {_md(n)}" for n in method_notes(c)], ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- charts

def _strategy_colors(strategies: Sequence[str]) -> dict[str, str]:
    palette = (COLORS["strategy"], *BASELINE_COLORS)
    return {s: palette[i % len(palette)] for i, s in enumerate(dict.fromkeys(strategies))}


@_styled
def sharpe_heatmap(table: pd.DataFrame) -> Figure:
    """Annualised Sharpe per strategy (rows) and range (columns), one panel per symbol; each cell says whether it
    beats buy-and-hold with confidence (``beats B&H``) or only by luck (``luck``); failed cells read ``error``."""
    strategies = list(dict.fromkeys(table["strategy"]))
    ranges = list(dict.fromkeys(table["range"]))
    symbols = list(dict.fromkeys(table["symbol"]))
    values = table["Sharpe"].to_numpy(dtype="float64")
    vmax = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0, 0.5)
    panel = 0.9 + 0.42 * len(strategies)
    fig = Figure(figsize=(min(WIDTH, 3.2 + 1.6 * len(ranges)), panel * len(symbols)), layout="constrained")
    axes = fig.subplots(len(symbols), 1, squeeze=False)[:, 0]
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e6e6e6")
    tags = {VERDICT_CONFIDENT: "beats B&H", VERDICT_LUCK: "luck"}
    image = None
    for ax, symbol in zip(axes, symbols):
        grid = np.full((len(strategies), len(ranges)), np.nan)
        text = [["" for _ in ranges] for _ in strategies]
        for row in table[table["symbol"] == symbol].to_dict("records"):
            i, j = strategies.index(row["strategy"]), ranges.index(row["range"])
            grid[i, j] = row["Sharpe"]
            if row["status"] != "ok":
                text[i][j] = "error"
            else:
                tag = tags.get(row[BEATS], "")
                text[i][j] = (f"{row['Sharpe']:.2f}" if np.isfinite(row["Sharpe"]) else "n/a") + (f"\n{tag}" if tag else "")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
        for (i, j), label in np.ndenumerate(np.array(text, dtype=object)):
            strong = np.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.65 * vmax
            ax.text(j, i, label, ha="center", va="center", fontsize=8.5, color="white" if strong else "#1a1a1a")
        ax.set_xticks(range(len(ranges)), ranges)
        ax.set_yticks(range(len(strategies)), strategies)
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(f"Sharpe (annualised): {symbol}", pad=6)
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="Sharpe")
    return fig


@_styled
def range_chart(outcomes: Sequence["CellOutcome"], title: str) -> Figure:
    """Equity (top) and drawdown (bottom) of every successful cell of one range, one column per symbol, with
    buy-and-hold of the symbol (dark grey, dashed, drawn on top) as the reference. Equity goes on a log scale
    where a column's curves span more than ``LOG_SCALE_RATIO`` (5x), as in a cell's own report."""
    done = [o for o in outcomes if o.ok]
    symbols = list(dict.fromkeys(o.cell.symbol for o in outcomes))
    colors = _strategy_colors([o.cell.strategy for o in outcomes])
    fig = Figure(figsize=(WIDTH, 5.6), layout="constrained")
    axes = fig.subplots(2, len(symbols), squeeze=False, sharex="col", gridspec_kw={"height_ratios": [2.2, 1.0]})
    handles: dict[str, Line2D] = {}
    for col, symbol in enumerate(symbols):
        top, bottom = axes[0, col], axes[1, col]
        mine = [o for o in done if o.cell.symbol == symbol]
        for o in mine:
            eq, color = o.result.equity, colors[o.cell.strategy]
            handles[o.cell.strategy] = top.plot(_x(eq.index), eq.to_numpy(dtype="float64"), color=color, lw=1.2)[0]
            bottom.plot(_x(eq.index), drawdown(eq).to_numpy() * 100, color=color, lw=0.9)
        if mine:
            ref = mine[0].result
            bh = buy_and_hold_equity(ref.prices["close"], ref.initial_cash)
            for ax, y in ((top, bh), (bottom, drawdown(bh) * 100)):
                line = ax.plot(_x(y.index), y.to_numpy(dtype="float64"), color="#444444", lw=1.0, ls=(0, (4, 3)),
                               zorder=4)[0]
            handles[REFERENCE] = line
            curves = [bh, *[o.result.equity for o in mine]]
            low, high = min(float(c.min()) for c in curves), max(float(c.max()) for c in curves)
            if low > 0 and high / low > LOG_SCALE_RATIO:
                top.set_yscale("log")
                top.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
                top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
                top.yaxis.set_minor_formatter(NullFormatter())
            _format_time_axis(bottom)
        failed = [o.cell.strategy for o in outcomes if o.cell.symbol == symbol and not o.ok]
        top.set_title(symbol + (f" (failed: {', '.join(failed)})" if failed else ""), fontsize=10)
        top.set_ylabel("equity [USDT]" + (" (log)" if top.get_yscale() == "log" else ""))
        bottom.set_ylabel("drawdown [%]")
        for ax in (top, bottom):
            ax.margins(x=0)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside upper right", ncols=min(len(handles), 6),
                   frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
    return fig


# ---------------------------------------------------------------- files

def report_files(result: "BacktestResult") -> dict[str, bytes]:
    """A cell's report folder (``write_report``) rendered in a temporary folder and returned as ``{name: bytes}``,
    so a worker with no disk shared with the client can send it back with the result."""
    with tempfile.TemporaryDirectory(prefix="lstmbt-cell-") as tmp:
        write_report(result, tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


_CSS = """body{margin:0;background:#f6f7f9;color:#1d2329;font:15px/1.45 -apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:16px}h1{font-size:1.5rem;overflow-wrap:anywhere}h2{font-size:1.15rem}
section{background:#fff;border-radius:6px;padding:4px 14px 14px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.wrap{overflow-x:auto}table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.88rem}
th,td{padding:4px 8px;border-bottom:1px solid #e6e8eb;white-space:nowrap;text-align:right}
th{background:#f0f3f6}td:nth-child(-n+3),th:nth-child(-n+3),td.text{text-align:left}
tr.error td{background:#fdecea}tr.confident td{background:#e9f6ec}td.err{white-space:normal;min-width:18em}
img{display:block;max-width:100%;height:auto;border:1px solid #eceef1;border-radius:4px;margin:8px 0}
li{margin:.25em 0}"""


def _png_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def comparison_html(c: Comparison, charts: Sequence[tuple[str, bytes]], links: dict[int, str],
                    title: str = "Comparison") -> str:
    """The page: the table (each strategy linked to its cell folder via ``links``, row index -> relative path),
    the notes on the method and the charts ``(title, png)`` embedded as data URIs."""
    head = ["strategy", "range", "symbol", *SHORT_COLUMNS, "error"]
    body = []
    for i, (cells, status) in enumerate(zip(short_rows(c.table), c.table["status"])):
        tds = []
        for h in head:
            text = escape(cells[h])
            if h == "strategy" and i in links:
                text = f'<a href="{escape(links[i], quote=True)}">{text}</a>'
            css = ' class="err"' if h == "error" else ' class="text"' if h == BEATS else ""
            tds.append(f"<td{css}>{text}</td>")
        row_class = "error" if status != "ok" else "confident" if cells[BEATS] == VERDICT_CONFIDENT else ""
        body.append(f'<tr class="{row_class}">{"".join(tds)}</tr>')
    table = (f'<div class="wrap"><table><thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in head)}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table></div>')
    notes = "".join(f"<li>{escape(n)}</li>" for n in method_notes(c))
    figures = "".join(f"<h2>{escape(t)}</h2>{_png_tag(png, t)}" for t, png in charts)
    failed = int((c.table["status"] != "ok").sum())
    summary = f"{len(c.table)} cells, {failed} failed." if failed else f"{len(c.table)} cells."
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body><main><h1>{escape(title)}</h1><p>{escape(summary)} Each strategy "
            f"links to its cell's own report.</p><section><h2>Results</h2>{table}<ul>{notes}</ul></section>"
            f"<section>{figures}</section></main></body>\n</html>\n")


def _render(fig: Figure, path: Path) -> bytes:
    save_figure(fig, path)
    return path.read_bytes()


def write_comparison(outcomes: Sequence["CellOutcome"], out_dir: str | os.PathLike, *, title: str = "Comparison",
                     confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[Path, Comparison]:
    """Write the comparison folder (see the module docstring); returns (``comparison.html``'s path, the table).

    Cell folders come from each outcome's rendered ``files`` (none when cell reports were turned off); a failed
    cell gets ``error.txt`` with its error and traceback.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = build_comparison(outcomes, confidence=confidence, n_boot=n_boot, seed=seed)
    links: dict[int, str] = {}
    for i, o in enumerate(outcomes):
        folder = out / "cells" / o.cell.slug
        for name, data in o.files.items():
            atomic_write(folder / Path(name).name, data)
        if not o.ok:
            atomic_write(folder / "error.txt", f"{o.cell.label}\n{o.error}\n\n{o.detail}")
        page = "report.html" if "report.html" in o.files else "error.txt" if not o.ok else None
        if page:
            links[i] = f"cells/{o.cell.slug}/{page}"
    atomic_write(out / "comparison.csv", c.table.to_csv(index=False, lineterminator="\n"))
    atomic_write(out / "comparison.md", comparison_markdown(c, title))
    charts = [("Sharpe ratio by strategy and range", _render(sharpe_heatmap(c.table), out / "sharpe_heatmap.png"))]
    for name in dict.fromkeys(o.cell.range.name for o in outcomes):
        mine = [o for o in outcomes if o.cell.range.name == name]
        if any(o.ok for o in mine):
            r = mine[0].cell.range
            label = f"{name}: {r.start} .. {r.end}"
            slug = mine[0].cell.slug.split("__")[0]
            charts.append((f"Equity and drawdown, {label}", _render(range_chart(mine, label), out / f"range_{slug}.png")))
    page = atomic_write(out / "comparison.html", comparison_html(c, charts, links, title))
    return page, c


__all__ = ["BEATS", "COLUMNS", "Comparison", "build_comparison", "comparison_html", "comparison_markdown",
           "range_chart", "report_files", "sharpe_heatmap", "short_rows", "verdict", "write_comparison"]
