"""A strategy and its baselines on the same data, then one report folder: what ``lstmbt backtest`` does."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from backtests.compare.executors import process_alive
from backtests.config import BacktestConfig
from backtests.engine import load_run_data, run_backtest
from backtests.result import BacktestResult
from backtests.validation import config_warnings, market_warnings
from strategies.registry import get_strategy

Progress = Callable[[str], None]


REFERENCE = "buy_hold"


def _needs_reference(config: BacktestConfig, names: list[str]) -> bool:
    """Whether the one buy-and-hold of the report (a 1x ``buy_hold`` run, fees and funding paid) is missing from
    ``names``: it is there when ``buy_hold`` runs and the broker's leverage is 1."""
    return REFERENCE not in names or config.broker.leverage != 1.0


def reference_run(config: BacktestConfig, names: Sequence[str], market=None,
                  progress: Progress | None = None) -> BacktestResult | None:
    """The report's buy-and-hold (``buy_hold`` at 1x) when ``names`` do not include it, else None; named
    ``buy_hold 1x`` when a leveraged ``buy_hold`` runs too."""
    if not _needs_reference(config, list(names)):
        return None
    reference = run_backtest(config.replace(broker={"leverage": 1.0}), strategy=REFERENCE, progress=progress,
                             market=market)
    if REFERENCE in names:
        reference.name = f"{REFERENCE} 1x"
    return reference


def run_with_baselines(config: BacktestConfig, progress: Progress | None = None, *,
                       plot_path: str | Path | None = None, market=None,
                       label: str | None = None) -> tuple[BacktestResult, list[BacktestResult]]:
    """Run ``config.strategy`` and each of ``config.baselines`` on one load of the data, with the same broker,
    plus the report's buy-and-hold (``buy_hold`` at 1x, the last baseline) when they do not include it (named
    ``buy_hold 1x`` when a leveraged ``buy_hold`` runs too).

    ``plot_path``: also save Backtrader's own plot of the strategy's run there (PNG). ``market``: run on this
    :class:`~data_feeds.MarketData` instead of loading the config's data (a rerun of a DataFrame run).
    ``label``: the strategy's name in the results (default: as the config names it).
    """
    names = [config.strategy] + [b for b in config.baselines if b != config.strategy]
    if market is None:
        history = max(get_strategy(n).history_bars(config.replace(strategy=n, params={})) for n in names)
        market, _, _ = load_run_data(config, history)
    if progress:
        progress(f"data: {config.data.symbol} {config.data.timeframe} {market.candles.index[0]:%Y-%m-%d} .. "
                 f"{market.candles.index[-1]:%Y-%m-%d %H:%M} ({len(market.candles):,} bars incl. history, "
                 f"{len(market.funding):,} funding settlements) from {market.source}")
        if len(market.gaps):
            progress(f"data: {len(market.gaps)} gap(s), {int(market.gaps['missing'].sum())} missing bar(s); "
                     f"first after {market.gaps['after'].iloc[0]}")
    for line in market_warnings(market.candles, market.funding):
        _warn(progress, line)
    results = [run_backtest(config, strategy=name, progress=progress, market=market,
                            plot_path=plot_path if i == 0 else None) for i, name in enumerate(names)]
    if label:
        results[0].name = results[0].strategy = label
    if plot_path and progress:
        progress(f"backtrader plot: {plot_path}")
    reference = reference_run(config, names, market, progress)
    if reference is not None:
        results.append(reference)
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


def slug(text: str, limit: int = 40) -> str:
    """A name made safe as one path component: ``"/../../x"`` -> ``"x"``, ``"sma <b>"`` -> ``"sma_b"``; letters,
    digits, ``.``, ``_`` and ``-`` only, at most ``limit`` characters, never empty, never ``.`` or ``..``."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:limit].strip("._-")
    return out or "run"


def default_run_dir(config: BacktestConfig) -> Path:
    """``<out_dir>/<UTC timestamp>-<name>``, e.g. ``runs/20260101-120000-btc-lstm-1h`` (the name slugged, so it
    never leaves ``out_dir``)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{stamp}-{slug(config.name)}"


class OutputFolderError(ValueError):
    """An output folder that cannot be used as asked (not empty without ``--force``, a file)."""


def check_out_folder(folder: str | Path, *, force: bool = False) -> Path:
    """``folder`` if a run may be written there: absent or empty, or anything with ``force`` (then it is replaced
    as a whole once the new run is complete). Checked before any work starts."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"output folder {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputFolderError(f"output folder {path} is not empty; choose another --out or pass --force to "
                                f"replace it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFolderError(f"cannot create {path}: {parent} is a file")
            break
    return path


@contextmanager
def staged_folder(folder: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``folder`` to build a run in; on success it takes ``folder``'s name (an old
    ``folder`` is replaced only with ``force``), on failure it is removed: a folder at the final name is always
    complete. Temporary folders of runs that died (their process is gone) are cleaned on the way."""
    final = check_out_folder(folder, force=force)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:80]}.{os.getpid()}.", suffix=STAGING, dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            check_out_folder(final, force=force)      # someone filled it meanwhile
            old = final.parent / f"{tmp.name}-old"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


STAGING = ".building"


def _clean_stale(parent: Path) -> None:
    """Remove ``.<name>.<pid>.<random>.building`` folders whose process no longer runs."""
    for path in parent.glob(f".*{STAGING}*"):
        parts = path.name.split(".")           # "", name..., pid, random, "building"
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)


def run_and_report(config: BacktestConfig, out: str | Path | None = None, progress: Progress | None = None, *,
                   plot_backtrader: bool = False, argv: Sequence[str] | None = None, force: bool = False,
                   ledger: str | Path | None = None, market=None, label: str | None = None,
                   extra: dict | None = None) -> tuple[Path, BacktestResult, list[BacktestResult]]:
    """Run the strategy and its baselines, then write the run folder: the saved data (``data/``), the
    reproducibility manifest and the report. Returns (folder, result, baselines); ``out`` defaults to
    ``runs/<UTC time>-<name>``. ``argv`` is the command line the manifest records (default ``sys.argv``).

    ``out`` must be absent or empty unless ``force`` (checked before the run); the folder is built under a
    temporary name and renamed when complete, so a failed run leaves nothing that looks like a run folder.
    Every run is recorded in the trial ledger (``ledger``, default ``$LSTMBT_LEDGER`` or the user cache; see
    :mod:`backtests.ledger`), and the strategy's result carries ``extras["trials"]``: the configurations tried on
    its span so far, for the report's deflated Sharpe ratio. ``market`` and ``label``: see
    :func:`run_with_baselines`; ``extra``: more top-level manifest entries (``input``, the saved candles of a
    DataFrame run)."""
    if config.symbols:          # a portfolio: several symbols in one account (backtests/portfolio)
        from backtests.portfolio.engine import portfolio_run_and_report

        return portfolio_run_and_report(config, out, progress, force=force, ledger=ledger, argv=argv)
    from backtests import ledger as trial_ledger
    from backtests.manifest import build_manifest
    from backtests.persist import write_run_folder

    started = time.perf_counter()
    folder = Path(out) if out else default_run_dir(config)
    check_out_folder(folder, force=force)
    for line in config_warnings(config.broker):
        _warn(progress, line)
    with staged_folder(folder, force=force) as tmp:
        main, baselines = run_with_baselines(config, progress, market=market, label=label,
                                             plot_path=tmp / "backtrader.png" if plot_backtrader else None)
        path = trial_ledger.record_results("backtest", [main, *baselines], ledger)
        trials = trial_ledger.trials_for(main, path)
        main.extras["trials"] = {"count": trials.count, "sharpes": list(trials.sharpes), "ledger": str(path)}
        write_run_folder(tmp, main, baselines, {**build_manifest(config, main, baselines, argv), **(extra or {})})
    if progress:
        progress(f"report: {folder} ({time.perf_counter() - started:.1f} s in all)")
    return folder, main, baselines


def _warn(progress: Progress | None, line: str) -> None:
    if progress:
        progress(f"warning: {line}")
