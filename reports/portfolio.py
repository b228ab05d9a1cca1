"""The portfolio part of a report: pure functions over a multi-symbol run's book (``BacktestResult.portfolio``, a
:class:`backtests.result.PortfolioBook`), returning plain pandas objects and dicts.

- :func:`attribution_table`: PnL by symbol and source (price, fees, funding, slippage, liquidation) in USDT, with a
  ``total`` row and column; the table sums to the account's change, final equity - initial cash
  (:func:`attribution_residual` says by how much it does not);
- :func:`contribution`: each symbol's cumulative PnL over time (its contribution to equity, USDT);
- :func:`exposure`: signed notional / equity per symbol, plus ``net`` and ``gross``; its absolute values are the
  leverage by symbol (a 3,000 USDT long on 1,000 USDT of equity is exposure +3, leverage 3x);
- :func:`pnl_correlation`: correlation of the symbols' PnL per bar or per UTC day;
- :func:`margin_stats`: the margin ratio's worst value, time above :data:`MARGIN_WARNING` (80 %), liquidations;
- :func:`coverage_notices`: one sentence per symbol that started later, ended earlier or had gaps;
- :func:`symbol_table`: one row per symbol (weight, price change, contribution, leverage, time in market);
- :func:`equal_weight_buy_and_hold`: the equal-weight buy-and-hold estimated from the closes, for a result
  reported without its buy-and-hold run.

No Backtrader, no torch. Times are bar open times (UTC); values are at the bar's close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from backtests.result import BacktestResult, PortfolioBook

SOURCES = ("price", "fees", "funding", "slippage", "liquidation")
"""Columns of :func:`attribution_table` (besides ``total``): fees merge ``fees_taker`` and ``fees_maker``."""
MARGIN_WARNING = 0.8
"""Margin ratio above which a trader is close to liquidation (80 %; liquidation at 100 %)."""
EQUAL_WEIGHT_NAME = "equal-weight buy-and-hold"
"""What the report calls the reference of a portfolio run."""
EQUAL_WEIGHT_ESTIMATED = f"{EQUAL_WEIGHT_NAME} (est. from closes, 1x, fee, no funding)"
"""Its name when no buy-and-hold run came with the result and it is estimated from the closes."""
TOLERANCE = 1e-6
"""USDT per 1,000 USDT of account change the attribution may miss before the report says so."""


def _account_change(result: "BacktestResult") -> float:
    return float(result.equity.iloc[-1]) - float(result.initial_cash)


# ---------------------------------------------------------------- attribution

def attribution_table(book: "PortfolioBook") -> pd.DataFrame:
    """PnL by symbol (rows, in ``book.symbols`` order, then ``total``) and source (:data:`SOURCES`, then ``total``),
    USDT; a term the book lacks counts 0. ``fees`` is ``fees_taker + fees_maker`` (both negative costs).

    Example: BTC price +500, fees -20, funding -5 and ETH price -300, liquidation -150 give the rows
    BTC total +475, ETH total -450 and a ``total`` row summing to +25, the account's change."""
    raw = book.attribution.reindex(index=list(book.symbols)).astype("float64").fillna(0.0)
    get = lambda col: raw[col] if col in raw else pd.Series(0.0, index=raw.index)  # noqa: E731
    table = pd.DataFrame({"price": get("price"), "fees": get("fees_taker") + get("fees_maker"),
                          "funding": get("funding"), "slippage": get("slippage"),
                          "liquidation": get("liquidation")}, index=raw.index)
    table["total"] = table[list(SOURCES)].sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "symbol"
    return table


def attribution_residual(book: "PortfolioBook", result: "BacktestResult") -> float:
    """What the attribution table misses of the account's change (final equity - initial cash), USDT; 0 when it
    sums exactly."""
    return _account_change(result) - float(attribution_table(book).loc["total", "total"])


def attribution_sums(book: "PortfolioBook", result: "BacktestResult") -> bool:
    """Whether the table's total is the account's change to within :data:`TOLERANCE` per 1,000 USDT (at least
    1e-6 USDT)."""
    return abs(attribution_residual(book, result)) <= TOLERANCE * max(1.0, abs(_account_change(result)) / 1e3)


# ---------------------------------------------------------------- over time

def contribution(book: "PortfolioBook") -> pd.DataFrame:
    """Cumulative PnL of each symbol (USDT) at each close: its contribution to the account's change; the columns
    sum to equity - initial cash. A bar without a row in ``pnl`` counts 0."""
    return book.pnl.reindex(columns=list(book.symbols)).astype("float64").fillna(0.0).cumsum()


def exposure(book: "PortfolioBook", equity: pd.Series) -> pd.DataFrame:
    """Signed notional / equity per symbol (+ long, - short), then ``net`` (their sum) and ``gross`` (the sum of
    their absolute values, the account's leverage). A symbol without a candle at a bar is 0 there when flat and NaN
    when it holds a position (its value is unknown; ``net`` and ``gross`` leave it out); bars where equity is not
    positive are NaN (after a wipe-out leverage is meaningless)."""
    symbols = list(book.symbols)
    position = book.position.reindex(index=book.notional.index, columns=symbols).astype("float64").fillna(0.0)
    notional = book.notional.reindex(columns=symbols).astype("float64")
    notional = notional.where(notional.notna() | (position.abs() > 1e-12), 0.0)
    eq = equity.reindex(notional.index).astype("float64")
    eq = eq.where(eq > 0)
    out = notional.div(eq, axis=0)
    out["net"] = out[list(book.symbols)].sum(axis=1, min_count=1)
    out["gross"] = out[list(book.symbols)].abs().sum(axis=1, min_count=1)
    return out


def pnl_correlation(book: "PortfolioBook", freq: str | None = None) -> pd.DataFrame:
    """Pearson correlation of the symbols' PnL (USDT) per bar (``freq=None``) or summed per period (``"1D"``:
    per UTC day). Only periods where at least one symbol's PnL moved count (a flat account tells nothing); a
    symbol whose PnL never moves has NaN correlations (undefined)."""
    pnl = book.pnl.reindex(columns=list(book.symbols)).astype("float64").fillna(0.0)
    if freq is not None and len(pnl):
        pnl = pnl.resample(freq).sum()
    pnl = pnl[(pnl.abs() > 0).any(axis=1)]
    if len(pnl) < 3:
        return pd.DataFrame(np.nan, index=list(book.symbols), columns=list(book.symbols))
    values = pnl.to_numpy()
    spread = values.std(axis=0) > 0
    corr = np.full((values.shape[1], values.shape[1]), np.nan)
    if spread.sum():
        sub = np.corrcoef(values[:, spread], rowvar=False)
        idx = np.flatnonzero(spread)
        corr[np.ix_(idx, idx)] = np.atleast_2d(sub)
    return pd.DataFrame(corr, index=list(book.symbols), columns=list(book.symbols))


# ---------------------------------------------------------------- margin

def margin_stats(book: "PortfolioBook", warning: float = MARGIN_WARNING) -> dict:
    """The account's margin ratio at a glance (ratio 1.0 = 100 % = liquidation):

    ``{"margin_mode", "max_margin_ratio_pct", "max_margin_ratio_at", "mean_margin_ratio_pct", "bars_above_warning",
    "time_above_warning_pct", "warning_pct", "liquidations", "liquidation_loss_usdt", "liquidated_symbols",
    "first_liquidation_at"}``; ratios in percent, the mean over the bars with a position, time above the warning as a
    share of the bars with a ratio."""
    ratio = book.margin_ratio.astype("float64").replace([np.inf, -np.inf], np.nan)
    valid = ratio.dropna()
    liq = book.liquidations if book.liquidations is not None else pd.DataFrame()
    above = int((valid > warning).sum())
    loss = pd.to_numeric(liq["loss"], errors="coerce").fillna(0.0).sum() if "loss" in liq else 0.0
    times = pd.to_datetime(liq["time"], utc=True) if "time" in liq and len(liq) else pd.Series([], dtype=object)
    return {
        "margin_mode": str(book.margin_mode),
        "max_margin_ratio_pct": float(valid.max() * 100) if len(valid) else float("nan"),
        "max_margin_ratio_at": valid.idxmax() if len(valid) else None,
        "mean_margin_ratio_pct": float(valid[valid > 0].mean() * 100) if (valid > 0).any() else float("nan"),
        "warning_pct": warning * 100,
        "bars_above_warning": above,
        "time_above_warning_pct": above / len(valid) * 100 if len(valid) else float("nan"),
        "liquidations": int(len(liq)),
        "liquidation_loss_usdt": float(loss),
        "liquidated_symbols": list(dict.fromkeys(str(s) for s in liq["symbol"])) if "symbol" in liq else [],
        "first_liquidation_at": times.min() if len(times) else None,
    }


# ---------------------------------------------------------------- coverage

def coverage_notices(book: "PortfolioBook") -> list[str]:
    """One sentence per symbol whose candles do not cover the account's whole span: it started later, ended
    earlier or had missing bars. Those bars are never forward-filled: the symbol was not traded there."""
    index = book.position.index
    if not len(index):
        return []
    start, end = index[0], index[-1]
    out = []
    for symbol in book.symbols:
        info = (book.coverage or {}).get(symbol) or {}
        parts = []
        first, last = info.get("first"), info.get("last")
        if first is not None and pd.Timestamp(first) > start:
            parts.append(f"has no data before {pd.Timestamp(first):%Y-%m-%d %H:%M} UTC (the account starts "
                         f"{start:%Y-%m-%d %H:%M})")
        if last is not None and pd.Timestamp(last) < end:
            parts.append(f"has no data after {pd.Timestamp(last):%Y-%m-%d %H:%M} UTC")
        gaps = _inner_gaps(info, start, end)
        missing = int(info.get("missing_bars") or 0)
        if gaps:
            spans = ", ".join(f"{pd.Timestamp(a):%Y-%m-%d %H:%M} → {pd.Timestamp(b):%Y-%m-%d %H:%M}"
                              for a, b in gaps[:3]) + (f" and {len(gaps) - 3} more" if len(gaps) > 3 else "")
            parts.append(f"has {len(gaps)} gap(s) ({spans})")
        if missing:
            parts.append(f"{missing:,} bar(s) without a candle in all")
        if parts:
            out.append(f"{symbol} " + "; ".join(parts) + ": it was not traded there and its prices were not "
                       "forward-filled.")
    return out


def _inner_gaps(info: dict, start: pd.Timestamp, end: pd.Timestamp) -> list:
    """A symbol's gaps inside its own span: a run of missing bars from the account's first bar (a later start) or
    to its last (an earlier end) is reported by ``first``/``last`` already, whether ``gaps`` lists it or not."""
    out = []
    for a, b in info.get("gaps") or []:
        a, b = pd.Timestamp(a), pd.Timestamp(b)
        if a <= start or b >= end:
            continue
        out.append((a, b))
    return out


def coverage_spans(book: "PortfolioBook") -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """``(symbol, start, end)`` for each span of the account's bars where a symbol had no candle (before its first,
    after its last, its gaps), ``end`` exclusive (the gap's last bar's open + one bar), from ``book.coverage``."""
    index = book.position.index
    if len(index) < 2:
        return []
    bar = pd.Series(index[1:] - index[:-1]).mode().iloc[0]
    out = []
    for symbol in book.symbols:
        info = (book.coverage or {}).get(symbol) or {}
        first, last = info.get("first"), info.get("last")
        if first is not None and pd.Timestamp(first) > index[0]:
            out.append((symbol, index[0], pd.Timestamp(first)))
        if last is not None and pd.Timestamp(last) < index[-1]:
            out.append((symbol, pd.Timestamp(last) + bar, index[-1] + bar))
        for a, b in _inner_gaps(info, index[0], index[-1]):
            out.append((symbol, a, b + bar))
    return out


# ---------------------------------------------------------------- per symbol

def symbol_table(book: "PortfolioBook", equity: pd.Series, initial_cash: float) -> pd.DataFrame:
    """One row per symbol: ``weight``, ``price change [%]`` (first to last close it has), ``contribution
    [USDT]``, ``contribution [%]`` (of initial cash, from the book's pnl), ``avg leverage [x]`` (over the bars it
    was held), ``max leverage [x]``, ``time long [%]``, ``time short [%]``, ``liquidations``."""
    lev = exposure(book, equity)
    pnl = book.pnl.reindex(columns=list(book.symbols)).astype("float64").fillna(0.0)
    cash = float(initial_cash)
    liq = book.liquidations if book.liquidations is not None else pd.DataFrame()
    rows = []
    for s in book.symbols:
        close = (book.prices.get(s) if isinstance(book.prices, dict) else None)
        close = close["close"].dropna() if close is not None and "close" in close else pd.Series(dtype="float64")
        pos = book.position[s].astype("float64").fillna(0.0).to_numpy() if s in book.position else np.zeros(0)
        e = lev[s].abs().to_numpy()
        held = np.abs(pos) > 1e-12
        n = max(len(pos), 1)
        rows.append({"symbol": s, "weight": float((book.weights or {}).get(s, np.nan)),
                     "price change [%]": (float(close.iloc[-1] / close.iloc[0]) - 1) * 100 if len(close) else np.nan,
                     "contribution [USDT]": float(pnl[s].sum()),
                     "contribution [%]": float(pnl[s].sum()) / cash * 100 if cash else np.nan,
                     "avg leverage [x]": float(np.nanmean(e[held])) if held.any() else 0.0,
                     "max leverage [x]": float(np.nanmax(e)) if np.isfinite(e).any() else np.nan,
                     "time long [%]": float((pos > 1e-12).sum()) / n * 100,
                     "time short [%]": float((pos < -1e-12).sum()) / n * 100,
                     "liquidations": int((liq["symbol"] == s).sum()) if "symbol" in liq else 0})
    return pd.DataFrame(rows)


def portfolio_metrics(book: "PortfolioBook", equity: pd.Series) -> dict:
    """The metric-table figures a single-symbol run takes from its one position, from the whole book instead:
    ``"Exposure [%]"`` (share of bars with any position), ``"Avg leverage [x]"`` / ``"Max leverage [x]"`` (gross
    notional / equity) and ``"Max margin ratio [%]"`` (the book's own margin ratio)."""
    lev = exposure(book, equity)["gross"].to_numpy(dtype="float64")
    held = (book.position.astype("float64").fillna(0.0).abs() > 1e-12).any(axis=1).to_numpy()
    ratio = book.margin_ratio.astype("float64").replace([np.inf, -np.inf], np.nan)
    return {"Exposure [%]": float(held.mean() * 100) if held.size else np.nan,
            "Avg leverage [x]": float(np.nanmean(lev[held])) if held.any() and np.isfinite(lev[held]).any() else 0.0,
            "Max leverage [x]": float(np.nanmax(lev)) if np.isfinite(lev).any() else np.nan,
            "Max margin ratio [%]": float(ratio.max() * 100) if ratio.notna().any() else np.nan,
            "Liquidations": int(len(book.liquidations)) if book.liquidations is not None else 0}


def pnl_sources(result: "BacktestResult") -> pd.DataFrame:
    """:func:`reports.pnl_sources.pnl_by_source` of a multi-symbol run: fees, slippage and liquidations taken per
    symbol (a liquidation's loss is measured from that symbol's own average entry), funding from the account's
    per-bar series, price the rest of each bar's equity change."""
    from reports.pnl_sources import pnl_by_source

    fills = result.fills
    out = pnl_by_source(result.equity, fills.iloc[0:0], result.funding, result.initial_cash)
    if not len(fills) or "symbol" not in fills:
        return pnl_by_source(result.equity, fills, result.funding, result.initial_cash)
    zero = pd.Series(0.0, index=result.equity.index)
    for _, group in fills.groupby("symbol", sort=False):
        part = pnl_by_source(result.equity, group, zero, result.initial_cash)
        for name in ("fees", "slippage", "liquidation"):
            out[name] += part[name]
    change = np.diff(np.r_[float(result.initial_cash), result.equity.to_numpy(dtype="float64")])
    out["price"] = change - out[["fees", "funding", "slippage", "liquidation"]].sum(axis=1).to_numpy()
    return out


# ---------------------------------------------------------------- the reference

def is_portfolio_reference(result) -> bool:
    """A multi-symbol buy-and-hold run at 1x: ``buy_hold`` at leverage 1 (:func:`reports.sections.is_reference`)
    or a strategy named ``equal_weight...``, with a book."""
    from reports.sections import is_reference

    strategy = str(getattr(result, "strategy", "") or "")
    return getattr(result, "portfolio", None) is not None and (is_reference(result) or
                                                               strategy.startswith("equal_weight"))


def find_portfolio_reference(main: "BacktestResult", baselines: Sequence) -> "BacktestResult | None":
    """The equal-weight buy-and-hold among ``main`` and ``baselines`` (results, not bare curves): the first
    multi-symbol buy-and-hold run, else the first 1x ``buy_hold`` run (:func:`reports.sections.find_reference`),
    else None."""
    from reports.sections import find_reference

    for item in (main, *baselines):
        if not isinstance(item, tuple) and is_portfolio_reference(item):
            return item
    return find_reference(main, baselines)


def estimated_reference(result: "BacktestResult") -> pd.Series:
    """:func:`equal_weight_buy_and_hold` of a result reported without its buy-and-hold run, paying one taker fee
    and the slippage of its ``[broker]`` config (named :data:`EQUAL_WEIGHT_ESTIMATED`)."""
    broker = (result.config.get("broker") or {}) if isinstance(result.config, dict) else {}
    cost = float(broker.get("taker_fee", 0.0) or 0.0) + float(broker.get("slippage_bps", 0.0) or 0.0) / 1e4
    return equal_weight_buy_and_hold(result.portfolio, result.initial_cash, cost).reindex(result.equity.index)


def equal_weight_buy_and_hold(book: "PortfolioBook", initial_cash: float, cost: float = 0.0) -> pd.Series:
    """Equity of the equal-weight buy-and-hold estimated from the closes, at 1x: each symbol gets
    ``initial_cash / n``, less ``cost`` (fee + slippage, a fraction), in the asset at its first close and holds it
    to the end; a symbol that starts later keeps its share in cash until then; funding is left out. Two symbols,
    10,000 USDT, BTC doubling and ETH flat: 15,000 at the end (without cost)."""
    symbols = list(book.symbols)
    index = book.position.index
    share = float(initial_cash) / max(len(symbols), 1)
    total = np.zeros(len(index))
    for s in symbols:
        frame = book.prices.get(s) if isinstance(book.prices, dict) else None
        close = frame["close"].reindex(index).astype("float64") if frame is not None and "close" in frame \
            else pd.Series(np.nan, index=index)
        valid = close.dropna()
        if not len(valid):
            total += share
            continue
        held = close.ffill()   # valuing a held coin at its last close across a gap, not trading it
        value = share * (1.0 - cost) * held / float(valid.iloc[0])
        total += value.fillna(share).to_numpy()
    return pd.Series(total, index=index, name="buy_hold")


def json_block(result: "BacktestResult") -> dict:
    """What ``metrics.json`` holds under ``"portfolio"``: symbols, margin mode, weights, the attribution by symbol
    and source (USDT, with totals) and whether it sums to the account's change, the PnL correlations (per bar and
    per day), the margin statistics and the coverage (with its notices)."""
    book = result.portfolio
    table = attribution_table(book)

    def matrix(frame: pd.DataFrame) -> dict:
        return {str(r): {str(c): frame.loc[r, c] for c in frame.columns} for r in frame.index}

    return {
        "symbols": list(book.symbols), "margin_mode": str(book.margin_mode),
        "weights": {str(k): v for k, v in (book.weights or {}).items()},
        "attribution": matrix(table),
        "attribution_residual_usdt": attribution_residual(book, result),
        "account_change_usdt": _account_change(result),
        "correlation": {"per_bar": matrix(pnl_correlation(book)), "daily": matrix(pnl_correlation(book, "1D"))},
        "margin": margin_stats(book),
        "symbols_table": symbol_table(book, result.equity, result.initial_cash).to_dict("records"),
        "coverage": {str(k): v for k, v in (book.coverage or {}).items()},
        "notices": coverage_notices(book),
    }


__all__ = ["EQUAL_WEIGHT_ESTIMATED", "EQUAL_WEIGHT_NAME", "MARGIN_WARNING", "SOURCES", "attribution_residual",
           "attribution_sums", "attribution_table", "contribution", "coverage_notices", "coverage_spans",
           "equal_weight_buy_and_hold", "estimated_reference", "exposure", "find_portfolio_reference",
           "is_portfolio_reference", "json_block", "margin_stats", "pnl_correlation", "pnl_sources",
           "portfolio_metrics", "symbol_table"]
