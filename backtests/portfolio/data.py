"""Several symbols over one span, on one clock: the union of their bar times, never forward-filled.

Each symbol keeps its own candles, funding and mark prices (a :class:`~data_feeds.MarketData` each). The account's
clock is the union of the symbols' bar open times in the span: a symbol that starts later, or whose data has a gap,
simply has no candle at those bars. Backtrader's multi-data synchronisation then leaves that symbol's feed on its
last real bar, the portfolio strategy does not trade it there (:meth:`~strategies.portfolio.PortfolioStrategy.
has_candle`) and the book shows NaN for its price and notional. :func:`coverage` names those bars per symbol
(first, last, missing bars, gaps) and :func:`coverage_notice` says it in one line.

>>> data, t0, t1 = load_portfolio_data(config)            # config.symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT")
>>> data.slice(t0, t1).index                               # the account's bars      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_feeds import DataError, MarketData, load_market, parse_span
from data_feeds.loader import check_coverage
from data_feeds.timeframes import timeframe_delta


@dataclass
class PortfolioData:
    """One :class:`~data_feeds.MarketData` per symbol (``markets``, in the run's symbol order), same exchange and
    timeframe. ``index`` is the account's clock: the union of every symbol's candle times."""

    markets: dict[str, MarketData]

    @property
    def symbols(self) -> list[str]:
        return list(self.markets)

    @property
    def timeframe(self) -> str:
        return next(iter(self.markets.values())).timeframe

    @property
    def exchange(self) -> str:
        return next(iter(self.markets.values())).exchange

    @property
    def index(self) -> pd.DatetimeIndex:
        """The union of the symbols' bar open times (UTC), sorted."""
        out = None
        for market in self.markets.values():
            out = market.candles.index if out is None else out.union(market.candles.index)
        return out

    def slice(self, start: pd.Timestamp, end_exclusive: pd.Timestamp) -> "PortfolioData":
        """Every symbol limited to bars opening in ``[start, end_exclusive)``."""
        return PortfolioData({s: m.slice(start, end_exclusive) for s, m in self.markets.items()})

    @property
    def source(self) -> str:
        return "; ".join(f"{s}: {m.source}" for s, m in self.markets.items())


def coverage(candles: pd.DatetimeIndex, index: pd.DatetimeIndex) -> dict:
    """Where a symbol has candles on the account's bars ``index``: ``{"first", "last", "missing_bars", "gaps"}``,
    ``gaps`` a list of ``[first missing bar, last missing bar]`` runs (a later start is the first gap).

    Account bars 00:00 .. 05:00, the symbol has 02:00, 03:00, 05:00: first 02:00, last 05:00, missing 3, gaps
    [[00:00, 01:00], [04:00, 04:00]].
    """
    have = index.isin(candles)
    missing = ~have
    gaps = []
    if missing.any():
        edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        gaps = [[index[a], index[b]] for a, b in zip(starts, ends)]
    inside = candles[(candles >= index[0]) & (candles <= index[-1])] if len(index) else candles[:0]
    return {"first": inside[0] if len(inside) else None, "last": inside[-1] if len(inside) else None,
            "missing_bars": int(missing.sum()), "gaps": gaps}


def portfolio_coverage(data: PortfolioData) -> dict[str, dict]:
    """:func:`coverage` of every symbol on the account's clock."""
    index = data.index
    return {s: coverage(m.candles.index, index) for s, m in data.markets.items()}


def coverage_notice(cover: dict[str, dict]) -> str:
    """One line: every symbol's coverage of the account's bars, e.g. ``coverage: BTC/USDT:USDT every bar;
    ETH/USDT:USDT from 2024-07-03 00:00, 5 bar(s) without a candle in 2 gap(s) (not traded there, never filled)``."""
    parts, incomplete = [], False
    for symbol, c in cover.items():
        if not c["missing_bars"]:
            parts.append(f"{symbol} every bar")
            continue
        incomplete = True
        first = f" from {c['first']:%Y-%m-%d %H:%M}" if c["first"] is not None else ""
        parts.append(f"{symbol}{first}, {c['missing_bars']} bar(s) without a candle in {len(c['gaps'])} gap(s)")
    tail = " (no trading there, prices never forward-filled)" if incomplete else ""
    return "coverage: " + "; ".join(parts) + tail


def load_portfolio_data(config, history_bars: int = 0) -> tuple[PortfolioData, pd.Timestamp, pd.Timestamp]:
    """Each of ``config.symbols``' market data over the config's span plus ``history_bars`` bars before it,
    from the store or the shipped sample (``config.data``'s exchange, timeframe and store). A symbol with no bar in
    the span, or without the history a model needs, is a one-line DataError naming it; a symbol that starts later
    inside the span runs (and is reported, see :func:`coverage`)."""
    d = config.data
    if d.path or d.funding_path or d.mark_path or d.market_rules:
        raise DataError("--data, --funding-data, --mark-data and --market-rules describe one market; a portfolio "
                        "(--symbols) reads each symbol from the store or the shipped sample")
    t0, t1 = parse_span(d.start, d.end)
    first = t0 - history_bars * timeframe_delta(d.timeframe)
    markets = {}
    for symbol in config.symbols:
        market = load_market(d.exchange, symbol, d.timeframe, first, d.end, store_dir=d.store_dir, check_end=False)
        span = market.candles.index[market.candles.index >= t0]
        if len(span) == 0:
            raise DataError(f"no {symbol} {d.timeframe} candles in {d.start} .. {d.end}")
        if history_bars and market.candles.index[0] > first:
            have = int((market.candles.index < t0).sum())
            raise DataError(f"{config.strategy} needs {history_bars} bars of {symbol} history before {d.start} to "
                            f"train; the data has {have} (starts {market.candles.index[0]:%Y-%m-%d}); move --start "
                            f"later")
        markets[symbol] = market
    data = PortfolioData(markets)
    index = data.index
    index = index[index >= t0]
    if len(index) < 3:
        raise DataError(f"only {len(index)} bar(s) of {', '.join(config.symbols)} {d.timeframe} in {d.start} .. "
                        f"{d.end}; need at least 3")
    # the span must be covered by the data as a whole (one symbol reaching the end is enough: the others' missing
    # end is reported as a gap, never filled)
    check_coverage(index, t0, t1, d.timeframe, f"{' + '.join(config.symbols)} {d.timeframe}")
    return data, t0, t1


__all__ = ["PortfolioData", "coverage", "coverage_notice", "load_portfolio_data", "portfolio_coverage"]
