"""Write one backtest's report folder: ``report.html``, ``metrics.json``, CSVs and the chart PNGs.

Files (each written atomically, ``report.html`` last so its presence means the folder is complete):

- ``report.html``: one self-contained page (charts embedded, inline CSS, no scripts, no external URLs), in reading
  order: the verdict (against the one buy-and-hold and flat, with intervals, p-values and the trials the ledger has
  seen on this span), the key charts (equity, drawdown, price), the metrics table, the other charts, the walk-forward
  fold table, the worst drawdowns, attribution, trades (with the model's confidence at each entry), data, config.
- ``metrics.json``: ``verdict`` (:class:`reports.verdict.Verdict` plus the buy-and-hold's name) and the metrics of the
  strategy, buy-and-hold and each baseline; deterministic (sorted keys, NaN as null, +/-inf as ``"inf"``/``"-inf"``,
  ISO timestamps): the same inputs give a byte-identical file. The ledger's trial count is shown in the page only,
  as it grows with every run on the span.
- ``equity.csv`` (time, equity, position, target, buy_hold), ``trades.csv`` (plus ``confidence``), ``fills.csv``,
  ``rejected.csv``.
- ``manifest.json`` when a manifest is given: what reproduces the run (data checksum, config, seed, checkpoint
  hashes, package versions, command line; see :mod:`backtests.manifest`).
- charts: ``equity.png`` (against buy-and-hold, log scale when asked or when equity spans over 5x),
  ``drawdown.png``, ``price.png`` (position shading, entries and exits), ``monthly.png`` (year x month),
  ``rolling.png`` (rolling Sharpe and volatility), ``exposure.png`` (exposure / leverage, when a position was held),
  ``trades.png`` (trade returns, when there are trades), ``attribution.png`` (PnL by source, when equity moved) and
  ``predictions.png`` when the result holds model predictions (with the walk-forward fold boundaries from
  ``result.fold_boundaries``). Each strategy has one colour in every chart
  (:func:`reports.charts.strategy_color`).
- a multi-symbol run (``result.portfolio`` set) adds a "Portfolio" section after the key charts, a ``"portfolio"``
  block in ``metrics.json``, ``portfolio_attribution.csv``, ``positions_by_symbol.csv``, ``margin.csv`` and four
  ``portfolio_*.png`` charts (:mod:`reports.portfolio_section`); its verdict is against the equal-weight
  buy-and-hold, and the single-symbol price and exposure charts are left out (the book's charts replace them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from reports import analysis_charts, charts
from data_feeds.files import atomic_write
from reports.formatting import jsonable
from reports.html import Chart, render_report, verdict_html
from reports.metrics import compute_metrics, equity_metrics, result_metrics, result_risk_free
from reports.pnl_sources import pnl_by_source
from reports import portfolio as pf
from reports.portfolio_section import remove_stale, write_portfolio
from reports.sections import (ESTIMATED_NAME, deflated_sharpe, estimated_buy_and_hold, find_reference, fold_table,
                              result_verdict, trades_with_confidence)
from reports.trader_metrics import drawdown_periods

if TYPE_CHECKING:
    from backtests.result import BacktestResult

LOG_SCALE_RATIO = 5.0
"""The equity chart switches to a log scale when its curves span more than this factor (max / min)."""


def _iso(index: pd.DatetimeIndex) -> list[str]:
    """``2024-01-01T00:00:00Z`` strings (UTC) for CSV time columns."""
    return list(pd.DatetimeIndex(index).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"))


def _csv(df: pd.DataFrame) -> str:
    """Frame as CSV text with timestamp columns in ISO 8601 UTC and floats in shortest round-trip form."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = _iso(pd.DatetimeIndex(pd.to_datetime(out[col], utc=True)))
    return out.to_csv(index=False, lineterminator="\n")


def equity_frame(result: "BacktestResult", buy_hold: pd.Series | None) -> pd.DataFrame:
    """Per-bar frame for ``equity.csv``: time, equity, position, target, buy_hold (USDT), aligned on equity.

    ``equity`` values the open position at the bar's last-price close; where the market has mark prices an
    ``equity_at_mark`` column values it at the mark close, as exchanges show unrealised PnL (the same wallet:
    ``equity + position x (mark close - close)``)."""
    index = result.equity.index
    frame = _equity_columns(result, buy_hold, index)
    prices = result.prices
    if prices is not None and "mark_close" in prices:
        gap = (prices["mark_close"] - prices["close"]).reindex(index).to_numpy(dtype="float64")
        frame.insert(2, "equity_at_mark", frame["equity"].to_numpy() + frame["position"].to_numpy() * gap)
    return frame


def _equity_columns(result: "BacktestResult", buy_hold: pd.Series | None, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({
        "time": _iso(index),
        "equity": result.equity.to_numpy(dtype="float64"),
        "position": result.position.reindex(index).to_numpy(dtype="float64"),
        "target": result.target.reindex(index).to_numpy(dtype="float64"),
        "buy_hold": buy_hold.reindex(index).to_numpy(dtype="float64") if buy_hold is not None else float("nan"),
    })


def trades_for_display(trades: pd.DataFrame) -> pd.DataFrame:
    """Trades as a reader wants them in the page: ``direction`` +1/-1 shown as ``long``/``short``."""
    if "direction" not in trades.columns or not len(trades):
        return trades
    sign = pd.to_numeric(trades["direction"], errors="coerce").to_numpy()
    text = trades["direction"].astype(str).to_numpy()
    return trades.assign(direction=np.where(sign > 0, "long", np.where(sign < 0, "short", text)))


def _unique(names: list[str]) -> list[str]:
    """``["a", "a", "b"]`` -> ``["a", "a (2)", "b"]`` so table columns and JSON entries stay distinct."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _render(fig, path: Path) -> bytes:
    charts.save_figure(fig, path)
    return path.read_bytes()


OPTIONAL_CHARTS = ("price.png", "exposure.png", "predictions.png", "trades.png", "attribution.png")


def _charts(result: "BacktestResult", out: Path, close: pd.Series | None, buy_hold: pd.Series | None,
            bh_name: str | None, base: list, log_scale: bool | None) -> tuple[list[Chart], list[Chart]]:
    """Render every chart of the page into ``out`` as PNG; returns (the key charts shown under the verdict: equity,
    drawdown, price; the others, after the metrics table). A chart that would be an empty panel (exposure of a
    run that never held a position, attribution of one whose equity never moved, trades without trades) is not
    drawn."""
    key: list[Chart] = []
    more: list[Chart] = []
    for name in OPTIONAL_CHARTS:             # never leave a stale chart from an earlier run in a reused folder
        (out / name).unlink(missing_ok=True)

    def add(where: list, title: str, fig, file: str, caption: str) -> None:
        where.append(Chart(title, _render(fig, out / file), caption))

    bh_label = bh_name or "buy & hold"
    curves = [result.equity, *([buy_hold] if buy_hold is not None else []), *[eq for _, eq, _ in base]]
    lo, hi = min(float(c.min()) for c in curves), max(float(c.max()) for c in curves)
    log = (lo > 0 and hi / lo > LOG_SCALE_RATIO) if log_scale is None else (bool(log_scale) and lo > 0)
    add(key, "Equity", charts.equity_chart(result.equity, buy_hold, [(n, eq) for n, eq, _ in base], name=result.name,
                                           log=log, buy_hold_name=bh_label), "equity.png",
        "Account value in USDT" + (" (log scale)" if log else "")
        + ("; buy-and-hold (dashed grey) is a 1x buy_hold run paying the same fees, slippage and funding."
           if getattr(result, "portfolio", None) is None else
           "; the equal-weight buy-and-hold (dashed grey) holds each symbol long at 1x with an equal share of the "
           "cash, paying the same fees, slippage and funding."))
    add(key, "Drawdown", charts.drawdown_chart(result.equity, buy_hold, name=result.name, buy_hold_name=bh_label),
        "drawdown.png", "Percent below the running equity peak.")
    held = bool((result.position.abs() > 1e-12).any()) if len(result.position) else False
    if close is not None:
        add(key, "Price and position", charts.price_chart(close, result.position, result.fills), "price.png",
            "Close price; background green while long, red while short; ▲ long entry, ▼ short entry, ○ exit"
            + (" (with hundreds of fills only entries are marked)." if len(result.fills) > charts.MAX_FILL_MARKERS
               else "."))
    add(more, "Monthly returns", charts.monthly_returns_chart(result.equity, result.initial_cash), "monthly.png",
        "Calendar months in UTC; the last column compounds the year.")
    add(more, "Rolling Sharpe and volatility",
        analysis_charts.rolling_chart(result.equity, result.timeframe, buy_hold=buy_hold,
                                      initial_cash=result.initial_cash, name=result.name, buy_hold_name=bh_label),
        "rolling.png", f"Over the trailing {analysis_charts.ROLLING_DAYS} days, annualised for a 24/7 market; "
                       "gaps where the window is not yet full or the strategy was flat.")
    if close is not None and held:
        leverage = (result.config.get("broker") or {}).get("leverage") if isinstance(result.config, dict) else None
        add(more, "Exposure and leverage", analysis_charts.exposure_chart(result.position, close, result.equity,
                                                                          leverage=leverage),
            "exposure.png", "Position notional at the close divided by equity: above zero long, below short.")
    if len(result.trades):
        add(more, "Distribution of trade returns", analysis_charts.trade_distribution_chart(result.trades),
            "trades.png", "Net return of each round trip (after fees and funding) on its entry notional.")
    sources = pnl_by_source(result.equity, result.fills, result.funding, result.initial_cash) \
        if getattr(result, "portfolio", None) is None else pf.pnl_sources(result)
    if bool(np.any(sources.to_numpy() != 0)):
        add(more, "PnL attribution", analysis_charts.attribution_chart(sources), "attribution.png",
            "What moved equity in each period, in USDT: price moves, fees, funding, slippage and liquidations; "
            "the legend gives the run totals.")
    if result.predictions is not None and close is not None:
        folds = list(getattr(result, "fold_boundaries", None) or [])
        add(more, "Model class probabilities",
            charts.predictions_chart(close, result.predictions, fold_boundaries=[pd.Timestamp(t) for t in folds],
                                     min_confidence=decision_thresholds(result)), "predictions.png",
            "Out-of-sample class probabilities per bar (short, flat, long) and the winning class's confidence"
            + ("; dashed lines mark where each walk-forward fold's model takes over." if folds else "."))
    return key, more


def decision_thresholds(result) -> float | pd.Series | None:
    """The confidence the model needed to trade: per fold from the run's checkpoints (thresholds tuned on each
    fold's validation span), else the configured ``[model] min_confidence``, else None."""
    checkpoints = list(getattr(result, "models", None) or [])
    levels = [c.get("min_confidence") for c in checkpoints]
    if levels and all(v is not None for v in levels):
        starts = list(getattr(result, "fold_boundaries", None) or [])
        if len(starts) == len(levels):
            return pd.Series(levels, index=pd.DatetimeIndex([pd.Timestamp(t) for t in starts]), dtype="float64")
        if len(levels) == 1:
            return float(levels[0])
    model = (result.config.get("model") or {}) if isinstance(result.config, dict) else {}
    return model.get("min_confidence")


def _baseline_metrics(baselines: Sequence, timeframe: str,
                      bh: pd.Series | None) -> list[tuple[str, pd.Series, pd.Series]]:
    """``(name, equity, metrics)`` per baseline, each measured against buy-and-hold ``bh``."""
    out = []
    for item in baselines:
        if isinstance(item, tuple) and len(item) == 2:
            name, equity = item
            out.append((str(name), equity, equity_metrics(equity, timeframe)))
        else:
            out.append((str(item.name), item.equity, report_metrics(item, bh)))
    return out


def report_metrics(result: "BacktestResult", benchmark: pd.Series | None) -> pd.Series:
    """:func:`result_metrics`; for a multi-symbol run, exposure, leverage, margin ratio and liquidations from its
    whole book (:func:`reports.portfolio.portfolio_metrics`), not from the first symbol's position."""
    m = result_metrics(result, benchmark=benchmark)
    if getattr(result, "portfolio", None) is not None:
        for key, value in pf.portfolio_metrics(result.portfolio, result.equity).items():
            m[key] = value
    return m


def verdict_doc(v, reference_name: str) -> dict:
    """The verdict as metrics.json holds it: every field of :class:`reports.verdict.Verdict` plus the name of the
    buy-and-hold it was judged against."""
    return {**v.as_dict(), "reference": reference_name}


def write_report(result: "BacktestResult", out_dir: str | os.PathLike, *, baselines: Sequence = (),
                 title: str | None = None, manifest: dict | None = None, log_scale: bool | None = None) -> Path:
    """Write the report folder for ``result`` into ``out_dir`` (created if needed); returns ``report.html``'s path.

    ``baselines`` are other runs on the same data to compare with (BacktestResult objects, or ``(name, equity
    Series)`` pairs). The one buy-and-hold is the first 1x ``buy_hold`` run among them (fees, slippage and funding
    paid like the strategy; ``lstmbt backtest`` always runs one); without one it is estimated from the closes and
    labelled so (:mod:`reports.sections`). The verdict (:mod:`reports.verdict`) judges ``result`` against it and
    against flat; ``result.extras["trials"]`` (``{"count", "sharpes", "ledger"}``, from the trial ledger) adds how
    many configurations were tried on this span and the deflated Sharpe ratio.
    ``manifest`` (see :mod:`backtests.manifest`) is written as ``manifest.json`` and shown in the page.
    ``log_scale``: equity chart on a log scale (True), linear (False) or log when the curves span over 5x (None).
    Example: ``write_report(result, Path("runs/2024-lstm"), baselines=[buy_hold_result, sma_result])``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    close = result.prices["close"] if result.prices is not None and "close" in result.prices else None
    book = getattr(result, "portfolio", None)
    if book is not None:           # several symbols: judged against the equal-weight buy-and-hold (reports.portfolio)
        close = None               # the first symbol's closes and position alone would mislead
    reference = find_reference(result, baselines) if book is None else pf.find_portfolio_reference(result, baselines)
    if reference is not None:
        buy_hold = reference.equity.reindex(result.equity.index).ffill().bfill()
        bh_name = reference.name if book is None else pf.EQUAL_WEIGHT_NAME
    elif book is not None:
        buy_hold, bh_name = pf.estimated_reference(result), pf.EQUAL_WEIGHT_ESTIMATED
    elif close is not None and len(close):
        buy_hold, bh_name = estimated_buy_and_hold(result), ESTIMATED_NAME
    else:
        buy_hold, bh_name = None, None

    others = [b for b in baselines if b is not reference]
    base = _baseline_metrics(others, result.timeframe, buy_hold)
    columns = [(result.name, "strategy", report_metrics(result, buy_hold))]
    if reference is result:
        columns[0] = (result.name, "buy_and_hold", columns[0][2])
    elif reference is not None:
        columns.append((bh_name, "buy_and_hold", report_metrics(reference, buy_hold)))
    elif buy_hold is not None:
        columns.append((bh_name, "buy_and_hold",
                        compute_metrics(buy_hold, pd.DataFrame(), result.timeframe, initial_cash=result.initial_cash,
                                        position=pd.Series(1.0, index=buy_hold.index), benchmark=buy_hold,
                                        risk_free=result_risk_free(result))))
    columns += [(name, "baseline", m) for name, _, m in base]
    names = _unique([name for name, _, _ in columns])
    v = result_verdict(result, buy_hold) if buy_hold is not None else None
    trials = (getattr(result, "extras", None) or {}).get("trials")

    # ---- charts
    key, more = _charts(result, out, close, buy_hold, bh_name, base, log_scale)
    portfolio_html, alerts = "", []
    if book is not None:
        leverage = (result.config.get("broker") or {}).get("leverage") if isinstance(result.config, dict) else None
        portfolio_html, portfolio_doc, alerts = write_portfolio(result, out, leverage)
    else:
        remove_stale(out)

    # ---- data files
    atomic_write(out / "equity.csv", _csv(equity_frame(result, buy_hold)))
    atomic_write(out / "trades.csv", _csv(trades_with_confidence(result)))
    atomic_write(out / "fills.csv", _csv(result.fills))
    atomic_write(out / "rejected.csv", _csv(result.rejected))
    run = {"name": result.name, "strategy": result.strategy, "exchange": result.exchange, "symbol": result.symbol,
           "timeframe": result.timeframe, "initial_cash": result.initial_cash, "data_span": result.data_span,
           "config": result.config, "attribution": getattr(result, "attribution", {})}
    doc = {"run": jsonable(run),
           "verdict": jsonable(verdict_doc(v, bh_name)) if v is not None else None,
           "results": [{"name": n, "role": role, "metrics": jsonable(m)} for n, (_, role, m) in zip(names, columns)]}
    if book is not None:
        doc["portfolio"] = jsonable(portfolio_doc)
    atomic_write(out / "metrics.json", json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n")
    if manifest is not None:
        text = json.dumps(jsonable(manifest), sort_keys=True, indent=2, allow_nan=False) + "\n"
        atomic_write(out / "manifest.json", text)
        manifest = json.loads(text)          # the page shows the file's (sorted) order, also when re-rendered
    else:
        (out / "manifest.json").unlink(missing_ok=True)

    # ---- the page, last
    start, end = result.equity.index[0], result.equity.index[-1]
    subtitle = (f"{result.strategy} · {result.exchange} · {result.symbol} · {result.timeframe} · "
                f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC · {len(result.equity):,} bars · "
                f"initial cash {result.initial_cash:,.2f} USDT")
    notes = [f"{len(result.rejected):,} order(s) were rejected by the broker (see rejected.csv)."] \
        if len(result.rejected) else []
    if book is not None:
        notes.append(f"Buy-and-hold ({bh_name}): " + ("each symbol long at 1x with an equal share of the initial "
                                                     "cash from its first bar, through the same broker, paying "
                                                     "fees, slippage and funding." if reference is not None else
                                                     "no buy-and-hold run was given; each symbol's equal share "
                                                     "estimated from its closes with one taker fee and the "
                                                     "slippage, without funding."))
    elif bh_name is not None:
        notes.append(f"Buy-and-hold ({bh_name}): " + ("a buy_hold run on the same bars through the same broker at "
                                                     "1x leverage, paying fees, slippage and funding."
                                                     if reference is not None else
                                                     "no 1x buy_hold run was given; estimated from the closes with "
                                                     "one taker fee and the slippage, without funding."))
    dsr = deflated_sharpe(result, int(trials["count"]), trials.get("sharpes") or []) if trials else float("nan")
    page = render_report(title=title or f"{result.name}: {result.symbol} {result.timeframe}", subtitle=subtitle,
                         verdict=verdict_html(result.name, v, bh_name, trials, dsr),
                         metrics=[(n, m) for n, (_, _, m) in zip(names, columns)], key_charts=key, charts=more,
                         folds=fold_table(result), drawdowns=drawdown_periods(result.equity),
                         trades=trades_for_display(trades_with_confidence(result)), config=result.config,
                         data_span=result.data_span, notes=notes,
                         attribution=getattr(result, "attribution", None), manifest=manifest,
                         portfolio=portfolio_html, notices=alerts)
    return atomic_write(out / "report.html", page)


__all__ = ["equity_frame", "report_metrics", "write_report"]
