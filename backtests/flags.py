"""The command-line flags several ``lstmbt`` commands share, each defined once.

:data:`SHARED` maps a flag to its argparse keywords; :func:`add_flags` adds the ones a command takes to a parser or
an argument group, with the command's own help text where the flag's meaning narrows there (``compare``'s
``--start`` is the span that ``--rolling`` cuts)::

    add_flags(group, "--seed", "--cache-dir", seed="seed of the sampler and the models (default 42)")

:func:`add_data_flags` and :func:`add_broker_flags` add the two groups that ``backtest``, ``train``,
``check-lookahead``, ``compare`` and ``paper`` read the same way.
"""

from __future__ import annotations

import argparse

from backtests.slippage import SLIPPAGE_MODELS

SHARED: dict[str, dict] = {
    # data
    "--exchange": {"help": "ccxt exchange id (default binanceusdm)"},
    "--symbol": {"help": "ccxt unified symbol, e.g. BTC/USDT:USDT"},
    "--timeframe": {"help": "bar size: 1m 5m 15m 1h 4h 1d ..."},
    "--start": {"help": "first day, YYYY-MM-DD (UTC)"},
    "--end": {"help": "last day, YYYY-MM-DD, inclusive (UTC)"},
    "--data": {"dest": "path", "help": "your own candles file (CSV or Parquet: timestamp,open,high,low,close,volume)"},
    "--funding-data": {"dest": "funding_path", "help": "your own funding file (timestamp,funding_rate)"},
    "--mark-data": {"dest": "mark_path",
                    "help": "your own mark-price candles (timestamp,open,high,low,close), the timeframe or finer"},
    "--market-rules": {"dest": "market_rules",
                       "help": "JSON/TOML file of the market's rules: qty_step, min_qty, min_notional, leverage "
                               "tiers... (default: stored with the data by `lstmbt download`, or the shipped "
                               "snapshot)"},
    "--data-dir": {"dest": "store_dir", "help": "local data store folder (default: $LSTMBT_DATA_DIR or user cache)"},
    # runs
    "--seed": {"type": int, "help": "random seed (default 42)"},
    "--cache-dir": {"help": "folder for trained models (default: user cache)"},
    "--ledger": {"help": "trial ledger file (default $LSTMBT_LEDGER or ledger.jsonl in the user cache)"},
    "--workers": {"type": int, "help": "local worker processes (default: one per core; 0 = in this process)"},
    "--scheduler": {"help": "Dask scheduler address, e.g. tcp://scheduler-host:8786 (instead of local workers)"},
    "--risk-free": {"type": float, "dest": "risk_free",
                    "help": "annual risk-free rate for Sharpe, Sortino and the verdict, 0.04 = 4%% (default 0)"},
}

DATA_FLAGS = ("--exchange", "--symbol", "--timeframe", "--start", "--end", "--data", "--funding-data", "--mark-data",
              "--market-rules", "--data-dir")


def add_flags(target: argparse.ArgumentParser | argparse._ArgumentGroup, *flags: str, **helps: str) -> None:
    """Add ``flags`` (keys of :data:`SHARED`) to ``target``; ``helps`` replaces the help of a flag by its name
    with underscores (``cache_dir="..."``)."""
    unknown = set(helps) - {f.lstrip("-").replace("-", "_") for f in flags}
    if unknown:
        raise ValueError(f"help given for flags not added: {', '.join(sorted(unknown))}")
    for flag in flags:
        keywords = dict(SHARED[flag])
        keywords["help"] = helps.get(flag.lstrip("-").replace("-", "_"), keywords["help"])
        target.add_argument(flag, **keywords)


def add_data_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = (), **helps: str) -> None:
    """The "data" group: where the candles come from (the store or your own files) and which span; ``skip``
    leaves flags out (``compare`` takes ``--symbols`` instead of ``--symbol``)."""
    add_flags(parser.add_argument_group("data"), *(f for f in DATA_FLAGS if f not in skip), **helps)


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """The "broker" group: cash, leverage, fees, slippage, liquidation and funding (read by ``broker_overrides``)."""
    g = parser.add_argument_group("broker")
    g.add_argument("--cash", type=float, help="starting cash in USDT (default 10000)")
    g.add_argument("--leverage", type=float, help="1 to 125 (default 1)")
    g.add_argument("--taker-fee", type=float, help="fraction of notional for market orders, 0.0005 = 0.05%% (default: "
                                                   "the market's stored fee, else 0.0005)")
    g.add_argument("--maker-fee", type=float, help="fraction of notional for resting limit orders (default: the "
                                                   "market's stored fee, else 0.0002)")
    g.add_argument("--slippage", dest="slippage_model", choices=SLIPPAGE_MODELS,
                   help="slippage model: none, fixed (--slippage-bps), range or volume (default fixed)")
    g.add_argument("--slippage-bps", type=float, help="basis points against each market fill (default 1)")
    g.add_argument("--slippage-coef", type=float, help="coefficient of the range/volume slippage models (default 0.1)")
    g.add_argument("--liquidation-fee", type=float,
                   help="fraction of notional at liquidation (default: the market's rate, else 0.0125)")
    g.add_argument("--liquidation-model", choices=("binance", "flat"),
                   help="binance (default): Binance's liquidation protocol; flat: fee at the liquidation price")
    g.add_argument("--no-liquidation", action="store_true", help="never liquidate (to study a strategy's raw PnL)")
    g.add_argument("--no-funding", action="store_true", help="ignore funding payments")


__all__ = ["DATA_FLAGS", "SHARED", "add_broker_flags", "add_data_flags", "add_flags"]
