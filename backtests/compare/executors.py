"""Where the cells of a comparison run: in this process, on a local process pool, or on a Dask cluster.

Every executor has the same small interface: ``map_unordered(fn, items)`` runs ``fn(item)`` for each item and
yields ``(index, value)`` as each finishes, in completion order; a task that could not return (its worker died, its
input or output could not be sent) yields a :class:`TaskFailure` instead of raising, so the others still finish.
``fn`` must be a module-level function and ``items`` picklable: they travel to the worker with the task, so a
worker needs the lstmbt package installed but no disk shared with the client. What every task reads (the grid's
market data) goes in ``shared``: it is sent once to each worker, not with each task, and ``fn(item, shared)`` is
called instead.

>>> with make_executor(workers=2) as ex:                                  # doctest: +SKIP
...     for i, value in ex.map_unordered(pow_of_two, [1, 2, 3]): ...
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib
import multiprocessing
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TaskFailure:
    """A task that did not return a value: ``error`` says why in one line."""

    error: str


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Executor(Protocol):
    """Runs independent tasks; see the module docstring."""

    name: str

    @property
    def workers(self) -> int: ...

    def map_unordered(self, fn: Callable[..., Any], items: Sequence[Any], *,
                      shared: Any = None) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc) -> None: ...


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release workers and connections (nothing to release by default)."""


class InlineExecutor(_Closing):
    """Runs each task in this process, one after the other (``--workers 0``): plain tracebacks, no pickling."""

    name = "inline"

    @property
    def workers(self) -> int:
        return 1

    def map_unordered(self, fn, items, *, shared=None):
        for i, item in enumerate(items):
            try:
                value = fn(item) if shared is None else fn(item, shared)
            except Exception as exc:          # reported as that task's failure; the rest still run
                value = TaskFailure(_describe(exc))
            yield i, value


class ProcessExecutor(_Closing):
    """A local pool of ``workers`` processes, forked from a clean server process (``forkserver``; ``spawn`` where
    there is none, as on Windows), never from the client itself: no client threads or state leak into a worker.
    ``preload`` names modules the server imports once, before it forks the workers (e.g. backtrader, torch and
    matplotlib through ``backtests.compare``, ``strategies.lstm_strategy``, ``reports.comparison``), so N workers
    do not each pay those imports. The pool lives for one ``map_unordered`` call, so memory goes back when the
    grid is done; the server lives as long as the client process and serves later pools."""

    name = "process pool"

    def __init__(self, workers: int | None = None, *, preload: Sequence[str] = ()):
        workers = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--workers must be a whole number >= 1 for the process pool, got {workers!r}")
        self._workers = workers
        self._preload = list(preload)

    @property
    def workers(self) -> int:
        return self._workers

    def map_unordered(self, fn, items, *, shared=None):
        if not items:
            return
        workers = min(self._workers, len(items))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(self._preload),
                                   initializer=_init_worker, initargs=(os.getpid(), workers, shared))
        task = fn if shared is None else functools.partial(_with_shared, fn)
        try:
            futures = {pool.submit(task, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                try:
                    value = future.result()
                except Exception as exc:       # a dead worker (BrokenProcessPool) or an unpicklable value
                    value = TaskFailure(_describe(exc))
                yield futures[future], value
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_shared: Any = None           # a pool worker's copy of what every task of its pool reads (``shared``)


def _init_worker(pid: int, workers: int, shared: Any = None) -> None:
    """Pool worker initializer: exit with the client (:func:`watch_parent`), share the cores
    (:func:`_share_cores`) and keep ``shared`` for the tasks."""
    global _shared
    watch_parent(pid)
    _share_cores(workers)
    _shared = shared


def _with_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(item, _shared)


def watch_parent(pid: int) -> None:
    """Worker initializer: end this worker as soon as the client process ``pid`` is gone (``kill -9`` included).

    A pool's workers are children of the forkserver, not of the client, so they would otherwise outlive a killed
    client, and keep the forkserver and the resource tracker alive with them. A daemon thread waits on a pidfd of
    the client (Linux) or polls it each second, then exits the worker."""
    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
        else:
            while process_alive(pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="lstmbt-watch-client", daemon=True).start()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _share_cores(workers: int) -> None:
    """In each pool worker: torch inference threads = this machine's cores / workers (at least 1), so N workers
    never run more threads than there are cores (``LSTMBT_TORCH_THREADS``; a value the user set is kept)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("LSTMBT_TORCH_THREADS", str(max(1, cores // max(workers, 1))))


# Modules a library imports on first use rather than at its own import, by the library they belong to. torch.optim
# imports torch._dynamo when the first optimizer is made (1.3-2 s of imports): in a process server it is paid once,
# in each worker it would be paid again by every worker that trains a model.
LAZY_IMPORTS = {"torch": ("torch._dynamo",)}


def with_lazy_imports(modules: Sequence[str]) -> list[str]:
    """``modules`` plus what the libraries they import load lazily (:data:`LAZY_IMPORTS`), so a process server
    (or a Dask worker at start) imports those once too instead of each worker on its first task. ``modules`` are
    imported here to see which libraries they pull in (the client has imported most of them already)."""
    for module in modules:
        importlib.import_module(module)
    lazy = [m for library, later in LAZY_IMPORTS.items() if library in sys.modules for m in later]
    return list(dict.fromkeys([*modules, *lazy]))


def _context(preload: list[str]):
    """``forkserver`` with ``preload`` imported in the server (the list only takes effect when the server starts,
    once per client process), else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        if preload:
            context.set_forkserver_preload(preload)
        return context
    return multiprocessing.get_context("spawn")


class DaskExecutor(_Closing):
    """Tasks on a Dask cluster through ``dask.distributed``: give the scheduler's address
    (``tcp://scheduler-host:8786``) or a ready ``distributed.Client``. Inputs are pickled into each task and results
    come back to the client; ``shared`` is scattered to every worker once per call. A task that raises on the
    cluster (a worker lost, say) becomes a :class:`TaskFailure`; a cluster with no worker within ``timeout``
    seconds is a ValueError. A client made here is closed by :meth:`close`; one passed in is left open."""

    name = "dask"

    def __init__(self, scheduler, *, timeout: float = 20.0):
        from distributed import Client

        self._timeout = timeout
        if isinstance(scheduler, Client):
            self._client, self._owned = scheduler, False
        else:
            try:
                self._client = Client(str(scheduler), timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({_describe(exc)}); start one "
                                 f"with 'dask scheduler' and workers with 'dask worker {scheduler}'") from None
            self._owned = True

    @property
    def workers(self) -> int:
        return len(self._client.scheduler_info().get("workers", {}))

    @property
    def client(self):
        return self._client

    def _scatter(self, shared):
        """``shared`` on every worker, as one future (ValueError when the cluster has no worker)."""
        try:
            return self._client.scatter([shared], broadcast=True, hash=False, timeout=self._timeout)[0]
        except TimeoutError:
            where = self._client.scheduler.address
            raise ValueError(f"the Dask cluster at {where} has no worker (none joined within {self._timeout:g} s); "
                             f"start some with 'dask worker {where} --nthreads 1'") from None

    def map_unordered(self, fn, items, *, shared=None):
        from distributed import as_completed as dask_completed

        if not items:
            return
        held = None if shared is None else self._scatter(shared)
        futures = self._client.map(functools.partial(_on_dask_worker, fn), list(items), shared=held, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in dask_completed(futures, loop=self._client.loop):
                try:
                    value = future.result()
                except Exception as exc:
                    value = TaskFailure(_describe(exc))
                yield index[future.key], value
                future.release()
        finally:
            self._client.cancel([f for f in futures if not f.done()])
            if held is not None:
                held.release()

    def close(self) -> None:
        if self._owned:
            self._client.close()


def _on_dask_worker(fn: Callable[..., Any], item: Any, shared: Any = None) -> Any:
    with heap_malloc():
        return fn(item) if shared is None else fn(item, shared)


# glibc mallopt parameters (malloc.h) and the values glibc's own dynamic thresholds settle at on 64-bit Linux.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_MMAP_THRESHOLD_FIXED = 128 * 1024
_malloc_lock = threading.Lock()
_malloc_users = 0


@functools.cache
def _libc():
    """glibc with ``mallopt`` and ``malloc_trim``, looked up once per process; None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def heap_malloc() -> Iterator[None]:
    """While a task runs, let glibc keep freed memory in the heap as it does by default; give it back at the end.

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``)
    so they return memory to the system quickly. Setting that variable also switches off glibc's dynamic mmap
    threshold: every block over 128 KiB, which is most of torch's tensors, is then mapped and unmapped on each use,
    and training an LSTM ran 2-3x slower in such a worker than in a plain process (``benchmarks/compare_workers.py``).
    Where that variable is set (Linux, glibc), the task runs with the thresholds glibc settles at by itself (mmap
    above 32 MiB, trim above 64 MiB); when the last task running in the process ends, ``malloc_trim(0)`` returns the
    free memory and the worker's own settings come back. Elsewhere this does nothing. Results are unaffected:
    only where memory comes from changes."""
    global _malloc_users
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    libc = _libc() if trim is not None and trim.isdigit() else None
    if libc is None:
        yield
        return
    with _malloc_lock:
        _malloc_users += 1
        if _malloc_users == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_users -= 1
            if _malloc_users == 0:
                libc.malloc_trim(0)
                libc.mallopt(_M_TRIM_THRESHOLD, int(trim))
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_FIXED)


def make_executor(workers: int | None = None, scheduler: str | None = None, *,
                  preload: Sequence[str] = ()) -> Executor:
    """The executor the CLI flags ask for: Dask when ``scheduler`` is given, else a process pool of ``workers``
    (default: one per CPU core; ``preload`` as for :class:`ProcessExecutor`), or this process alone when
    ``workers == 0``."""
    if scheduler:
        return DaskExecutor(scheduler)
    if workers == 0:
        return InlineExecutor()
    return ProcessExecutor(workers, preload=preload)


__all__ = ["DaskExecutor", "Executor", "InlineExecutor", "ProcessExecutor", "TaskFailure", "heap_malloc", "make_executor",
           "with_lazy_imports"]
