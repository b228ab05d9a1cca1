"""``lstmbt paper``: run a strategy on live closed candles with simulated fills; ``status`` and ``reconcile``."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

EXAMPLES = """examples:
  lstmbt paper --config backtests/configs/btc_lstm_1h.toml --exchange bybit      # simulated fills on live candles
  lstmbt paper --strategy sma_cross --symbol ETH/USDT:USDT --timeframe 1m --exchange binanceusdm --out runs/eth-paper
  lstmbt paper --config my.toml --exchange binanceusdm --feed ws # candles from ccxt's websocket kline stream
  lstmbt paper --out runs/eth-paper --config same.toml        # resume a stopped run (same folder, same config)
  lstmbt paper status runs/eth-paper
  lstmbt paper reconcile runs/eth-paper                         # paper vs a backtest of exactly the same bars
  LSTMBT_BYBIT_API_KEY=... LSTMBT_BYBIT_SECRET=... lstmbt paper --config my.toml --exchange bybit --demo"""


def add_paper_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``lstmbt paper`` (the strategy, data and broker flags are added by the CLI)."""
    p.add_argument("action", nargs="*", metavar="[status|reconcile RUN_DIR]",
                   help="nothing: start or resume a paper run; 'status RUN_DIR' or 'reconcile RUN_DIR'")
    p.add_argument("--exchange-config", help="TOML/JSON file of ccxt constructor options (urls, timeout, proxies...)")
    p.add_argument("--feed", choices=("rest", "ws"), default="rest",
                   help="where new closed candles come from: 'rest' polls ccxt's REST API (default: works everywhere, "
                        "one request per poll); 'ws' listens to ccxt's websocket kline stream (ccxt.pro) and still "
                        "uses REST for the history, funding, mark prices and any bar the stream missed")
    p.add_argument("--poll", type=float, help="seconds between polls while no candle has closed (default: bar/10, "
                                              "at most 5); with --feed ws, between checks of the exchange clock")
    p.add_argument("--max-bars", type=int, help="stop after this many new bars (default: run until Ctrl-C)")
    p.add_argument("--report-every", type=int, default=1, help="refresh the report every N bars (default 1)")
    p.add_argument("--demo", action="store_true",
                   help="also send each decision as a market order to the exchange's DEMO account (keys from "
                        "LSTMBT_<EXCHANGE>_API_KEY/_SECRET); never a real-money account")


def paper_command(args: argparse.Namespace, config) -> int:
    """Dispatch ``lstmbt paper``; ``config`` is the BacktestConfig built from ``--config`` and the flags."""
    words = list(args.action or [])
    if words and words[0] in ("status", "reconcile"):
        if len(words) != 2:
            raise ValueError(f"usage: lstmbt paper {words[0]} RUN_DIR")
        return (paper_status if words[0] == "status" else paper_reconcile)(Path(words[1]))
    if words:
        raise ValueError(f"unknown paper action {words[0]!r}; use 'status RUN_DIR', 'reconcile RUN_DIR' or none")
    return paper_run(args, config)


def paper_run(args: argparse.Namespace, config) -> int:
    from backtests.engine import strategy_class
    from backtests.paper.runner import PaperRunner
    from data_feeds.exchange import make_exchange, read_exchange_config

    if args.max_bars is not None and args.max_bars < 1:
        raise ValueError(f"--max-bars must be at least 1, got {args.max_bars}")
    if args.poll is not None and not 0 < args.poll <= 3600:
        raise ValueError(f"--poll must be in (0, 3600] seconds, got {args.poll}")
    strategy_class(config.strategy)  # an unknown strategy fails before any request
    options = read_exchange_config(args.exchange_config) if args.exchange_config else None
    exchange = make_exchange(config.data.exchange, options)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = Path(args.out) if args.out else Path(config.out_dir) / f"{stamp}-{config.name}-paper"
    demo = None
    if args.demo:
        from backtests.paper.orders import DemoAccount

        demo = DemoAccount(make_exchange(config.data.exchange, options), config.data.symbol)
        demo.set_leverage(config.broker.leverage)
    stream = None
    if args.feed == "ws":
        from backtests.paper.stream import make_stream_exchange

        stream = make_stream_exchange(config.data.exchange, options)
    runner = PaperRunner(config, folder, exchange, progress=lambda line: print(line, flush=True),
                         poll_seconds=args.poll, report_every=args.report_every, demo=demo, stream=stream)
    state = runner.run(max_bars=args.max_bars)
    print(f"report: {folder / 'report' / 'report.html'}" if (folder / "report").exists() else f"run folder: {folder}")
    print(f"paper: {state.bars} bar(s), position {state.position:+.6g}, equity {state.equity:,.2f}, "
          f"{state.missed} missed decision(s)")
    return 0


def paper_status(folder: Path) -> int:
    from backtests.paper.runner import PaperState

    state = PaperState.load(folder)
    rows = [("run", str(folder)), ("status", state.status), ("market", f"{state.exchange} {state.symbol} "
            f"{state.timeframe}"), ("strategy", str(state.config.get("strategy"))), ("feed", state.feed), ("trading since", state.start),
            ("last closed bar", state.last_bar or "none yet"), ("paper bars", f"{state.bars:,}"),
            ("position", f"{state.position:+.6g}"), ("equity", f"{state.equity:,.2f}"),
            ("next open fills target", f"{state.pending_target:+g}"), ("missed decisions", str(state.missed)),
            ("ignored candles", str(state.ignored)), ("disconnects", str(state.disconnects)),
            ("models", ", ".join(m.get("weights_sha256", "")[:12] for m in state.models) or "none"),
            ("updated", state.updated)]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def paper_reconcile(folder: Path) -> int:
    from backtests.paper.reconcile import reconcile
    from data_feeds.files import atomic_write

    result = reconcile(folder)
    atomic_write(folder / "reconcile.csv", result.table.to_csv())
    for line in result.summary():
        print(line)
    print(f"table: {folder / 'reconcile.csv'}")
    return 0 if not (result.differences["cause"] == "unexplained").any() else 1
