"""Planning in the client: each symbol's data read once, each cell checked and given its cut of that data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from backtests.compare.grid import Cell, CellOutcome
from backtests.compare.spec import CompareSpec
from backtests.config import BacktestConfig
from data_feeds import DataError, MarketData, load_market, parse_span
from data_feeds.loader import check_coverage
from data_feeds.timeframes import timeframe_delta


@dataclass(frozen=True)
class DataCut:
    """A cell's market data as a cut of the grid's data (symbol -> :class:`MarketData`, sent once to each worker):
    the bars of ``symbols`` with open time in ``[first, end)``, one symbol's data or, for a symbol set, a
    :class:`~backtests.portfolio.data.PortfolioData` of them."""

    symbols: tuple[str, ...]
    first: pd.Timestamp
    end: pd.Timestamp
    portfolio: bool = False

    def take(self, data: dict[str, MarketData]) -> Any:
        """The cut of ``data``."""
        markets = {s: data[s].slice(self.first, self.end) for s in self.symbols}
        if not self.portfolio:
            return markets[self.symbols[0]]
        from backtests.portfolio.data import PortfolioData

        return PortfolioData(markets)


@dataclass
class CellTask:
    """Everything a worker needs for one cell besides the grid's market data: its config and its cut of the data."""

    cell: Cell
    config: BacktestConfig
    cut: DataCut
    cell_reports: bool = True
    history_bars: int = 0
    sources: dict | None = None
    """Text of the user strategy file the cell runs (``{absolute path: source}``), so a worker needs no shared
    disk; None for built-in and module strategies."""
    rules: Any = None
    """The market's :class:`~backtests.margin.TradingRules`, read here (``--market-rules``, store or snapshot), so
    a worker needs no shared disk for them either."""

    def market(self, data: dict[str, MarketData]) -> Any:
        """This cell's market data out of the grid's ``data`` (:class:`MarketData`, or ``PortfolioData`` for a
        symbol set)."""
        return self.cut.take(data)


@dataclass
class Plan:
    """The grid planned in the client: ``tasks`` for the cells whose data is there, error ``failed`` outcomes for
    the others, and ``data``, each symbol's market data over every cell that reads it (sent once per worker)."""

    tasks: list[CellTask]
    failed: list[CellOutcome]
    data: dict[str, MarketData]


def _history(strategy: str, config: BacktestConfig) -> int:
    from strategies.registry import get_strategy

    return int(get_strategy(strategy).history_bars(config.replace(strategy=strategy)))


def _cell_config(spec: CompareSpec, cell: Cell) -> BacktestConfig:
    from strategies.registry import portable_spec

    if cell.symbols:
        return spec.config.replace(strategy=portable_spec(cell.strategy), baselines=(), name=cell.slug,
                                   params=dict(spec.config.params.get(cell.strategy, {})), symbols=cell.symbols,
                                   weights=None,
                                   data={"symbol": cell.symbols[0], "start": cell.range.start, "end": cell.range.end})
    return spec.config.replace(strategy=portable_spec(cell.strategy), baselines=(), name=cell.slug,
                               params=dict(spec.config.params.get(cell.strategy, {})),
                               data={"symbol": cell.symbol, "start": cell.range.start, "end": cell.range.end})


def _cell_market(full: MarketData, config: BacktestConfig, history: int) -> DataCut:
    """The cell's cut of ``full``: ``history`` bars before the range start, then the range (the same checks and
    messages as :func:`backtests.engine.load_run_data`, on the bar times alone: the worker cuts the data)."""
    d = config.data
    t0, t1 = parse_span(d.start, d.end)
    first = t0 - history * timeframe_delta(d.timeframe)
    index = full.candles.index
    index = index[(index >= first) & (index < t1)]        # the bars the worker's cut will hold (checked here)
    bars = int((index >= t0).sum())
    if bars >= 3:       # a range past the data is this cell's error, never silently cut
        check_coverage(index[index >= t0], t0, t1, d.timeframe, f"{d.symbol} {d.timeframe}",
                       full.candles.attrs.get("covers"))
    if bars < 3:
        raise DataError(f"only {bars} bar(s) of {d.symbol} {d.timeframe} in {d.start} .. {d.end}; need at least 3")
    if history and index[0] > first:
        have = int((index < t0).sum())
        raise DataError(f"{config.strategy} needs {history} bars of history before {d.start} to train; "
                        f"the data has {have} (starts {index[0]:%Y-%m-%d})")
    return DataCut((d.symbol,), first, t1)


def plan_cells(spec: CompareSpec) -> Plan:
    """Tasks for the cells whose data is there, and error outcomes for those whose data is not (no rows in the
    range, not enough history before it, an unknown symbol). Each symbol is read once for all its cells."""
    histories = {s: _history(s, spec.config) for s in spec.strategies}
    bar = timeframe_delta(spec.config.data.timeframe)
    cells = spec.cells()
    tasks, failed = [], []
    fulls: dict = {}
    for symbol in dict.fromkeys([*spec.symbols, *(s for _, members in spec.symbol_sets for s in members)]):
        mine = [c for c in cells if c.symbol == symbol or symbol in c.symbols]
        spans = [parse_span(c.range.start, c.range.end) for c in mine]
        first = min(t0 - histories[c.strategy] * bar for c, (t0, _) in zip(mine, spans))
        last = max(t1 for _, t1 in spans)
        d = spec.config.data
        try:
            full = load_market(d.exchange, symbol, d.timeframe, first, last, store_dir=d.store_dir, check_end=False,
                               data_path=d.path, funding_path=d.funding_path, mark_path=d.mark_path)
            from backtests.engine import run_rules

            singles = [c for c in mine if not c.symbols]
            rules = run_rules(_cell_config(spec, singles[0])) if singles else None
        except DataError as exc:
            fulls[symbol] = exc
            failed += [CellOutcome(c, error=f"DataError: {exc}") for c in mine if not c.symbols]
            continue
        fulls[symbol] = full
        for cell in (c for c in mine if not c.symbols):
            config = _cell_config(spec, cell)
            try:
                cut = _cell_market(full, config, histories[cell.strategy])
                if spec.symbol_sets:
                    from backtests.portfolio.engine import refuse_portfolio_without_symbols

                    refuse_portfolio_without_symbols(config.strategy)
            except DataError as exc:
                failed.append(CellOutcome(cell, error=f"DataError: {exc}"))
                continue
            except ValueError as exc:
                failed.append(CellOutcome(cell, error=f"ValueError: {exc}"))
                continue
            tasks.append(CellTask(cell, config, cut, spec.cell_reports, histories[cell.strategy],
                                  _strategy_sources(config.strategy), rules))
    for cell in (c for c in cells if c.symbols):
        config = _cell_config(spec, cell)
        try:
            cut = _set_market(fulls, config, histories[cell.strategy])
            from backtests.portfolio.engine import portfolio_class

            portfolio_class(config.strategy)
        except (DataError, ValueError) as exc:
            failed.append(CellOutcome(cell, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
            continue
        tasks.append(CellTask(cell, config, cut, spec.cell_reports, histories[cell.strategy],
                              _strategy_sources(config.strategy)))
    needed = {s for task in tasks for s in task.cut.symbols}
    return Plan(tasks, failed, {s: fulls[s] for s in fulls if s in needed})


def _set_market(fulls: dict, config: BacktestConfig, history: int) -> DataCut:
    """A portfolio cell's cut: each symbol's bars from ``history`` bars before the range to its end, as a
    :class:`~backtests.portfolio.data.PortfolioData`; a symbol that starts later inside the range is kept (the
    run reports it), one with no bar in the range or too little history is this cell's error."""
    from backtests.portfolio.data import PortfolioData

    d = config.data
    t0, t1 = parse_span(d.start, d.end)
    first = t0 - history * timeframe_delta(d.timeframe)
    markets = {}
    for symbol in config.symbols:
        full = fulls[symbol]
        if isinstance(full, Exception):
            raise full
        market = full.slice(first, t1)
        if not (market.candles.index >= t0).any():
            raise DataError(f"no {symbol} {d.timeframe} candles in {d.start} .. {d.end}")
        if history and market.candles.index[0] > first:
            raise DataError(f"{config.strategy} needs {history} bars of {symbol} history before {d.start}; the data "
                            f"starts {market.candles.index[0]:%Y-%m-%d}")
        markets[symbol] = market
    data = PortfolioData(markets)
    span = data.index[data.index >= t0]
    if len(span) < 3:
        raise DataError(f"only {len(span)} bar(s) of {' + '.join(config.symbols)} in {d.start} .. {d.end}")
    check_coverage(span, t0, t1, d.timeframe, f"{' + '.join(config.symbols)} {d.timeframe}")
    return DataCut(tuple(config.symbols), first, t1, portfolio=True)


def _strategy_sources(strategy: str) -> dict | None:
    from strategies.loader import file_spec_path, read_source

    path = file_spec_path(strategy)
    return {path: read_source(path)} if path else None

