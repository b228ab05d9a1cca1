"""Run a search: ask Optuna for trials from this process, run their walk-forward segments on an executor, tell
the results back; then evaluate the winner once on the final span and compute the guards.

The client alone talks to the study (ask-and-tell), so workers (local processes or a Dask cluster) only run
backtests and need no access to the run folder. Trials are asked ``batch`` at a time and their segments run
fold by fold: fold k of every live trial of the batch runs in parallel, then the results are reported in trial
order and the pruner decides which trials go on. Nothing depends on which worker finishes first, so the same
seed and batch give the same trial values on a process pool, a Dask cluster or in this process.

>>> spec = load_optimize_spec("my.toml", trials=30)                # doctest: +SKIP
>>> outcome = run_search(spec)                                       # doctest: +SKIP
>>> outcome.folder, outcome.best.values                              # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtests.compare.executors import Executor, TaskFailure, make_executor, with_lazy_imports
from backtests.config import BacktestConfig
from backtests.optimize.objective import (FoldOutcome, FoldTask, SpanPlan, fold_market, metric_value, plan_spans,
                                          run_fold)
from backtests.optimize.space import apply_values
from backtests.optimize.study import (OptimizeSpec, check_settings, folder_lock, open_study,
                                      recover_stale, repair_journal, save_returns)
from data_feeds import DataError, MarketData, load_market, parse_span

Progress = Callable[[str], None]
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def worker_modules(spec: OptimizeSpec) -> list[str]:
    """Modules a local worker needs (the engine, the strategy's module: torch for the LSTM, and what those import on
    first use), imported once by the process server before it forks the workers of each fold."""
    from strategies.registry import get_strategy

    return with_lazy_imports(["backtests.optimize.objective", "backtests.engine",
                              get_strategy(spec.config.strategy).__module__])


def count_finished(study) -> int:
    """Trials this search finished (complete, pruned or failed); a trial cut off by a crash does not count, its
    parameters are run again."""
    return sum(t.state.name in FINISHED and "folds_run" in t.user_attrs for t in study.get_trials(deepcopy=False))


def default_folder(spec: OptimizeSpec) -> Path:
    """``--out`` if given; ``<out_dir>/optimize-<study>`` for a named study (so a rerun finds it); else
    ``<out_dir>/<UTC time>-optimize``."""
    if spec.out:
        return Path(spec.out)
    if spec.study:
        return Path(spec.config.out_dir) / f"optimize-{spec.study}"
    return Path(spec.config.out_dir) / f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-optimize"


def load_full_market(config: BacktestConfig) -> tuple[MarketData, pd.DatetimeIndex]:
    """All the data up to the config's end (history for any trial) and the bars of the config's span."""
    d = config.data
    t0, t1 = parse_span(d.start, d.end)
    market = load_market(d.exchange, d.symbol, d.timeframe, "2000-01-01", d.end, data_path=d.path,
                         funding_path=d.funding_path, store_dir=d.store_dir)
    index = market.candles.index[(market.candles.index >= t0) & (market.candles.index < t1)]
    if len(index) < 20:
        raise DataError(f"only {len(index)} bar(s) of {d.symbol} {d.timeframe} in {d.start} .. {d.end}")
    return market, index


@dataclass
class _Live:
    """A trial being run: its Optuna handle, config and the segments' outcomes so far."""

    trial: Any
    values: dict
    config: BacktestConfig | None
    returns: list[np.ndarray] = field(default_factory=list)
    fold_values: list[float] = field(default_factory=list)
    trades: int = 0
    seconds: float = 0.0
    trained: int = 0
    cached: int = 0
    peak_mib: float = 0.0
    error: str | None = None
    pruned: bool = False

    @property
    def alive(self) -> bool:
        return self.error is None and not self.pruned

    def absorb(self, outcome: FoldOutcome) -> None:
        self.returns.append(outcome.returns)
        self.trades += outcome.trades
        self.seconds += outcome.seconds
        self.trained += outcome.trained
        self.cached += outcome.cached
        self.peak_mib = max(self.peak_mib, outcome.peak_mib)


def _value(metric: str, returns: list[np.ndarray], timeframe: str) -> float:
    """The metric over the segments so far; a strategy that never moved (no spread) scores 0."""
    v = metric_value(metric, np.concatenate(returns) if returns else np.zeros(0), timeframe)
    return 0.0 if not math.isfinite(v) else v


def segment_config(config: BacktestConfig, start: pd.Timestamp, stop: pd.Timestamp) -> BacktestConfig:
    """``config`` over the bars opening in ``[start, stop)`` (an end with a time of day is exclusive)."""
    return config.replace(baselines=(), data={"start": start.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "end": stop.strftime("%Y-%m-%dT%H:%M:%S")})


def _fold_values(objectives, returns, timeframe) -> list[float]:
    return [_value(o.metric, returns, timeframe) for o in objectives]


class Search:
    """One search in one run folder (see the module docstring); :meth:`run` does it all."""

    def __init__(self, spec: OptimizeSpec, executor: Executor | None = None, *, batch: int | None = None,
                 progress: Progress | None = None, show_bar: bool | None = None):
        self.spec = spec
        self.executor = executor
        self.batch = batch if batch is not None else spec.workers      # None: the executor's worker count
        self.say = progress or (lambda line: None)
        self.show_bar = show_bar
        self.folder = default_folder(spec)
        self.timeframe = spec.config.data.timeframe

    # ------------------------------------------------------------ the trials

    def _ask(self, study) -> _Live:
        from backtests.optimize.study import make_sampler

        # seeded by the trial's place among the trials that ran (a trial cut off by a crash and failed on resume
        # does not count), so a resumed study draws what an uninterrupted one would have drawn
        ran = sum(1 for t in study.get_trials(deepcopy=False)
                  if not (t.state.name == "FAIL" and "folds_run" not in t.user_attrs))
        study.sampler = make_sampler(self.spec, ran)
        trial = study.ask()
        values = self.spec.space.suggest(trial)
        config = apply_values(self.spec.config, values)
        live = _Live(trial, values, config)
        try:                                            # a drawn config the strategy or model refuses fails here
            for seg in self.plan.search[:1]:
                fold_market(self.search_market, config, seg)
            from strategies.registry import get_strategy

            cls = get_strategy(config.strategy)
            if callable(getattr(cls, "model_config", None)):
                cls.model_config(config)
        except (ValueError, DataError) as exc:
            live.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return live

    def _tasks(self, lives: list[_Live], k: int) -> list[FoldTask]:
        seg = self.plan.search[k]
        return [FoldTask(live.trial.number, seg, segment_config(live.config, seg.start, seg.stop),
                         fold_market(self.search_market, live.config, seg)) for live in lives]

    def _run_batch(self, study, executor: Executor, lives: list[_Live]) -> None:
        from optuna.trial import TrialState

        first = self.spec.objectives[0]
        for k in range(len(self.plan.search)):
            running = [live for live in lives if live.alive]
            if not running:
                break
            tasks = []
            for live in running:
                try:
                    tasks += self._tasks([live], k)
                except (ValueError, DataError) as exc:
                    live.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            running = [live for live in running if live.alive]
            results: dict[int, Any] = {}
            for i, value in executor.map_unordered(run_fold, tasks):
                results[tasks[i].trial] = value
            for live in running:                                 # in trial order: the same on every executor
                out = results.get(live.trial.number, TaskFailure("no result came back"))
                if isinstance(out, TaskFailure) or out.error:
                    live.error = out.error if not isinstance(out, TaskFailure) else out.error
                    continue
                live.absorb(out)
                value = _value(first.metric, live.returns, self.timeframe)
                live.fold_values.append(value)
                if not self.spec.multi and self.spec.prune:
                    live.trial.report(value, k)
                    if k < len(self.plan.search) - 1 and live.trial.should_prune():    # the last fold saves nothing
                        live.pruned = True
        self._record_ledger(lives)
        for live in lives:
            t = live.trial
            for key, value in (("fold_values", live.fold_values), ("trades", live.trades),
                               ("seconds", round(live.seconds, 3)), ("models_trained", live.trained),
                               ("models_cached", live.cached), ("peak_mib", round(live.peak_mib, 1)),
                               ("folds_run", len(live.returns))):
                t.set_user_attr(key, value)
            if live.returns:
                save_returns(self.folder, t.number, live.returns)
            if live.error:
                t.set_user_attr("error", live.error[:500])
                study.tell(t, state=TrialState.FAIL)
            elif live.pruned:
                study.tell(t, state=TrialState.PRUNED)
            else:
                study.tell(t, _fold_values(self.spec.objectives, live.returns, self.timeframe))

    def _record_ledger(self, lives: list[_Live]) -> None:
        """Every trial that produced returns goes into the trial ledger, over the search span."""
        from backtests import ledger

        d = self.spec.config.data
        start, end = self.plan.search[0].start, self.plan.search[-1].stop - pd.Timedelta(seconds=1)
        entries = [ledger.make_entry("optimize", live.config.to_dict(), exchange=d.exchange, symbol=d.symbol,
                                     timeframe=d.timeframe, start=start, end=end,
                                     sharpe=metric_value("sharpe", np.concatenate(live.returns), self.timeframe))
                   for live in lives if live.returns and live.config is not None]
        ledger.record(entries, self.spec.ledger)

    def _best_text(self, study) -> str:
        try:
            if self.spec.multi:
                return f"{len(study.best_trials)} on the front"
            return f"{study.best_value:.3f} (#{study.best_trial.number})"
        except ValueError:
            return "none yet"

    def run_trials(self, study, executor: Executor) -> int:
        """Ask, run and tell until the study holds ``spec.trials`` finished trials; returns how many ran now."""
        from tqdm import tqdm

        def finished() -> int:
            return count_finished(study)

        done0 = finished()
        bar = tqdm(total=self.spec.trials, initial=min(done0, self.spec.trials), desc="optimize", unit="trial",
                   file=sys.stderr, dynamic_ncols=True,
                   disable=None if self.show_bar is None else not self.show_bar)
        ran = 0
        try:
            while (done := finished()) < self.spec.trials:
                lives = [self._ask(study) for _ in range(min(self.batch, self.spec.trials - done))]
                self._run_batch(study, executor, lives)
                ran += len(lives)
                bar.update(len(lives))
                bar.set_postfix_str(f"best {self._best_text(study)}", refresh=True)
                if bar.disable:
                    for live in lives:
                        state = "failed: " + live.error if live.error else "pruned" if live.pruned else \
                            ", ".join(f"{o.text} {v:.3f}" for o, v in zip(
                                self.spec.objectives, _fold_values(self.spec.objectives, live.returns,
                                                                   self.timeframe)))
                        self.say(f"  trial {live.trial.number}: {state}; best {self._best_text(study)}")
        finally:
            bar.close()
        return ran

    # ------------------------------------------------------------ the whole search

    def run(self) -> "SearchOutcome":
        from backtests.optimize.analysis import analyse

        spec = self.spec
        started = time.perf_counter()
        with folder_lock(self.folder):
            resumed = check_settings(self.folder, spec)
            full, index = load_full_market(spec.config)
            self.plan = plan_spans(index, spec.folds, spec.final_fraction)
            first_bar = full.candles.index[0]
            self.search_market = full.slice(first_bar, self.plan.final_start)     # the final span is not in it
            if repair_journal(self.folder / "study.journal"):
                self.say("study: cut a half-written last record left by a killed run")
            study = open_study(self.folder, spec)
            stale = recover_stale(study)
            if resumed:
                n = count_finished(study)
                self.say(f"study: resuming {self.folder} with {n} finished trial(s)"
                         + (f"; trial(s) {', '.join(map(str, stale))} were cut off and run again" if stale else ""))
            own = self.executor is None
            executor = self.executor or make_executor(spec.workers, spec.scheduler, preload=worker_modules(spec))
            if self.batch is None:
                self.batch = executor.workers
            self.batch = max(1, int(self.batch))
            try:
                ran = self.run_trials(study, executor)
                outcome = analyse(self, study, full, executor)
            finally:
                if own:
                    executor.close()
        outcome.ran_now = ran
        outcome.seconds = time.perf_counter() - started
        return outcome


@dataclass
class SearchOutcome:
    """What a search produced (the report and files are written from it by :mod:`backtests.optimize.report`)."""

    folder: Path
    spec: OptimizeSpec
    plan: SpanPlan
    trials: pd.DataFrame
    best: Any
    best_config: BacktestConfig | None
    search_returns: np.ndarray | None
    final_returns: np.ndarray | None
    final_error: str | None
    summary: dict
    guards: dict
    market_index: pd.DatetimeIndex | None = None
    buy_hold: np.ndarray | None = None
    ran_now: int = 0
    seconds: float = 0.0


def run_search(spec: OptimizeSpec, executor: Executor | None = None, *, batch: int | None = None,
               progress: Progress | None = None, show_bar: bool | None = None, write: bool = True) -> SearchOutcome:
    """Run (or resume) the search of ``spec`` and, with ``write``, write its report folder."""
    outcome = Search(spec, executor, batch=batch, progress=progress, show_bar=show_bar).run()
    if write:
        from backtests.optimize.report import write_outputs

        write_outputs(outcome)
    return outcome


__all__ = ["Search", "SearchOutcome", "default_folder", "load_full_market", "run_search", "segment_config"]
