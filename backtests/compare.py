"""Compare strategies across date ranges and symbols: what ``lstmbt compare`` does.

Every cell of the grid (strategy x range x symbol) is one :func:`~backtests.engine.run_backtest` with the same
broker, fraction, seed and model settings. The client loads each symbol's market data once and sends it once to
each worker (local processes or a Dask cluster), so workers need no shared disk; each task names its cell's cut of
it (the range plus the history its strategy trains on, strictly before the range start), which the client checked. A cell that raises becomes an error row;
the others still finish. From Python::

    spec = load_compare_spec("backtests/configs/compare_example.toml")
    folder, comparison = run_and_write(spec)

A spec file is a backtest config (``[data]``, ``[broker]``, ``[model]`` ...) plus a ``[compare]`` table::

    [compare]
    strategies = ["lstm", "sma_cross", "buy_hold"]
    symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    ranges = { bull = "2020-10-01:2021-04-15", bear = "2022-04-01:2022-12-31" }
    # or: rolling = "6M"  (consecutive windows over [data] start .. end)
    workers = 2                       # local process pool; 0 = in this process
    # scheduler = "tcp://scheduler-host:8786"   (a Dask cluster instead; start its workers with --nthreads 1, as
    #                                       LSTM training seeds torch's global generator per process)

    [params.sma_cross]                # strategy parameters, one table per strategy
    fast = 10
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from backtests.config import BacktestConfig, ConfigError, config_from_dict, read_toml
from backtests.executors import Executor, TaskFailure, make_executor, with_lazy_imports
from backtests.grid import Cell, CellOutcome, DateRange, build_cells, parse_ranges, parse_symbol_sets, ranges_from_mapping, \
    rolling_ranges
from data_feeds import DataError, MarketData, load_market, parse_span
from data_feeds.loader import check_coverage
from data_feeds.symbols import check_symbol
from data_feeds.timeframes import timeframe_delta

Progress = Callable[[str], None]
REFERENCE_STRATEGY = "buy_hold"
COMPARE_KEYS = ("strategies", "symbols", "ranges", "rolling", "workers", "scheduler", "cell_reports", "confidence",
                "bootstrap", "out", "symbol_sets")


@dataclass(frozen=True)
class CompareSpec:
    """A comparison: the base backtest ``config`` (exchange, timeframe, broker, fraction, seed, model, params) and
    the grid axes, plus how to run it (``workers``/``scheduler``) and what to write (``cell_reports``, ``out``).
    ``confidence=0.95``: intervals cover 95 %, and "beats buy-and-hold with confidence" needs a DSR >= 0.95;
    ``bootstrap=1000`` resamples per interval."""

    config: BacktestConfig
    strategies: tuple[str, ...]
    ranges: tuple[DateRange, ...]
    symbols: tuple[str, ...]
    workers: int | None = None
    scheduler: str | None = None
    cell_reports: bool = True
    confidence: float = 0.95
    bootstrap: int = 1000
    out: str | None = None
    symbol_sets: tuple = ()
    """Portfolio cells: (name, symbols) pairs, e.g. ``(("majors", ("BTC/USDT:USDT", "ETH/USDT:USDT")),)``; each
    runs :func:`backtests.portfolio.engine.run_portfolio` on those symbols in one account (``config.margin``)."""

    def cells(self) -> list[Cell]:
        return build_cells(list(self.strategies), list(self.ranges), list(self.symbols), list(self.symbol_sets))


@dataclass(frozen=True)
class DataCut:
    """A cell's market data as a cut of the grid's data (symbol -> :class:`MarketData`, sent once to each worker):
    the bars of ``symbols`` with open time in ``[first, end)``, one symbol's data or, for a symbol set, a
    :class:`~backtests.portfolio.data.PortfolioData` of them."""

    symbols: tuple[str, ...]
    first: Any
    end: Any
    portfolio: bool = False

    def take(self, data: dict[str, MarketData]):
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

    def market(self, data: dict[str, MarketData]):
        """This cell's market data out of the grid's ``data``."""
        return self.cut.take(data)


@dataclass
class Plan:
    """The grid planned in the client: ``tasks`` for the cells whose data is there, error ``failed`` outcomes for
    the others, and ``data``, each symbol's market data over every cell that reads it (sent once per worker)."""

    tasks: list[CellTask]
    failed: list[CellOutcome]
    data: dict[str, MarketData]


# ---------------------------------------------------------------- the spec: TOML and flags

def _list(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of names, got {value!r}")
    return tuple(v for v in value if v)


def resolve_spec(config: BacktestConfig, table: dict, where: str = "compare") -> CompareSpec:
    """Check the ``[compare]`` table against ``config`` and build the spec; ranges default to ``config.data``'s
    span (one range named "span"), strategies to ``config.strategy`` and its baselines."""
    from strategies.registry import get_strategy

    if config.data.funding_path and not config.data.path:
        raise ConfigError(f"{where}: a funding file (--funding-data) goes with a candles file (--data)")
    if config.data.mark_path and not config.data.path:
        raise ConfigError(f"{where}: a mark-price file (--mark-data) goes with a candles file (--data)")
    flat = sorted(k for k, v in config.params.items() if not isinstance(v, dict))
    if flat:
        raise ConfigError(f"{where}: in a comparison, [params] holds one table per strategy, e.g. "
                          f"[params.sma_cross] fast = 10; found {', '.join(flat)}")
    unknown = sorted(set(table) - set(COMPARE_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where} [compare]: {', '.join(unknown)}; valid: {', '.join(COMPARE_KEYS)}")
    strategies = _list(table.get("strategies", [config.strategy, *config.baselines]), "strategies")
    for name in strategies:
        get_strategy(name)
    stray = sorted(set(config.params) - set(strategies))
    if stray:
        raise ConfigError(f"{where}: [params] names strategies not compared: {', '.join(stray)}")
    sets = tuple(parse_symbol_sets(table["symbol_sets"])) if table.get("symbol_sets") is not None else ()
    default = [] if sets else [config.data.symbol]
    symbols = tuple(check_symbol(s) for s in _list(table.get("symbols", default), "symbols"))
    if sets and (config.data.path or config.data.mark_path or config.data.market_rules):
        raise ConfigError(f"{where}: --data, --mark-data and --market-rules describe one market; symbol sets read "
                          f"each symbol from the store or the shipped sample")
    if config.data.path and len(symbols) != 1:
        raise ConfigError(f"{where}: a candles file (--data {config.data.path}) holds one market; compare it under "
                          f"one symbol (--symbols {symbols[0]}), or drop --data to compare symbols from the store")
    if table.get("ranges") is not None and table.get("rolling") is not None:
        raise ConfigError("give either ranges or rolling, not both")
    if table.get("rolling") is not None:
        ranges = rolling_ranges(config.data.start, config.data.end, str(table["rolling"]))
    elif isinstance(table.get("ranges"), dict):
        ranges = ranges_from_mapping(table["ranges"])
    elif table.get("ranges") is not None:
        ranges = parse_ranges(str(table["ranges"]))
    else:
        ranges = [DateRange("span", config.data.start, config.data.end)]
    workers = table.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers must be a whole number >= 0, got {workers!r}")
    confidence = table.get("confidence", 0.95)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        raise ConfigError(f"confidence must be a number in [0.5, 1), got {confidence!r}")
    timeframe_delta(config.data.timeframe)
    if not isinstance(table.get("cell_reports", True), bool):
        raise ConfigError(f"cell_reports must be true or false, got {table['cell_reports']!r}")
    bootstrap = table.get("bootstrap", 1000)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 100:
        raise ConfigError(f"bootstrap must be a whole number of resamples >= 100, got {bootstrap!r}")
    for key in ("out", "scheduler", "rolling"):
        if table.get(key) is not None and not isinstance(table[key], str):
            raise ConfigError(f"{where}: {key} must be text, got {table[key]!r:.60}")
    spec = CompareSpec(config=config, strategies=strategies, ranges=tuple(ranges), symbols=symbols, workers=workers,
                       scheduler=table.get("scheduler") or None, cell_reports=bool(table.get("cell_reports", True)),
                       confidence=float(confidence), bootstrap=bootstrap, out=table.get("out"), symbol_sets=sets)
    spec.cells()    # duplicate names are refused here, before any data is loaded
    return spec


def load_compare_file(path: str | Path) -> tuple[BacktestConfig, dict]:
    """A spec file's backtest config and its ``[compare]`` table (not yet checked)."""
    p = Path(path)
    raw = read_toml(p)
    table = raw.pop("compare", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: [compare] must be a table")
    return config_from_dict(raw, str(p)), dict(table)


def load_compare_spec(path: str | Path) -> CompareSpec:
    """Read and check a spec file (see the module docstring)."""
    config, table = load_compare_file(path)
    return resolve_spec(config, table, str(path))


# ---------------------------------------------------------------- planning: data in the client

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
    messages as :func:`backtests.engine.load_run_data`)."""
    d = config.data
    t0, t1 = parse_span(d.start, d.end)
    first = t0 - history * timeframe_delta(d.timeframe)
    market = full.slice(first, t1)
    bars = int((market.candles.index >= t0).sum())
    if bars >= 3:       # a range past the data is this cell's error, never silently cut
        check_coverage(market.candles.index[market.candles.index >= t0], t0, t1, d.timeframe,
                       f"{d.symbol} {d.timeframe}", full.candles.attrs.get("covers"))
    if bars < 3:
        raise DataError(f"only {bars} bar(s) of {d.symbol} {d.timeframe} in {d.start} .. {d.end}; need at least 3")
    if history and market.candles.index[0] > first:
        have = int((market.candles.index < t0).sum())
        raise DataError(f"{config.strategy} needs {history} bars of history before {d.start} to train; "
                        f"the data has {have} (starts {market.candles.index[0]:%Y-%m-%d})")
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


# ---------------------------------------------------------------- running

def run_cell(task: CellTask, data: dict[str, MarketData]) -> CellOutcome:
    """Run one cell on its cut of the grid's ``data`` where it lands (a worker process, a Dask worker, or here)
    and never raise: an exception
    becomes the outcome's ``error`` (``"DataError: ..."``) with the traceback as ``detail``. Next to the cell, the
    worker runs the cell's one buy-and-hold (``buy_hold`` at 1x on the same bars and broker, fees and funding
    paid; a 1x ``buy_hold`` cell is its own) and keeps its equity in ``result.extras["buy_hold_1x"]`` for the
    verdict. With ``cell_reports`` the cell's report folder is rendered here and returned as bytes."""
    from backtests.engine import run_backtest

    started = time.perf_counter()
    try:
        if task.sources:
            from strategies.loader import provide_source

            for path, text in task.sources.items():
                provide_source(path, text)
        def run(config, market):
            return run_backtest(config, market=market, rules=task.rules)
        if task.cell.symbols:           # a symbol set: one account, the equal-weight buy-and-hold as reference
            from backtests.portfolio.engine import run_portfolio

            def run(config, market):
                return run_portfolio(config, data=market)
        market = task.market(data)
        result = run(task.config, market=market)
        reference = None
        if not (task.config.strategy == REFERENCE_STRATEGY and task.config.broker.leverage == 1.0):
            reference = run(task.config.replace(strategy=REFERENCE_STRATEGY, params={},
                                                broker={"leverage": 1.0}), market=market)
            result.extras["buy_hold_1x"] = reference.equity
    except Exception as exc:            # the cell's failure is its result; the grid goes on
        text = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        return CellOutcome(task.cell, error=error, detail=traceback.format_exc(),
                           seconds=time.perf_counter() - started)
    files: dict[str, bytes] = {}
    if task.cell_reports:
        from reports.comparison import report_files     # matplotlib, only where reports are drawn

        try:
            files = report_files(result, baselines=[reference] if reference is not None else [])
        except Exception:               # the backtest stands; the cell folder says why its report is missing
            files = {"report-error.txt": traceback.format_exc().encode()}
    return CellOutcome(task.cell, result=result, files=files, seconds=time.perf_counter() - started)


def worker_modules(spec: CompareSpec) -> list[str]:
    """Modules a worker needs for ``spec``'s cells (the engine, each strategy's module, the report writer, and
    what those import on first use, see :func:`~backtests.executors.with_lazy_imports`), for a process pool to
    import once before it forks its workers."""
    from strategies.registry import get_strategy

    from strategies.loader import MODULE_PREFIX

    owners = (get_strategy(s).__module__ for s in spec.strategies)
    modules = ["backtests.compare", "backtests.engine", *(m for m in owners if not m.startswith(MODULE_PREFIX))]
    if spec.symbol_sets:
        modules.append("backtests.portfolio.engine")
    return with_lazy_imports(list(dict.fromkeys(modules + (["reports.comparison"] if spec.cell_reports else []))))


def run_comparison(spec: CompareSpec, executor: Executor | None = None, *, progress: Progress | None = None,
                   show_bar: bool | None = None) -> list[CellOutcome]:
    """Run every cell of ``spec`` on ``executor`` (default: the one the spec asks for, closed afterwards) and return
    the outcomes in grid order (range, symbol, strategy). A progress bar over cells goes to stderr when it is a
    terminal (``show_bar=None``); ``progress`` gets one line per cell that fails, and per cell that finishes when
    the bar is off. Cells that train a model are sent first, so the long ones do not start last."""
    from tqdm import tqdm

    cells = spec.cells()
    plan = plan_cells(spec)
    tasks, outcomes = plan.tasks, plan.failed
    tasks.sort(key=lambda t: -t.history_bars)
    own = executor is None
    executor = make_executor(spec.workers, spec.scheduler, preload=worker_modules(spec)) if own else executor
    bar = tqdm(total=len(cells), desc="compare", unit="cell", file=sys.stderr, dynamic_ncols=True,
               disable=None if show_bar is None else not show_bar)
    done: dict[Cell, CellOutcome] = {}

    def report(outcome: CellOutcome) -> None:
        done[outcome.cell] = outcome
        bar.update(1)
        bar.set_postfix(failed=sum(not o.ok for o in done.values()), refresh=False)
        if progress and (not outcome.ok or bar.disable):
            state = f"ok in {outcome.seconds:.1f} s" if outcome.ok else outcome.error
            line = f"  [{len(done)}/{len(cells)}] {outcome.cell.label}: {state}"
            if bar.disable:
                progress(line)
            else:
                bar.write(line, file=sys.stderr)      # above the bar, not through it

    try:
        for outcome in outcomes:
            report(outcome)
        for i, value in executor.map_unordered(run_cell, tasks, shared=plan.data):
            if isinstance(value, TaskFailure):
                value = CellOutcome(tasks[i].cell, error=value.error)
            report(value)
    finally:
        bar.close()
        if own:
            executor.close()
    return [done[c] for c in cells]


def default_out_dir(spec: CompareSpec) -> Path:
    """``<out_dir>/<UTC time>-compare`` (or ``-<name>`` when the spec names itself), e.g.
    ``runs/20260101-120000-compare``."""
    from backtests.session import slug

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = spec.config.name if spec.config.name not in ("backtest", "") else "compare"
    return Path(spec.config.out_dir) / f"{stamp}-{slug(name)}"


def record_trials(outcomes: list[CellOutcome], ledger: str | Path | None = None) -> tuple[dict, str]:
    """Record every cell that ran in the trial ledger (:mod:`backtests.ledger`), then count, per cell, the
    configurations tried so far on its symbol, timeframe and an overlapping span. Returns ``({outcome index:
    Trials}, ledger path)``."""
    from backtests import ledger as trial_ledger

    ran = [o.result for o in outcomes if o.ok]
    path = trial_ledger.record_results("compare", ran, ledger)
    entries = trial_ledger.read(path)
    trials = {}
    for i, o in enumerate(outcomes):
        if o.ok:
            r = o.result
            trials[i] = trial_ledger.trials_on(r.exchange, r.symbol, r.timeframe, r.equity.index[0],
                                               r.equity.index[-1], path=path, entries=entries)
    return trials, str(path)


def run_and_write(spec: CompareSpec, out: str | Path | None = None, *, executor: Executor | None = None,
                  progress: Progress | None = None, show_bar: bool | None = None, force: bool = False,
                  ledger: str | Path | None = None):
    """Run the grid, record its cells in the trial ledger (``ledger``, default ``$LSTMBT_LEDGER`` or the user
    cache) and write the comparison folder; returns ``(folder, outcomes, Comparison)``. The folder must be absent
    or empty unless ``force``; it is built under a temporary name and renamed when complete."""
    from backtests.session import check_out_folder, staged_folder
    from reports.comparison import write_comparison

    folder = check_out_folder(Path(out or spec.out or default_out_dir(spec)), force=force)
    outcomes = run_comparison(spec, executor, progress=progress, show_bar=show_bar)
    title = f"Comparison: {', '.join(spec.strategies)} on {spec.config.data.timeframe} bars"
    trials, path = record_trials(outcomes, ledger)
    with staged_folder(folder, force=force) as tmp:
        _, comparison = write_comparison(outcomes, tmp, title=title, confidence=spec.confidence,
                                         n_boot=spec.bootstrap, seed=spec.config.seed, trials=trials, ledger=path)
    return folder, outcomes, comparison


# ---------------------------------------------------------------- the command line

EXAMPLES = """examples:
  lstmbt compare --strategies lstm,sma_cross,buy_hold \\
      --ranges bull=2020-10-01:2021-04-15,bear=2022-04-01:2022-12-31,chop=2023-03-01:2023-09-30 \\
      --symbols BTC/USDT:USDT,ETH/USDT:USDT --config backtests/configs/compare_example.toml
  lstmbt compare --strategies sma_cross,buy_hold --start 2022-01-01 --end 2023-12-31 --rolling 6M
  lstmbt compare --config backtests/configs/compare_example.toml --scheduler tcp://scheduler-host:8786"""


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lstmbt compare``; they override the ``--config`` file's values."""
    from backtests.cli import _add_broker_flags

    parser.epilog = EXAMPLES
    parser.add_argument("--config", help="TOML file: a backtest config plus a [compare] table")
    g = parser.add_argument_group("grid")
    g.add_argument("--strategies", help="comma-separated, e.g. lstm,sma_cross,buy_hold,my_rsi.py:RsiLongShort")
    g.add_argument("--ranges", help="name=YYYY-MM-DD:YYYY-MM-DD[,...], end day inclusive")
    g.add_argument("--rolling", help="cut --start .. --end into consecutive windows: 90D, 2W, 6M, 1Y")
    g.add_argument("--symbols", help="comma-separated ccxt symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT")
    g.add_argument("--symbol-sets", dest="symbol_sets",
                   help="portfolio cells, each a set of symbols in one account: name=SYMBOL+SYMBOL[,...], e.g. "
                        "majors=BTC/USDT:USDT+ETH/USDT:USDT (with portfolio strategies: lstm_portfolio, buy_hold...)")
    g.add_argument("--margin", help="margin mode of the symbol-set cells: cross or isolated (default)")
    g.add_argument("--exchange", help="ccxt exchange id (default binanceusdm)")
    g.add_argument("--timeframe", help="bar size for every cell, e.g. 1h")
    g.add_argument("--start", help="span for --rolling (or the single range): first day, YYYY-MM-DD")
    g.add_argument("--end", help="span for --rolling: last day, inclusive")
    g.add_argument("--data-dir", dest="store_dir", help="local data store folder")
    g.add_argument("--data", dest="path", help="your own candles file (CSV or Parquet) instead of the store; "
                                               "one symbol")
    g.add_argument("--funding-data", dest="funding_path", help="your own funding file (timestamp,funding_rate)")
    g.add_argument("--mark-data", dest="mark_path",
                   help="your own mark-price candles (timestamp,open,high,low,close), with --data; one symbol")
    g.add_argument("--market-rules", dest="market_rules",
                   help="JSON/TOML file of the market rules (one market, or [markets.\"SYM\"] tables per symbol)")
    r = parser.add_argument_group("running")
    r.add_argument("--workers", type=int, help="local worker processes (default: one per core; 0 = in this process)")
    r.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://scheduler-host:8786 (instead of local workers)")
    r.add_argument("--out", help="output folder (default runs/<UTC time>-compare); must be empty unless --force")
    r.add_argument("--force", action="store_true", help="replace a non-empty --out folder once the comparison is done")
    r.add_argument("--no-cell-reports", dest="cell_reports", action="store_false", default=None,
                   help="skip each cell's own report folder (faster)")
    r.add_argument("--confidence", type=float, help="for intervals and the verdict (default 0.95)")
    r.add_argument("--bootstrap", type=int, help="bootstrap resamples per cell (default 1000)")
    r.add_argument("--seed", type=int, help="seed for models and the bootstrap (default 42)")
    r.add_argument("--fraction", type=float, help="share of equity per position, 0-1 (default 0.99)")
    r.add_argument("--name", help="name used in the default output folder")
    r.add_argument("--cache-dir", help="folder for trained models (default: user cache)")
    r.add_argument("--risk-free", type=float, dest="risk_free",
                   help="annual risk-free rate for Sharpe, Sortino and the verdict, 0.04 = 4%% (default 0)")
    r.add_argument("--ledger", help="trial ledger file (default $LSTMBT_LEDGER or ledger.jsonl in the user cache)")
    _add_broker_flags(parser)


def spec_from_args(args: argparse.Namespace) -> CompareSpec:
    """The spec from ``--config`` (if any) with the flags given applied on top."""
    if args.ranges is not None and args.rolling is not None:
        raise ConfigError("give either --ranges or --rolling, not both")
    where = str(args.config) if args.config else "command line"
    config, table = load_compare_file(args.config) if args.config else (BacktestConfig(), {})
    data = {k: getattr(args, k) for k in ("exchange", "timeframe", "start", "end", "store_dir", "path",
                                          "funding_path", "mark_path", "market_rules")
            if getattr(args, k, None) is not None}
    from backtests.cli import broker_overrides

    broker = broker_overrides(args)
    top = {k: getattr(args, k) for k in ("seed", "fraction", "name", "cache_dir", "risk_free", "margin")
           if getattr(args, k, None) is not None}
    try:
        config = config.replace(data=data, broker=broker, **top)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    flags = {k: getattr(args, k) for k in ("strategies", "symbols", "ranges", "rolling", "workers", "scheduler",
                                          "out", "cell_reports", "confidence", "bootstrap", "symbol_sets")
             if getattr(args, k, None) is not None}
    if "ranges" in flags:
        table.pop("rolling", None)
    if "rolling" in flags:
        table.pop("ranges", None)
    return resolve_spec(config, {**table, **flags}, where)


def _text_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(r[c].ljust(w) for c, w in zip(columns, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def compare_command(args: argparse.Namespace) -> int:
    """``lstmbt compare``: 0 when at least one cell ran, 1 when every cell failed (user errors raise ValueError)."""
    from reports.comparison import short_rows

    from backtests.session import check_out_folder

    spec = spec_from_args(args)
    check_out_folder(Path(spec.out or default_out_dir(spec)), force=getattr(args, "force", False))
    cells = spec.cells()
    where = f"Dask at {spec.scheduler}" if spec.scheduler else \
        "this process" if spec.workers == 0 else f"{spec.workers or 'one per core'} local worker(s)"
    print(f"lstmbt compare: {len(spec.strategies)} strategies x {len(spec.ranges)} ranges x "
          f"{len(spec.symbols) + len(spec.symbol_sets)} symbols/sets = {len(cells)} cells on {spec.config.data.timeframe} bars, {where}", flush=True)
    started = time.perf_counter()
    folder, outcomes, comparison = run_and_write(spec, progress=lambda line: print(line, flush=True),
                                                 force=getattr(args, "force", False),
                                                 ledger=getattr(args, "ledger", None))
    rows = short_rows(comparison.table)
    for row, outcome in zip(rows, outcomes):
        row["Beats B&H"] = row["Beats B&H"] if outcome.ok else f"error: {outcome.error}"[:80]
    print()
    print(_text_table(rows, ["strategy", "range", "symbol", "Return [%]", "Sharpe", "Sharpe CI", "B&H Sharpe",
                             "p vs B&H", "Trials", "DSR vs 0", "Beats B&H"]))
    failed = sum(not o.ok for o in outcomes)
    print(f"\n{len(outcomes) - failed} of {len(outcomes)} cells ran ({failed} failed) in "
          f"{time.perf_counter() - started:.1f} s")
    print(f"comparison: {folder / 'comparison.html'}")
    return 0 if failed < len(outcomes) else 1


__all__ = ["CellTask", "CompareSpec", "DataCut", "Plan", "add_compare_arguments", "compare_command", "load_compare_spec",
           "plan_cells", "record_trials", "resolve_spec", "run_and_write", "run_cell", "run_comparison",
           "spec_from_args",
           "worker_modules"]
