"""A strategy and its baselines on the same data, then one report folder: what ``lstmbt backtest`` does."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from backtests.config import BacktestConfig
from backtests.engine import load_run_data, run_backtest
from backtests.result import BacktestResult
from strategies.registry import get_strategy

Progress = Callable[[str], None]


def run_with_baselines(config: BacktestConfig, progress: Progress | None = None, *,
                       plot_path: str | Path | None = None) -> tuple[BacktestResult, list[BacktestResult]]:
    """Run ``config.strategy`` and each of ``config.baselines`` on one load of the data, with the same broker.

    ``plot_path``: also save Backtrader's own plot of the strategy's run there (PNG).
    """
    names = [config.strategy] + [b for b in config.baselines if b != config.strategy]
    history = max(get_strategy(n).history_bars(config.replace(strategy=n, params={})) for n in names)
    market, _, _ = load_run_data(config, history)
    if progress:
        progress(f"data: {config.data.symbol} {config.data.timeframe} {market.candles.index[0]:%Y-%m-%d} .. "
                 f"{market.candles.index[-1]:%Y-%m-%d %H:%M} ({len(market.candles):,} bars incl. history, "
                 f"{len(market.funding):,} funding settlements) from {market.source}")
        if len(market.gaps):
            progress(f"data: {len(market.gaps)} gap(s), {int(market.gaps['missing'].sum())} missing bar(s); "
                     f"first after {market.gaps['after'].iloc[0]}")
    results = [run_backtest(config, strategy=name, progress=progress, market=market,
                            plot_path=plot_path if i == 0 else None) for i, name in enumerate(names)]
    if progress:
        seen = set()
        for result in results:
            for notice in result.data_span.get("notices", []):
                line = notice if notice.startswith("NO MARKET RULES") else f"{result.name}: {notice}"
                if line not in seen:
                    seen.add(line)
                    progress(f"WARNING: {line}")
            if len(result.rejected):
                first = result.rejected.iloc[0]
                progress(f"warning: {result.name}: {len(result.rejected)} order(s) refused, first at {first.time} "
                         f"({first.reason}); see rejected.csv")
    return results[0], results[1:]


def default_run_dir(config: BacktestConfig) -> Path:
    """``<out_dir>/<UTC timestamp>-<name>``, e.g. ``runs/20260101-120000-btc-lstm-1h``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{stamp}-{config.name}"


def run_and_report(config: BacktestConfig, out: str | Path | None = None, progress: Progress | None = None, *,
                   plot_backtrader: bool = False, argv: Sequence[str] | None = None
                   ) -> tuple[Path, BacktestResult, list[BacktestResult]]:
    """Run the strategy and its baselines, then write the run folder: the saved data (``data/``), the
    reproducibility manifest and the report. Returns (folder, result, baselines); ``out`` defaults to
    ``runs/<UTC time>-<name>``. ``argv`` is the command line the manifest records (default ``sys.argv``)."""
    from backtests.manifest import build_manifest
    from backtests.persist import write_run_folder

    started = time.perf_counter()
    folder = Path(out) if out else default_run_dir(config)
    main, baselines = run_with_baselines(config, progress,
                                         plot_path=folder / "backtrader.png" if plot_backtrader else None)
    write_run_folder(folder, main, baselines, build_manifest(config, main, baselines, argv))
    if progress:
        progress(f"report: {folder} ({time.perf_counter() - started:.1f} s in all)")
    return folder, main, baselines
