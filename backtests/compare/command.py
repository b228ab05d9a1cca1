"""``lstmbt compare``: its flags, the spec they give, and the printed summary."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backtests.compare.run import default_out_dir, run_and_write
from backtests.compare.spec import CompareSpec, load_compare_file, resolve_spec
from backtests.config import BacktestConfig, ConfigError


EXAMPLES = """examples:
  lstmbt compare --strategies lstm,sma_cross,buy_hold \\
      --ranges bull=2020-10-01:2021-04-15,bear=2022-04-01:2022-12-31,chop=2023-03-01:2023-09-30 \\
      --symbols BTC/USDT:USDT,ETH/USDT:USDT --config backtests/configs/compare_example.toml
  lstmbt compare --strategies sma_cross,buy_hold --start 2022-01-01 --end 2023-12-31 --rolling 6M
  lstmbt compare --config backtests/configs/compare_example.toml --scheduler tcp://scheduler-host:8786"""


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lstmbt compare``; they override the ``--config`` file's values."""
    from backtests.flags import add_broker_flags, add_data_flags, add_flags

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
    add_data_flags(parser, skip=("--symbol",), timeframe="bar size for every cell, e.g. 1h",
                   start="span for --rolling (or the single range): first day, YYYY-MM-DD",
                   end="span for --rolling: last day, inclusive",
                   data="your own candles file (CSV or Parquet) instead of the store; one symbol",
                   mark_data="your own mark-price candles (timestamp,open,high,low,close), with --data; one symbol",
                   market_rules="JSON/TOML file of the market rules (one market, or [markets.\"SYM\"] tables per "
                                "symbol)")
    r = parser.add_argument_group("running")
    add_flags(r, "--workers", "--scheduler")
    r.add_argument("--out", help="output folder (default runs/<UTC time>-compare); must be empty unless --force")
    r.add_argument("--force", action="store_true", help="replace a non-empty --out folder once the comparison is done")
    r.add_argument("--no-cell-reports", dest="cell_reports", action="store_false", default=None,
                   help="skip each cell's own report folder (faster)")
    r.add_argument("--confidence", type=float, help="for intervals and the verdict (default 0.95)")
    r.add_argument("--bootstrap", type=int, help="bootstrap resamples per cell (default 1000)")
    add_flags(r, "--seed", seed="seed for models and the bootstrap (default 42)")
    r.add_argument("--fraction", type=float, help="share of equity per position, 0-1 (default 0.99)")
    r.add_argument("--name", help="name used in the default output folder")
    add_flags(r, "--cache-dir", "--risk-free", "--ledger")
    add_broker_flags(parser)


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
