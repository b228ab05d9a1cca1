"""The comparison's spec: the grid axes and how to run it, from a TOML file's ``[compare]`` table or flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backtests.compare.grid import Cell, DateRange, build_cells, parse_ranges, parse_symbol_sets, ranges_from_mapping, \
    rolling_ranges
from backtests.config import BacktestConfig, ConfigError, config_from_dict, read_toml
from data_feeds.symbols import check_symbol
from data_feeds.timeframes import timeframe_delta

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

