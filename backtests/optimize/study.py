"""The search's settings and its persistent study: an Optuna journal file in the run folder.

A run folder holds ``study.journal`` (Optuna's ``JournalStorage`` on a file, appended under a lock, so a crash
never loses a finished trial), ``study.json`` (what was searched: the config, the space, the objectives, the
spans; a rerun with other settings is refused), ``trials/<number>.npz`` (each finished trial's out-of-sample bar
returns, for the overfitting guards) and a ``lock`` held for as long as a search runs there (one search per folder;
the operating system releases it when the process dies, even by ``kill -9``).

Settings come from the config file's ``[optimize]`` table and the command line::

    [optimize]
    trials = 60                 # finished trials the study should hold (a rerun continues up to it)
    objectives = ["sharpe"]     # or two: ["sharpe", "-max_drawdown"] (NSGA-II, no pruning)
    folds = 5                   # walk-forward segments of the search span
    final_fraction = 0.2        # the last 20 % of [data] start .. end, never seen by the search
    workers = 2                 # trials run together (local processes, or Dask tasks with scheduler = ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from backtests.config import BacktestConfig, ConfigError, config_from_dict, read_toml
from backtests.optimize.objective import Objective, parse_objectives
from backtests.optimize.space import SearchSpace, parse_space
from data_feeds.files import atomic_path, atomic_write

OPTIMIZE_KEYS = ("trials", "objectives", "folds", "final_fraction", "workers", "scheduler", "study", "out", "prune",
                 "top", "cpcv_groups", "cpcv_test_groups", "purge", "embargo", "pbo_slices", "population", "ledger",
                 "cpcv_refit")
JOURNAL = "study.journal"
SETTINGS = "study.json"


@dataclass(frozen=True)
class OptimizeSpec:
    """A search: the base ``config`` (data span, broker, strategy, fixed params and model), the ``space`` and
    ``objectives``, how the span is cut (``folds``, ``final_fraction``), how it runs and what the guards use.

    ``trials``: finished trials (complete, pruned or failed) the study should hold. ``workers``: local worker
    processes (0 = this process; default one per core) and the number of trials asked and run together (at least
    1; on Dask, default the cluster's worker count): the same number gives the same trial values on a process
    pool, a Dask cluster or in this process; ``scheduler``: a Dask address instead of local processes. ``top``: candidates in the CPCV;
    ``cpcv_groups`` / ``cpcv_test_groups``: N and k; ``purge``: bars purged before each test group (default the
    model's label horizon, else 0); ``embargo``: fraction of the search bars embargoed after each test group;
    ``pbo_slices``: S of the CSCV (even). ``population``: NSGA-II's population with two objectives.
    ``cpcv_refit``: for a model strategy, retrain each CPCV split's selected candidate on the split's training
    groups (:mod:`backtests.optimize.refit`); None = yes for model strategies, False = reuse the walk-forward
    returns only.
    ``ledger``: the trial ledger file every trial is recorded in (default ``$LSTMBT_LEDGER`` or the user cache's
    ``ledger.jsonl``); the deflated Sharpe counts its other configurations on the same data too.
    """

    config: BacktestConfig
    space: SearchSpace
    objectives: tuple[Objective, ...]
    trials: int = 30
    folds: int = 5
    final_fraction: float = 0.2
    workers: int | None = None
    scheduler: str | None = None
    study: str | None = None
    out: str | None = None
    prune: bool = True
    top: int = 10
    cpcv_groups: int = 6
    cpcv_test_groups: int = 2
    purge: int | None = None
    embargo: float = 0.01
    pbo_slices: int = 16
    population: int = 12
    search_table: dict = field(default_factory=dict)
    ledger: str | None = None
    cpcv_refit: bool | None = None

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def study_name(self) -> str:
        return self.study or "optimize"

    def settings(self) -> dict:
        """What the study's trials depend on (a rerun must match it): config, space, objectives, spans, seed."""
        config = self.config.to_dict()
        for key in ("cache_dir", "out_dir", "name"):
            config.pop(key, None)
        return {"config": config, "search": self.space.to_dict(), "objectives": [o.text for o in self.objectives],
                "folds": self.folds, "final_fraction": self.final_fraction, "prune": self.prune,
                "population": self.population}


def _whole(name: str, value, low: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: {name} must be a whole number >= {low}, got {value!r}")
    return value


def resolve_spec(config: BacktestConfig, search: dict, table: dict, where: str = "config") -> OptimizeSpec:
    """Check and build the spec from a config, its ``[search]`` table and its ``[optimize]`` settings."""
    unknown = sorted(set(table) - set(OPTIMIZE_KEYS))
    if unknown:
        raise ConfigError(f"{where} [optimize]: unknown key(s) {', '.join(unknown)}; valid: {', '.join(OPTIMIZE_KEYS)}")
    space = parse_space(search, config, f"{where} [search]")
    objectives = tuple(parse_objectives(table.get("objectives", ["sharpe"])))
    values = dict(table)
    values.pop("objectives", None)
    for name, low in (("trials", 1), ("folds", 1), ("top", 2), ("cpcv_groups", 3), ("cpcv_test_groups", 1),
                      ("pbo_slices", 2), ("population", 2), ("workers", 0)):
        if name in values:
            _whole(name, values[name], low, f"{where} [optimize]")
    if values.get("purge") is not None:
        _whole("purge", values["purge"], 0, f"{where} [optimize]")
    for name in ("final_fraction", "embargo"):
        v = values.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1):
            raise ConfigError(f"{where} [optimize]: {name} must be a number in [0, 1), got {v!r}")
    if values.get("pbo_slices", 16) % 2:
        raise ConfigError(f"{where} [optimize]: pbo_slices must be even, got {values['pbo_slices']}")
    groups, tests = values.get("cpcv_groups", 6), values.get("cpcv_test_groups", 2)
    if not tests < groups:
        raise ConfigError(f"{where} [optimize]: cpcv_test_groups ({tests}) must be below cpcv_groups ({groups})")
    if "prune" in values and not isinstance(values["prune"], bool):
        raise ConfigError(f"{where} [optimize]: prune must be true or false, got {values['prune']!r}")
    if values.get("cpcv_refit") is not None and not isinstance(values["cpcv_refit"], bool):
        raise ConfigError(f"{where} [optimize]: cpcv_refit must be true or false, got {values['cpcv_refit']!r}")
    for name in ("scheduler", "study", "out", "ledger"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ConfigError(f"{where} [optimize]: {name} must be a string, got {values[name]!r}")
    if values.get("study") is not None and not _safe_name(values["study"]):
        raise ConfigError(f"{where}: study name {values['study']!r} may use letters, digits, '.', '_' and '-' only")
    return OptimizeSpec(config=config, space=space, objectives=objectives, search_table=dict(search), **values)


def _safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "._-" for c in name) and name not in (".", "..")


def load_optimize_file(path: str | os.PathLike) -> tuple[BacktestConfig, dict, dict]:
    """``(config, [search] table, [optimize] table)`` of a config file; other tables as for ``lstmbt backtest``."""
    raw = read_toml(path)
    search, table = raw.pop("search", {}), raw.pop("optimize", {})
    raw.pop("compare", None)
    for name, value in (("search", search), ("optimize", table)):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    return config_from_dict(raw, str(path)), dict(search), dict(table)


def load_optimize_spec(path: str | os.PathLike, **overrides) -> OptimizeSpec:
    """The spec of a config file, with ``overrides`` (``[optimize]`` keys) applied on top."""
    config, search, table = load_optimize_file(path)
    return resolve_spec(config, search, {**table, **{k: v for k, v in overrides.items() if v is not None}},
                        str(path))


# ---------------------------------------------------------------- the run folder

@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/lock`` exclusively for the block; a second search on the same folder is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another search is running in {folder}; wait for it or use another --study/--out") \
                from None
        yield
    finally:
        handle.close()


def check_settings(folder: Path, spec: OptimizeSpec) -> bool:
    """Write ``study.json`` for a new study; for an existing one, refuse settings that differ. True if resumed."""
    path = folder / SETTINGS
    mine = json.loads(json.dumps(spec.settings(), default=str))
    if path.exists():
        theirs = json.loads(path.read_text())
        if theirs != mine:
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"{folder} holds a study with other settings ({', '.join(changed)} differ); "
                              f"use another --study/--out, or the same config and flags to resume it")
        return True
    atomic_write(path, json.dumps(mine, indent=2, sort_keys=True))
    return False


def repair_journal(path: Path) -> bool:
    """Cut a last line that a killed process left half-written (it was never acknowledged); drop the stale lock
    file of a killed writer. Call only while holding :func:`folder_lock`. True when something was cut."""
    lock = Path(str(path) + ".lock")
    if lock.exists() or lock.is_symlink():
        lock.unlink()
    if not path.exists() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True


def open_storage(folder: Path):
    """Optuna's journal storage on ``folder/study.journal`` (process-safe appends under a file lock)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(folder / JOURNAL)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def make_sampler(spec: OptimizeSpec, number: int):
    """The sampler that draws trial ``number``: TPE (one objective) or NSGA-II (two), seeded by the config's seed
    and the trial number, so a resumed study draws what an uninterrupted one would."""
    import optuna

    seed = (int(spec.config.seed) * 1_000_003 + number) % (2 ** 32)
    if spec.multi:
        return optuna.samplers.NSGAIISampler(population_size=spec.population, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(spec.trials // 3, 2)))


def make_pruner(spec: OptimizeSpec):
    """Median pruning after the second fold, once 5 trials have finished (no pruning with two objectives)."""
    import optuna

    if spec.multi or not spec.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def open_study(folder: Path, spec: OptimizeSpec):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=open_storage(folder), study_name=spec.study_name,
                               directions=[o.direction for o in spec.objectives], sampler=make_sampler(spec, 0),
                               pruner=make_pruner(spec), load_if_exists=True)


def recover_stale(study) -> list[int]:
    """Trials left RUNNING by a search that died: mark them failed and queue their parameters again, so the
    same configurations are tried. Returns their numbers. Call only while holding :func:`folder_lock`."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
    return [t.number for t in stale]


# ---------------------------------------------------------------- per-trial returns

def save_returns(folder: Path, number: int, segments: list[np.ndarray]) -> Path:
    """``trials/<number>.npz``: the trial's bar returns per segment run (``seg0``, ``seg1`` ...), atomically."""
    path = folder / "trials" / f"{number:05d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"seg{k}": np.asarray(r, dtype="float64") for k, r in enumerate(segments)})
    return path


def load_returns(folder: Path, number: int) -> list[np.ndarray] | None:
    """The segments saved by :func:`save_returns`, or None when the trial has none."""
    path = folder / "trials" / f"{number:05d}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return [data[f"seg{k}"] for k in range(len(data.files))]


__all__ = ["OPTIMIZE_KEYS", "OptimizeSpec", "check_settings", "folder_lock", "load_optimize_file",
           "load_optimize_spec", "load_returns", "make_pruner", "make_sampler", "open_study", "recover_stale",
           "repair_journal", "resolve_spec", "save_returns"]
