"""The comparison of a grid of backtests (strategy x date range x symbol): table, statistics, charts and pages.

:func:`build_comparison` turns cell outcomes (``backtests.compare.grid.CellOutcome``: a ``BacktestResult`` or an error) into
one row per cell with its metrics and how far its Sharpe ratio can be trusted (:mod:`reports.statistics`);
:func:`write_comparison` writes the folder:

- ``comparison.csv`` (every column, full precision) and ``comparison.md`` (the columns a reader needs);
- ``sharpe_heatmap.png``: annualised Sharpe, strategy x range, one panel per symbol;
- ``range_<name>.png``: per range, equity and drawdown of every strategy against buy-and-hold, one column per symbol;
- ``cells/<range>__<symbol>__<strategy>/``: each cell's own report folder (``reports.write_report``), or
  ``error.txt`` for a cell that failed;
- ``comparison.html``, last: one self-contained page (images embedded, no scripts, every user string escaped)
  that links the cell folders.

The reference in every cell is the one buy-and-hold of each cell's report: a ``buy_hold`` run at 1x on the same
bars through the same broker, fees, slippage and funding paid (``result.extras["buy_hold_1x"]``, run by the worker
next to the cell; a 1x ``buy_hold`` cell is its own), and the verdict is :func:`reports.verdict.verdict`, the same
function, seed and resamples as the cell's own report, so the two never disagree. Row order is the order of the
outcomes given, so the table does not depend on which worker finished first.
"""

from __future__ import annotations

import base64
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.charts import WIDTH, _format_time_axis, _styled, _x, save_figure
from data_feeds.files import atomic_write
from reports.formatting import format_value
from reports.charts import strategy_color
from reports.metrics import bar_returns, drawdown
from reports.sections import deflated_sharpe, estimated_buy_and_hold, is_reference, result_verdict
from reports.statistics import annualised_sharpe, expected_max_sharpe, sharpe_ratio
from reports.verdict import CONFIDENT, LUCK, NA, NO
from reports.writer import LOG_SCALE_RATIO, report_metrics, write_report

if TYPE_CHECKING:
    from backtests.compare.grid import CellOutcome
    from backtests.result import BacktestResult

BEATS = "Beats B&H"
REFERENCE = "buy_hold (1x)"
VERDICT_CONFIDENT, VERDICT_LUCK, VERDICT_NO, VERDICT_NA = CONFIDENT, LUCK, NO, NA
METRIC_KEYS = {"Bars": "Bars", "Return [%]": "Return [%]",
               "CAGR [%]": "CAGR [%]", "Max drawdown [%]": "Max drawdown [%]", "Exposure [%]": "Exposure [%]",
               "Trades": "Trades", "Win rate [%]": "Win rate [%]", "Fees paid [USDT]": "Fees paid [USDT]",
               "Funding paid [USDT]": "Funding paid [USDT]", "Sharpe": "Sharpe", "Sortino": "Sortino"}
"""Table column -> ``compute_metrics`` key."""
STAT_COLUMNS = ("B&H return [%]", "Sharpe CI low", "Sharpe CI high", "B&H Sharpe", "Sharpe diff", "Sharpe diff CI low",
                "Sharpe diff CI high", "p vs B&H", "p vs flat", "PSR vs 0", "Trials", "DSR vs 0")
ID_COLUMNS = ("strategy", "range", "symbol", "start", "end", "status", "error")
COLUMNS = (*ID_COLUMNS, *METRIC_KEYS, *STAT_COLUMNS, BEATS)
SHORT_COLUMNS = ("Return [%]", "B&H return [%]", "Sharpe", "Sharpe CI", "B&H Sharpe", "Max drawdown [%]", "Trades",
                 "p vs B&H", "PSR vs 0", "Trials", "DSR vs 0", BEATS)
"""The columns of the Markdown and HTML tables (all of them are in the CSV)."""


@dataclass
class Comparison:
    """The table and the numbers behind its deflated Sharpe ratios (annualised Sharpe units).

    ``trials``: the most configurations counted for any cell (from the trial ledger when it was given, else the
    grid's cells with a defined Sharpe ratio); ``sharpe_std`` / ``expected_max_sharpe``: the spread of the grid's
    Sharpe ratios and what the best of ``trials`` would reach by luck alone with that spread.
    """

    table: pd.DataFrame
    trials: int
    sharpe_std: float
    expected_max_sharpe: float
    confidence: float
    n_boot: int
    timeframe: str | None
    ledger: str | None = None
    symbol_sets: dict = field(default_factory=dict)
    """Name -> symbols of the grid's symbol sets (``compare --symbol-sets``), for the notes."""


# ---------------------------------------------------------------- the table

def verdict(sharpe: float, bh_sharpe: float, p_vs_bh: float, confidence: float) -> str:
    """Does the cell beat buy-and-hold? ``"no"`` when its Sharpe is not higher; ``"yes, with confidence"`` when the
    paired test's p-value (both Sharpe ratios as estimates) is at most ``1 - confidence``; else ``"only by luck"``;
    ``"n/a"`` when a Sharpe ratio is undefined (no spread, as for ``flat``). Sharpe 1.2 vs 0.4 with p 0.03 ->
    confident (the rule of :func:`reports.verdict.verdict`)."""
    if not (math.isfinite(sharpe) and math.isfinite(bh_sharpe)):
        return VERDICT_NA
    if sharpe <= bh_sharpe:
        return VERDICT_NO
    return VERDICT_CONFIDENT if math.isfinite(p_vs_bh) and p_vs_bh <= 1.0 - confidence + 1e-12 else VERDICT_LUCK


def reference_equity(result: "BacktestResult") -> pd.Series:
    """The cell's buy-and-hold equity: the 1x ``buy_hold`` run the worker made next to it, the cell itself when it
    is one, else the estimate from the closes (:func:`reports.sections.estimated_buy_and_hold`)."""
    extra = (getattr(result, "extras", None) or {}).get("buy_hold_1x")
    if isinstance(extra, pd.Series):
        return extra
    if is_reference(result):
        return result.equity
    if getattr(result, "portfolio", None) is not None:      # a symbol set: the equal-weight estimate
        from reports.portfolio import estimated_reference
        return estimated_reference(result)
    return estimated_buy_and_hold(result)


def build_comparison(outcomes: Sequence["CellOutcome"], *, confidence: float = 0.95, n_boot: int = 1000,
                     seed: int = 0, trials: dict | None = None, ledger: str | None = None) -> Comparison:
    """One row per outcome (columns :data:`COLUMNS`), in the order given.

    Per cell: compute_metrics figures and the verdict of :func:`reports.verdict.verdict` against the cell's 1x
    buy-and-hold (:func:`reference_equity`): a ``confidence`` block-bootstrap interval of the annualised Sharpe
    (``n_boot`` resamples, blocks of ``n ** (1/3)`` bars, ``seed``), the paired test of the Sharpe difference
    (``p vs B&H``), the test against flat and the PSR against 0. ``DSR vs 0`` deflates by ``trials[i]`` (a
    :class:`backtests.ledger.Trials`-like object with ``count`` and annualised ``sharpes``: what the trial ledger
    has seen on the cell's span); without ``trials``, by the grid's own cells.
    """
    ok = [o for o in outcomes if o.ok]
    grid_sharpes = np.array([s for s in (sharpe_ratio(bar_returns(o.result.equity, o.result.initial_cash).to_numpy())
                                         for o in ok) if math.isfinite(s)])
    timeframe = ok[0].result.timeframe if ok else None
    scale = (lambda x: annualised_sharpe(x, timeframe)) if timeframe else (lambda x: float("nan"))
    rows = []
    counts = []
    for i, o in enumerate(outcomes):
        row = {"strategy": o.cell.strategy, "range": o.cell.range.name, "symbol": o.cell.symbol,
               "start": o.cell.range.start, "end": o.cell.range.end, "status": "ok" if o.ok else "error",
               "error": "" if o.ok else (o.error or "no result"), BEATS: ""}
        if o.ok:
            bh = reference_equity(o.result)
            metrics = report_metrics(o.result, bh)         # a symbol set: leverage and exposure from its book
            row.update({col: metrics.get(key, np.nan) for col, key in METRIC_KEYS.items()})
            v = result_verdict(o.result, bh, confidence=confidence, n_boot=n_boot, seed=seed)
            t = trials.get(i) if trials else None
            count, sharpes = (t.count, list(t.sharpes)) if t is not None else \
                (int(grid_sharpes.size), [scale(x) for x in grid_sharpes])
            counts.append(count)
            row.update({
                "B&H return [%]": (float(bh.iloc[-1]) / float(o.result.initial_cash) - 1) * 100,
                "Sharpe CI low": v.sharpe_low, "Sharpe CI high": v.sharpe_high, "B&H Sharpe": v.bh_sharpe,
                "Sharpe diff": v.diff, "Sharpe diff CI low": v.diff_low, "Sharpe diff CI high": v.diff_high,
                "p vs B&H": v.p_vs_bh, "p vs flat": v.p_vs_flat, "PSR vs 0": v.psr_vs_0, "Trials": count,
                "DSR vs 0": deflated_sharpe(o.result, count, sharpes), BEATS: v.beats_bh})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in (*METRIC_KEYS, *STAT_COLUMNS):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    n = max(counts) if counts else 0
    variance = float(np.var(grid_sharpes, ddof=1)) if grid_sharpes.size > 1 else 0.0
    per_bar_max = expected_max_sharpe(n, variance) if n else float("nan")
    sets = {o.cell.symbol: tuple(o.cell.symbols) for o in outcomes if getattr(o.cell, "symbols", ())}
    return Comparison(table, n, scale(math.sqrt(variance)), scale(per_bar_max), confidence, n_boot, timeframe, ledger,
                      sets)


# ---------------------------------------------------------------- text

def _fmt(column: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if column.startswith(("PSR", "DSR", "p vs")):
        return "-" if value is None or not np.isfinite(value) else "<0.001" if value < 0.001 else f"{value:.3f}"
    if column in ("Bars", "Trades", "Trials") and isinstance(value, float) and np.isfinite(value):
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
    trials = (f"the configurations the trial ledger ({c.ledger}) has seen on each cell's symbol, timeframe and an "
              "overlapping span (Trials)" if c.ledger else f"the grid's {c.trials} cells")
    return [
        f"{REFERENCE.capitalize()}: in every cell, buy_hold run at 1x on the same bars through the same broker, paying "
        "fees, slippage and funding (the same buy-and-hold as in each cell's own report).",
        f"Sharpe CI: {pct} percentile interval of the annualised Sharpe ratio from {c.n_boot:,} circular block-"
        "bootstrap resamples of the bar returns (blocks of n^(1/3) bars, fixed seed).",
        "p vs B&H: paired block bootstrap of the Sharpe difference (both series resampled on the same bars, so both "
        "Sharpe ratios are treated as estimates); two-sided, so p <= "
        f"{1 - c.confidence:.2f} exactly when the {pct} interval of the difference excludes 0.",
        "PSR vs 0: probability that the true Sharpe ratio exceeds 0, allowing for skewness and fat tails (Bailey & "
        "López de Prado 2012).",
        f"DSR vs 0: the PSR against the Sharpe ratio the best of {trials} would reach by luck alone (Bailey & "
        "López de Prado 2014).",
        f"{BEATS}: '{VERDICT_CONFIDENT}' when the Sharpe ratio is above buy-and-hold's and p vs B&H <= "
        f"{1 - c.confidence:.2f}; '{VERDICT_LUCK}' when it is above but not by enough to rule out luck; the same "
        "rule and numbers as the verdict of each cell's own report.",
        *[f"Symbol set {name}: {' + '.join(members)} in one account, judged against their equal-weight buy-and-hold "
          "at 1x." for name, members in c.symbol_sets.items()],
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
    """Each strategy's fixed colour (:func:`reports.charts.strategy_color`), as in every cell's report."""
    return {s: strategy_color(s) for s in dict.fromkeys(strategies)}


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
    """Equity (top) and drawdown (bottom) of every successful cell of one range, one column per symbol (a symbol
    whose cells all failed gets no empty column; the title names it), each strategy in its fixed colour, with the
    1x buy-and-hold of the symbol (dark grey, dashed, drawn on top) as the reference. One y-scale per figure: the
    rows share their axis across columns, and equity goes on a log scale for all of them when the curves span more
    than ``LOG_SCALE_RATIO`` (5x), as in a cell's own report."""
    done = [o for o in outcomes if o.ok]
    symbols = list(dict.fromkeys(o.cell.symbol for o in done))
    failed_symbols = [s for s in dict.fromkeys(o.cell.symbol for o in outcomes) if s not in symbols]
    colors = _strategy_colors([o.cell.strategy for o in outcomes])
    fig = Figure(figsize=(WIDTH, 5.6), layout="constrained")
    axes = fig.subplots(2, max(len(symbols), 1), squeeze=False, sharex="col", sharey="row",
                        gridspec_kw={"height_ratios": [2.2, 1.0]})
    handles: dict[str, Line2D] = {}
    curves_all: list[pd.Series] = []
    for col, symbol in enumerate(symbols):
        top, bottom = axes[0, col], axes[1, col]
        mine = [o for o in done if o.cell.symbol == symbol]
        for o in mine:
            eq, color = o.result.equity, colors[o.cell.strategy]
            handles[o.cell.strategy] = top.plot(_x(eq.index), eq.to_numpy(dtype="float64"), color=color, lw=1.2)[0]
            bottom.plot(_x(eq.index), drawdown(eq).to_numpy() * 100, color=color, lw=0.9)
        bh = reference_equity(mine[0].result)
        if not any(is_reference(o.result) for o in mine):    # a 1x buy_hold cell already draws it
            for ax, y in ((top, bh), (bottom, drawdown(bh) * 100)):
                line = ax.plot(_x(y.index), y.to_numpy(dtype="float64"), color="#444444", lw=1.0, ls=(0, (4, 3)),
                               zorder=4)[0]
            handles[REFERENCE] = line
        curves_all += [bh, *[o.result.equity for o in mine]]
        _format_time_axis(bottom)
        failed = [o.cell.strategy for o in outcomes if o.cell.symbol == symbol and not o.ok]
        top.set_title(symbol + (f" (failed: {', '.join(failed)})" if failed else ""), fontsize=10)
        for ax in (top, bottom):
            ax.margins(x=0)
    low = min((float(c.min()) for c in curves_all), default=0.0)
    high = max((float(c.max()) for c in curves_all), default=0.0)
    log = low > 0 and high / low > LOG_SCALE_RATIO
    if log:
        top = axes[0, 0]
        top.set_yscale("log")
        top.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        top.yaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_ylabel("equity [USDT]" + (" (log)" if log else ""))
    axes[1, 0].set_ylabel("drawdown [%]")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside upper right", ncols=min(len(handles), 6),
                   frameon=False)
    note = f" (every cell failed on {', '.join(failed_symbols)})" if failed_symbols else ""
    fig.suptitle(title + note, x=0.01, ha="left", fontweight="bold")
    return fig


# ---------------------------------------------------------------- files

def report_files(result: "BacktestResult", baselines: Sequence = ()) -> dict[str, bytes]:
    """A cell's report folder (``write_report``, with ``baselines`` such as its 1x buy_hold run) rendered in a
    temporary folder and returned as ``{name: bytes}``, so a worker with no disk shared with the client can send
    it back with the result."""
    with tempfile.TemporaryDirectory(prefix="lstmbt-cell-") as tmp:
        write_report(result, tmp, baselines=baselines)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


_CSS = """body{margin:0;background:#f6f7f9;color:#1d2329;font:15px/1.45 -apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:12px}h1{font-size:1.5rem;overflow-wrap:anywhere}h2{font-size:1.15rem}
section{background:#fff;border-radius:6px;padding:4px 14px 14px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.wrap{overflow-x:auto}table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.88rem}
th,td{padding:4px 6px;border-bottom:1px solid #e6e8eb;white-space:nowrap;text-align:right}
th{background:#f0f3f6;white-space:normal;vertical-align:bottom;min-width:3.5em}
td:nth-child(-n+3),th:nth-child(-n+3),td.text{text-align:left}
tr.error td{background:#fdecea}tr.confident td{background:#e9f6ec}td.err{white-space:normal;min-width:18em}
img{display:block;max-width:100%;height:auto;border:1px solid #eceef1;border-radius:4px;margin:8px 0}
li{margin:.25em 0}"""


def _png_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def comparison_html(c: Comparison, charts: Sequence[tuple[str, bytes]], links: dict[int, str],
                    title: str = "Comparison") -> str:
    """The page: the table (each strategy linked to its cell folder via ``links``, row index -> relative path),
    the notes on the method and the charts ``(title, png)`` embedded as data URIs. The error column appears only
    when a cell failed, so a grid that ran fits a 1,280 px window."""
    any_failed = bool((c.table["status"] != "ok").any())
    head = ["strategy", "range", "symbol", *SHORT_COLUMNS, *(["error"] if any_failed else [])]
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
                     confidence: float = 0.95, n_boot: int = 1000, seed: int = 0, trials: dict | None = None,
                     ledger: str | None = None) -> tuple[Path, Comparison]:
    """Write the comparison folder (see the module docstring); returns (``comparison.html``'s path, the table).

    Cell folders come from each outcome's rendered ``files`` (none when cell reports were turned off); a failed
    cell gets ``error.txt`` with its error and traceback.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = build_comparison(outcomes, confidence=confidence, n_boot=n_boot, seed=seed, trials=trials, ledger=ledger)
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
