"""The portfolio part of a report folder, written when ``result.portfolio`` is set (:func:`write_portfolio`):

- ``portfolio_attribution.csv``: PnL by symbol and source (USDT), with ``total`` row and column;
- ``positions_by_symbol.csv``: per bar and symbol the close, position (contracts), notional (USDT), target,
  PnL (USDT), exposure (notional / equity) and maintenance margin (USDT), plus the account's equity, net and
  gross exposure;
- ``margin.csv``: per bar the margin balance, total maintenance margin (USDT) and margin ratio;
- ``portfolio_contribution.png``, ``portfolio_exposure.png``, ``portfolio_correlation.png``,
  ``portfolio_margin.png`` (:mod:`reports.portfolio_charts`);
- the "Portfolio" section of ``report.html`` (coverage banner, symbol and attribution tables, margin figures,
  the charts) and the ``"portfolio"`` block of ``metrics.json`` (:func:`reports.portfolio.json_block`).
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from data_feeds.files import atomic_write
from reports import portfolio as pf
from reports import portfolio_charts as pc
from reports.charts import save_figure
from reports.html import frame_table_html

if TYPE_CHECKING:
    from backtests.result import BacktestResult

FILES = ("portfolio_attribution.csv", "positions_by_symbol.csv", "margin.csv", "portfolio_contribution.png",
         "portfolio_exposure.png", "portfolio_correlation.png", "portfolio_margin.png")
_SHORT = {"price change [%]": "price chg [%]", "contribution [USDT]": "PnL [USDT]",
          "contribution [%]": "PnL [% of cash]", "avg leverage [x]": "avg lev. [x]", "max leverage [x]": "max lev. [x]",
          "time long [%]": "long [%]", "time short [%]": "short [%]", "liquidations": "liq."}
"""Shorter headers for the page's symbol table (metrics.json keeps the long names)."""
_BANNER = 'style="background:#fff4e5;border-left:4px solid #e67e22;padding:.5em .8em;font-weight:600"'


def remove_stale(out: Path) -> None:
    """Delete the portfolio files an earlier run left in a reused folder."""
    for name in FILES:
        (out / name).unlink(missing_ok=True)


def positions_frame(result: "BacktestResult") -> pd.DataFrame:
    """``positions_by_symbol.csv``'s rows: one per bar, ``<symbol> <field>`` columns, then the account's."""
    book = result.portfolio
    index = book.position.index
    exp = pf.exposure(book, result.equity)
    cols: dict[str, np.ndarray] = {}
    for s in book.symbols:
        close = book.prices[s]["close"].reindex(index) if s in (book.prices or {}) else pd.Series(np.nan, index)
        parts = {"close": close, "position": book.position.get(s), "notional": book.notional.get(s),
                 "target": book.target.get(s), "pnl": book.pnl.get(s), "exposure": exp[s],
                 "maintenance": book.maintenance.get(s)}
        for field, series in parts.items():
            cols[f"{s} {field}"] = (series.reindex(index).to_numpy(dtype="float64") if series is not None
                                    else np.full(len(index), np.nan))
    cols["equity"] = result.equity.reindex(index).to_numpy(dtype="float64")
    cols["net exposure"] = exp["net"].to_numpy(dtype="float64")
    cols["gross exposure"] = exp["gross"].to_numpy(dtype="float64")
    return pd.DataFrame({"time": index, **cols})


def margin_frame(book) -> pd.DataFrame:
    """``margin.csv``'s rows: time, margin_balance, maintenance (all positions), margin_ratio (1.0 = liquidation)."""
    index = book.margin_ratio.index
    return pd.DataFrame({"time": index,
                         "margin_balance": book.margin_balance.reindex(index).to_numpy(dtype="float64"),
                         "maintenance": book.maintenance.sum(axis=1, min_count=1).reindex(index).to_numpy("float64"),
                         "margin_ratio": book.margin_ratio.to_numpy(dtype="float64")})


def _figure(title: str, png: bytes, caption: str, natural: bool = False) -> str:
    """A chart as ``<figure>``: page-wide, or at its own size (``natural``, for the small correlation heatmaps)."""
    style = ' style="width:auto;max-width:100%"' if natural else ""
    return (f'<figure><img alt="{escape(title)}"{style} '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _margin_html(stats: dict, leverage) -> str:
    at = stats["max_margin_ratio_at"]
    above = stats["bars_above_warning"]
    first = stats["first_liquidation_at"]
    items = {
        "margin mode": stats["margin_mode"] + (" (one wallet backs every position; a loss on one symbol eats the "
                                               "margin of the others)" if stats["margin_mode"] == "cross" else
                                               " (each position has its own margin; a liquidation closes that "
                                               "position only)"),
        "highest margin ratio": (f"{stats['max_margin_ratio_pct']:.1f} %" + (f" at {at:%Y-%m-%d %H:%M} UTC"
                                                                             if at is not None else ""))
        if np.isfinite(stats["max_margin_ratio_pct"]) else "—",
        "average margin ratio (while in a position)": f"{stats['mean_margin_ratio_pct']:.1f} %"
        if np.isfinite(stats["mean_margin_ratio_pct"]) else "—",
        f"time above {stats['warning_pct']:.0f} %": f"{stats['time_above_warning_pct']:.2f} % of bars "
                                                    f"({above:,} bar{'s' if above != 1 else ''})"
        if np.isfinite(stats["time_above_warning_pct"]) else "—",
        "liquidations": (f"{stats['liquidations']} ({', '.join(stats['liquidated_symbols'])}; first at "
                         f"{first:%Y-%m-%d %H:%M} UTC), {stats['liquidation_loss_usdt']:,.2f} USDT lost to them"
                         if stats["liquidations"] else "none"),
    }
    if leverage:
        items["leverage setting"] = f"{float(leverage):g}x"
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items.items())
    return f"<dl>{rows}</dl>"


def _charts(result: "BacktestResult", out: Path, leverage) -> list[str]:
    book = result.portfolio
    contrib = pf.contribution(book)
    missing = pf.coverage_spans(book)
    made: list[str] = []

    def add(file: str, title: str, build: Callable, caption: str, natural: bool = False) -> None:
        save_figure(build(), out / file)
        made.append(_figure(title, (out / file).read_bytes(), caption, natural))

    account = result.equity - float(result.initial_cash)
    add("portfolio_contribution.png", "Contribution to equity by symbol",
        lambda: pc.contribution_chart(contrib, account, liquidations=book.liquidations, missing=missing),
        "Cumulative PnL of each symbol in USDT after its fees, slippage, funding and liquidations; the symbols' "
        "lines add up to the account's change (black, dashed)."
        + (" Hatched: a symbol had no candles there (not traded, never forward-filled)." if missing else ""))
    exp = pf.exposure(book, result.equity)
    add("portfolio_exposure.png", "Exposure and leverage by symbol",
        lambda: pc.exposure_chart(exp, book.symbols, leverage=leverage, missing=missing),
        "Top: each symbol's position value at the close divided by the account's equity (above zero long, below "
        "short) and the net of them. Bottom: the same without sign, stacked: the top edge is the account's gross "
        "leverage.")
    add("portfolio_correlation.png", "Correlation of symbol PnL",
        lambda: pc.correlation_chart(pf.pnl_correlation(book), pf.pnl_correlation(book, "1D")),
        "Pearson correlation of the symbols' PnL in USDT, per bar and summed per UTC day, over the periods where "
        "the account held something; near +1 the positions lose together, near -1 one hedges the other.", natural=True)
    total_mm = book.maintenance.sum(axis=1, min_count=1)
    add("portfolio_margin.png", "Margin ratio",
        lambda: pc.margin_chart(book.margin_ratio, book.margin_balance, total_mm, mode=str(book.margin_mode),
                                liquidations=book.liquidations, warning=pf.MARGIN_WARNING, missing=missing,
                                symbols=book.symbols),
        ("Maintenance margin of all positions / margin balance (wallet plus unrealised PnL at mark), at each close"
         if str(book.margin_mode) == "cross" else
         "The highest of each position's own ratio, maintenance margin / (its isolated margin plus unrealised PnL)")
        + "; log scale; liquidation at 100 % (red), no line while flat. The ratio is taken at the closes while "
          "liquidation is checked at each bar's adverse mark extreme (longs at the low, shorts at the high), "
          "so a liquidation (×) can follow a close well below 100 %. Bottom: margin balance and the maintenance "
          "margin it must stay above, in USDT.")
    return made


def write_portfolio(result: "BacktestResult", out: Path, leverage=None) -> tuple[str, dict, list[str]]:
    """Write the portfolio files into ``out``; returns (the "Portfolio" section's HTML, the ``"portfolio"`` block
    of metrics.json, the alerts for the page's top banner: an attribution that does not sum). Coverage notices (a
    symbol that started later or had gaps) head the section."""
    book = result.portfolio
    table = pf.attribution_table(book)
    atomic_write(out / "portfolio_attribution.csv",
                 table.reset_index().to_csv(index=False, lineterminator="\n", float_format="%.10g"))
    atomic_write(out / "positions_by_symbol.csv", _csv(positions_frame(result)))
    atomic_write(out / "margin.csv", _csv(margin_frame(book)))
    notices, alerts = pf.coverage_notices(book), []
    if not pf.attribution_sums(book, result):
        alerts.append(f"The per-symbol attribution misses {pf.attribution_residual(book, result):,.6f} USDT of the "
                       "account's change: the book is inconsistent, report it as a bug.")
    stats = pf.margin_stats(book)
    figures = _charts(result, out, leverage)
    symbols = pf.symbol_table(book, result.equity, result.initial_cash)
    symbols = symbols.drop(columns=["weight"]).rename(columns=_SHORT)      # the weights are in the sentence above
    shown = table.reset_index()
    banner = "".join(f"<p {_BANNER}>{escape(n)}</p>" for n in notices)
    weights = ", ".join(f"{pc.short_name(s)} {float(w):.0%}" for s, w in (book.weights or {}).items())
    html = (f'<section><h2>Portfolio</h2>{banner}<p>{len(book.symbols)} symbols in one account, '
            f"{escape(str(book.margin_mode))} margin" + (f"; weights {escape(weights)} of equity × leverage at a "
                                                        "full target" if weights else "") + ".</p>"
            + "<h3>By symbol</h3><p>Price change is the symbol's own, first to last close; PnL is what trading it "
              "added to the account after costs (also as a share of the initial cash); leverage is |notional| / "
              "equity at the closes it was held; long and short are shares of the account's bars; liq. counts its "
              "liquidations.</p>" + frame_table_html(symbols, 100)
            + "<h3>PnL attribution by symbol [USDT]</h3><p>Where the account's change came from; the total row "
              f"sums to final equity − initial cash = {result.final_equity - result.initial_cash:,.2f} USDT. Fees "
              "are taker and maker; liquidation is the loss from entry to the liquidation price plus its fee.</p>"
            + frame_table_html(shown, 100)
            + "<h3>Margin</h3>" + _margin_html(stats, leverage) + "".join(figures) + "</section>")
    return html, pf.json_block(result), alerts


def _csv(df: pd.DataFrame) -> str:
    from reports.writer import _csv as writer_csv     # the report's one CSV format (ISO UTC times)
    return writer_csv(df)


__all__ = ["FILES", "margin_frame", "positions_frame", "remove_stale", "write_portfolio"]
