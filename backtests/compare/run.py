"""Running the cells on an executor, and writing the comparison folder."""

from __future__ import annotations

import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from backtests.compare.executors import Executor, TaskFailure, make_executor, with_lazy_imports
from backtests.compare.grid import Cell, CellOutcome
from backtests.compare.plan import CellTask, plan_cells
from backtests.compare.spec import CompareSpec
from data_feeds import MarketData

Progress = Callable[[str], None]
REFERENCE_STRATEGY = "buy_hold"


def run_cell(task: CellTask, data: dict[str, MarketData]) -> CellOutcome:
    """Run one cell on its cut of the grid's ``data`` where it lands (a worker process, a Dask worker, or here)
    and never raise: an exception becomes the outcome's ``error`` (``"DataError: ..."``) with the traceback as
    ``detail``. Next to the cell, the worker runs the cell's one buy-and-hold (``buy_hold`` at 1x on the same bars
    and broker, fees and funding paid; a 1x ``buy_hold`` cell is its own) and keeps its equity in
    ``result.extras["buy_hold_1x"]`` for the verdict. With ``cell_reports`` the cell's report folder is rendered
    here and returned as bytes."""
    from backtests.engine import run_backtest

    started = time.perf_counter()
    try:
        if task.sources:
            from strategies.loader import provide_source

            for path, text in task.sources.items():
                provide_source(path, text)
        if task.cell.symbols:           # a symbol set: one account, the equal-weight buy-and-hold as reference
            from backtests.portfolio.engine import run_portfolio

            def run(config, market):
                return run_portfolio(config, data=market)
        else:
            def run(config, market):
                return run_backtest(config, market=market, rules=task.rules)
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
    what those import on first use, see :func:`~backtests.compare.executors.with_lazy_imports`), for a process pool to
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

