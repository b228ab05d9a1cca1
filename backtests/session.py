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


REFERENCE = "buy_hold"


def _needs_reference(config: BacktestConfig, names: list[str]) -> bool:
    """Whether the one buy-and-hold of the report (a 1x ``buy_hold`` run, fees and funding paid) is missing from
    ``names``: it is there when ``buy_hold`` runs and the broker's leverage is 1."""
    return REFERENCE not in names or config.broker.leverage != 1.0


def run_with_baselines(config: BacktestConfig, progress: Progress | None = None, *,
                       plot_path: str | Path | None = None) -> tuple[BacktestResult, list[BacktestResult]]:
    """Run ``config.strategy`` and each of ``config.baselines`` on one load of the data, with the same broker,
    plus the report's buy-and-hold (``buy_hold`` at 1x, the last baseline) when they do not include it (named
    ``buy_hold 1x`` when a leveraged ``buy_hold`` runs too).

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
    if plot_path and progress:
        progress(f"backtrader plot: {plot_path}")
    if _needs_reference(config, names):
        reference = run_backtest(config.replace(broker={"leverage": 1.0}), strategy=REFERENCE, progress=progress,
                                 market=market)
        if REFERENCE in names:
            reference.name = f"{REFERENCE} 1x"
        results.append(reference)
    if progress:
        for result in results:
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
                   plot_backtrader: bool = False, argv: Sequence[str] | None = None,
                   ledger: str | Path | None = None) -> tuple[Path, BacktestResult, list[BacktestResult]]:
    """Run the strategy and its baselines, then write the run folder: the saved data (``data/``), the
    reproducibility manifest and the report. Returns (folder, result, baselines); ``out`` defaults to
    ``runs/<UTC time>-<name>``. ``argv`` is the command line the manifest records (default ``sys.argv``).
    Every run is recorded in the trial ledger (``ledger``, default ``$LSTMBT_LEDGER`` or the user cache; see
    :mod:`backtests.ledger`), and the strategy's result carries ``extras["trials"]``: the configurations tried on
    its span so far, for the report's deflated Sharpe ratio."""
    from backtests import ledger as trial_ledger
    from backtests.manifest import build_manifest
    from backtests.persist import write_run_folder

    started = time.perf_counter()
    folder = Path(out) if out else default_run_dir(config)
    main, baselines = run_with_baselines(config, progress,
                                         plot_path=folder / "backtrader.png" if plot_backtrader else None)
    path = trial_ledger.record_results("backtest", [main, *baselines], ledger)
    trials = trial_ledger.trials_for(main, path)
    main.extras["trials"] = {"count": trials.count, "sharpes": list(trials.sharpes), "ledger": str(path)}
    write_run_folder(folder, main, baselines, build_manifest(config, main, baselines, argv))
    if progress:
        progress(f"report: {folder} ({time.perf_counter() - started:.1f} s in all)")
    return folder, main, baselines
