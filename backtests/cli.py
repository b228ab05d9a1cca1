"""The ``lstmbt`` command: a thin layer over the public functions.

Every user error (bad symbol, span, file, config, checkpoint) is a ValueError raised below; ``main``
prints it as one line on stderr and exits with status 2. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backtests.flags import add_broker_flags, add_data_flags, add_flags

EXAMPLES = {
    "backtest": """examples:
  lstmbt backtest --config backtests/configs/btc_lstm_1h.toml
  lstmbt backtest --strategy sma_cross --symbol ETH/USDT:USDT --timeframe 4h --start 2023-01-01 --end 2023-12-31
  lstmbt backtest --strategy buy_hold --data my_candles.csv --timeframe 1h --start 2024-01-01 --end 2024-03-31
  lstmbt backtest --strategy my_rsi.py:RsiLongShort --baselines buy_hold --start 2024-01-01 --end 2024-03-31
  lstmbt backtest --strategy lstm_portfolio --symbols BTC/USDT:USDT,ETH/USDT:USDT --timeframe 1h --margin isolated \
      --leverage 3 --start 2025-01-01 --end 2025-06-30
  lstmbt backtest --strategy my_pairs.py:PairTrade --symbols BTC/USDT:USDT,ETH/USDT:USDT --margin cross""",
    "download": """examples:
  lstmbt download --exchange binanceusdm --symbol BTC/USDT:USDT --timeframe 1h --start 2024-01-01 --end 2024-06-30
  lstmbt download --exchange bybit --symbol ETH/USDT:USDT --timeframe 15m --start 2025-01-01 --end 2025-02-01""",
    "check-lookahead": """examples:
  lstmbt check-lookahead --strategy sma_cross --start 2024-01-01 --end 2024-01-31
  lstmbt check-lookahead --config backtests/configs/btc_lstm_1h.toml --start 2025-06-01 --end 2025-06-07 --bars 20""",
    "report": """examples:
  lstmbt report runs/20260101-120000-btc-lstm-1h            # re-render from the saved run data
  lstmbt report runs/20260101-120000-btc-lstm-1h --log      # equity on a log scale
  lstmbt report runs/20260101-120000-btc-lstm-1h --rerun --out runs/check   # rerun from the manifest""",
    "train": """examples:
  lstmbt train --symbol BTC/USDT:USDT --timeframe 1h --start 2024-01-01 --end 2025-12-31 --test-bars 2160
  lstmbt train --config backtests/configs/btc_lstm_1h.toml --device auto""",
    "data": """examples:
  lstmbt data list
  lstmbt data list --data-dir ./my-store""",
}


def _progress(line: str) -> None:
    print(line, flush=True)


def _add_portfolio_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("portfolio (several symbols in one account)")
    g.add_argument("--symbols", help="comma-separated ccxt symbols traded together, e.g. BTC/USDT:USDT,ETH/USDT:USDT "
                                     "(with a portfolio strategy: lstm_portfolio, buy_hold, flat, or your own)")
    g.add_argument("--margin", help="cross (one wallet for every position) or isolated (default)")
    g.add_argument("--weights", help="each symbol's share of equity x leverage, SYMBOL=W,... or W,... in --symbols "
                                     "order; normalised (default: equal)")


def portfolio_overrides(args: argparse.Namespace) -> dict:
    """The BacktestConfig fields set by ``--symbols``, ``--margin`` and ``--weights`` (ValueError: one line)."""
    out = {}
    if getattr(args, "symbols", None) is not None:
        out["symbols"] = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
        if not out["symbols"]:
            raise ValueError("--symbols is empty; give SYMBOL,SYMBOL, e.g. BTC/USDT:USDT,ETH/USDT:USDT")
    if getattr(args, "margin", None) is not None:
        out["margin"] = args.margin
    if getattr(args, "weights", None) is not None:
        items = [w.strip() for w in args.weights.split(",") if w.strip()]
        named = [w.rpartition("=") for w in items]
        def number(text: str):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"--weights: {text!r} is not a number; give SYMBOL=W,... or W,... (positive "
                                 f"numbers)") from None
        if items and all(sep for _, sep, _ in named):
            out["weights"] = {sym.strip(): number(w) for sym, _, w in named}
        else:
            out["weights"] = [number(w) for w in items]
    return out


def broker_overrides(args: argparse.Namespace) -> dict:
    """The BrokerConfig fields set by the broker flags given on the command line (see :func:`backtests.flags.add_broker_flags`)."""
    broker = {k: getattr(args, k) for k in ("cash", "leverage", "taker_fee", "maker_fee", "slippage_bps",
                                            "slippage_coef", "liquidation_fee", "liquidation_model")
              if getattr(args, k, None) is not None}
    if "taker_fee" in broker or "maker_fee" in broker:
        broker["fee_source"] = "config"      # fees given on the command line are the user's, even at the defaults
    if getattr(args, "slippage_model", None) is not None:
        broker["slippage"] = args.slippage_model
    if getattr(args, "no_funding", False):
        broker["funding"] = False
    if getattr(args, "no_liquidation", False):
        broker["liquidation"] = False
    return broker


def build_config(args: argparse.Namespace):
    """Config from ``--config`` (if any) with every flag given on the command line applied on top."""
    from backtests.config import BacktestConfig, load_config, main_job_config

    if getattr(args, "config", None):
        config = load_config(args.config)
    elif getattr(args, "func", None) is cmd_backtest and getattr(args, "strategy", None) is None:
        config = main_job_config()      # plain `lstmbt backtest` runs the main job, as README command 1 does
    else:
        config = BacktestConfig()
    data = {k: getattr(args, k) for k in ("exchange", "symbol", "timeframe", "start", "end", "path", "funding_path",
                                          "store_dir", "market_rules", "mark_path")
            if getattr(args, k, None) is not None}
    broker = broker_overrides(args)
    top = {k: getattr(args, k) for k in ("strategy", "name", "seed", "fraction", "risk_free")
           if getattr(args, k, None) is not None}
    if getattr(args, "baselines", None) is not None:
        top["baselines"] = tuple(b for b in args.baselines.split(",") if b)
    if getattr(args, "cache_dir", None):
        top["cache_dir"] = args.cache_dir
    if getattr(args, "model_kind", None):
        top["model"] = {**config.model, "kind": args.model_kind}
    top.update(portfolio_overrides(args))
    try:
        return config.replace(data=data, broker=broker, **top)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from exc


def cmd_backtest(args: argparse.Namespace) -> int:
    from backtests.session import run_and_report
    from reports import format_metrics_table
    from strategies.registry import get_strategy

    from backtests.session import check_out_folder, default_run_dir

    config = build_config(args)
    if config.symbols:
        from backtests.portfolio.engine import portfolio_backtest_command

        return portfolio_backtest_command(config, args, _progress)
    for name in (config.strategy, *config.baselines):
        get_strategy(name)
    from backtests.portfolio.engine import refuse_portfolio_without_symbols

    refuse_portfolio_without_symbols(config.strategy)
    check_out_folder(args.out or default_run_dir(config), force=args.force)
    _progress(f"lstmbt backtest: {config.strategy} vs {', '.join(config.baselines) or 'no baselines'} on "
              f"{config.data.symbol} {config.data.timeframe} {config.data.start} .. {config.data.end}")
    folder, main, baselines = run_and_report(config, args.out, progress=_progress,
                                             plot_backtrader=args.plot_backtrader, ledger=args.ledger, force=args.force)
    from reports.sections import verdict_text

    print()
    print(verdict_text(folder / "metrics.json", main))
    print()
    print(format_metrics_table([main, *baselines]))
    print(f"\nreport: {folder / 'report.html'}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from data_feeds.commands import download_command

    kinds = [k for k in args.kinds.split(",") if k]
    return download_command(args.exchange, args.symbol, args.timeframe, args.start, args.end, data_dir=args.store_dir,
                            exchange_config=args.exchange_config, kinds=kinds)


def cmd_compare(args: argparse.Namespace) -> int:
    from backtests.compare import compare_command

    return compare_command(args)


def cmd_report(args: argparse.Namespace) -> int:
    from backtests.persist import report_command

    return report_command(args)


def cmd_train(args: argparse.Namespace) -> int:
    from backtests.training import train_command

    return train_command(args)


def cmd_check_lookahead(args: argparse.Namespace) -> int:
    from backtests.lookahead import lookahead_command

    return lookahead_command(args)


def cmd_optimize(args: argparse.Namespace) -> int:
    from backtests.optimize.command import optimize_command

    return optimize_command(args)


def cmd_paper(args: argparse.Namespace) -> int:
    from backtests.paper.command import paper_command

    return paper_command(args, build_config(args) if not args.action else None)


def cmd_data(args: argparse.Namespace) -> int:
    from data_feeds.commands import data_list

    print(data_list(args.store_dir))
    return 0


def package_version() -> str:
    """The installed lstmbt version (``pyproject.toml``'s), or a note when the package is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lstmbt")
    except PackageNotFoundError:
        return "(not installed; run pip install -e .)"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmbt", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Backtest LSTM-driven strategies on crypto perpetual futures.",
        epilog="examples:\n  lstmbt backtest --config backtests/configs/btc_lstm_1h.toml\n"
               "  lstmbt backtest --strategy sma_cross --start 2024-01-01 --end 2024-06-30\n"
               "  lstmbt backtest --strategy my_rsi.py:RsiLongShort --start 2024-01-01 --end 2024-06-30\n"
               "  lstmbt download --exchange binanceusdm --symbol BTC/USDT:USDT --timeframe 1h "
               "--start 2024-01-01 --end 2024-06-30\n  lstmbt data list\n"
               "  lstmbt train --symbol BTC/USDT:USDT --timeframe 1h --start 2024-01-01 --end 2025-12-31\n"
               "  lstmbt check-lookahead --strategy sma_cross --start 2024-01-01 --end 2024-01-31\n\n"
               "run 'lstmbt COMMAND --help' for a command's options")
    parser.add_argument("--version", action="version", version=f"lstmbt {package_version()}",
                        help="print the installed lstmbt version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, helptext: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=helptext, epilog=EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("backtest", "run a strategy against baselines and write a report folder", cmd_backtest)
    p.add_argument("--config", help="TOML config file (flags below override it; without --config and --strategy: "
                                    "the main job, backtests/configs/btc_lstm_1h.toml)")
    p.add_argument("--strategy", help="lstm, buy_hold, sma_cross, flat, or your own: path/to/file.py:Class or "
                                      "pkg.module:Class")
    p.add_argument("--baselines", help="comma-separated strategies to compare with, e.g. buy_hold,sma_cross ('' for none)")
    p.add_argument("--name", help="run name used in the output folder")
    p.add_argument("--fraction", type=float, help="share of equity per position, 0-1 (default 0.99)")
    p.add_argument("--out", help="report folder (default runs/<UTC time>-<name>); must be empty unless --force")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder once the new run is complete")
    p.add_argument("--plot-backtrader", action="store_true", help="also save Backtrader's own plot as backtrader.png")
    p.add_argument("--model-kind", help="the model strategy's [model] kind: lstm, gru, lstm_stateful, gru_stateful, "
                                        "transformer, logreg, gbm or path/to/my_model.py:MyModel")
    add_flags(p, "--seed", "--cache-dir", "--risk-free", "--ledger")
    add_data_flags(p)
    add_broker_flags(p)
    _add_portfolio_flags(p)

    from backtests.compare import add_compare_arguments

    p = add("compare", "compare strategies across date ranges and symbols, locally or on a Dask cluster", cmd_compare)
    add_compare_arguments(p)

    from backtests.persist import add_report_arguments

    p = add("report", "re-render a run folder's report from its saved data, or --rerun it from its manifest",
            cmd_report)
    add_report_arguments(p)

    from backtests.training import add_train_arguments

    p = add("train", "train walk-forward LSTM models over a span and print validation metrics per fold", cmd_train)
    add_train_arguments(p)

    from backtests.lookahead import add_lookahead_arguments

    p = add("check-lookahead", "rerun a strategy with the data cut after sampled bars; exit 1 if any decision changes",
            cmd_check_lookahead)
    add_lookahead_arguments(p)
    add_data_flags(p)
    _add_portfolio_flags(p)

    from backtests.optimize.command import add_optimize_arguments

    p = add("optimize", "walk-forward hyperparameter search (Optuna) with a held-back final span, PBO, CPCV and "
                        "the deflated Sharpe", cmd_optimize)
    add_optimize_arguments(p)

    from backtests.paper.command import EXAMPLES as PAPER_EXAMPLES, add_paper_arguments

    EXAMPLES["paper"] = PAPER_EXAMPLES
    p = add("paper", "paper-trade a strategy on live closed candles (simulated fills); status; reconcile with a backtest",
            cmd_paper)
    add_paper_arguments(p)
    p.add_argument("--config", help="TOML config file (flags below override it)")
    p.add_argument("--strategy", help="strategy to run, as in backtest")
    p.add_argument("--name", help="run name used in the output folder")
    p.add_argument("--out", help="run folder (default runs/<UTC time>-<name>-paper); an existing one is resumed")
    add_flags(p, "--seed", "--cache-dir", "--exchange", "--symbol", "--timeframe")
    add_broker_flags(p)

    p = add("download", "fetch candles, funding and mark prices through ccxt into the local store", cmd_download)
    _add_download_flags(p)

    p = add("data", "show what the local store holds", cmd_data)
    p.add_argument("action", choices=["list"])
    p.add_argument("--data-dir", dest="store_dir", help="local data store folder")
    return parser


def _add_download_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", default="binanceusdm", help="ccxt exchange id: binanceusdm or bybit")
    p.add_argument("--symbol", required=True, help="ccxt unified symbol, e.g. BTC/USDT:USDT")
    p.add_argument("--timeframe", required=True, help="bar size, e.g. 1h")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", required=True, help="last day, YYYY-MM-DD, inclusive (UTC)")
    p.add_argument("--kinds", default="candles,funding,mark", help="what to fetch (default candles,funding,mark)")
    p.add_argument("--data-dir", dest="store_dir", help="local data store folder")
    p.add_argument("--exchange-config", help="TOML/JSON file of ccxt constructor options (urls, timeout, proxies...)")


class _PipeSafeStdout:
    """sys.stdout that survives a closed pipe (``lstmbt backtest ... | head -2``): once the reader is gone, further
    output is dropped and the run goes on to write its folder, instead of dying of BrokenPipeError."""

    def __init__(self, stream):
        self._stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        try:   # point the real descriptor at /dev/null so the interpreter's final flush stays quiet too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _WarningLines(logging.Handler):
    """Warnings of lstmbt's loggers (``lstmbt.*``: a corrupt cache entry recomputed...) as ``warning: ...`` lines on
    the current stdout, with the run's other progress lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"warning: {record.getMessage()}", file=sys.stdout, flush=True)
        except Exception:   # never let a warning line break a run
            pass


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    saved = sys.stdout
    if not isinstance(sys.stdout, _PipeSafeStdout):
        sys.stdout = _PipeSafeStdout(sys.stdout)
    logger = logging.getLogger("lstmbt")
    handler = _WarningLines(logging.WARNING)
    logger.addHandler(handler)
    try:
        return _run(args)
    finally:
        logger.removeHandler(handler)
        sys.stdout = saved


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("lstmbt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _user_code_error(exc):
            return 2
        if not isinstance(exc, USER_ERRORS):
            raise                       # our bug: keep the whole traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        print(f"lstmbt: error: {message}", file=sys.stderr)
        return 2


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
"""Exceptions that are bad input: one line on stderr and exit status 2."""


def _user_code_error(exc: BaseException) -> bool:
    """When ``exc`` was raised inside a user's strategy file (or is not one of our one-line errors and passed
    through one), print the user's own frames and a one-line summary, and return True."""
    import traceback

    from strategies.loader import user_frames

    frames = user_frames(exc.__traceback__)
    every = traceback.extract_tb(exc.__traceback__)
    raised_there = bool(frames) and every[-1] == frames[-1]
    if not frames or (isinstance(exc, USER_ERRORS) and not raised_there):
        return False
    print("Traceback (your strategy's frames, most recent call last):", file=sys.stderr)
    print("".join(traceback.format_list(frames)).rstrip(), file=sys.stderr)
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    print(what, file=sys.stderr)
    last = frames[-1]
    print(f"lstmbt: error: your strategy raised {what} ({last.filename}, line {last.lineno}, in {last.name})",
          file=sys.stderr)
    return True


if __name__ == "__main__":
    sys.exit(main())
