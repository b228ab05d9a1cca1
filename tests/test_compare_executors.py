"""The grid on every executor: the same table from a process pool, a Dask cluster on loopback and this process;
a failing cell is an error row and the others still finish."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from backtests.compare import resolve_spec, run_comparison
from backtests.config import BacktestConfig
from backtests.compare.executors import DaskExecutor, InlineExecutor, ProcessExecutor, TaskFailure
from reports.comparison import build_comparison

GRID = {"strategies": ["sma_cross", "buy_hold", "flat"], "symbols": ["BTC/USDT:USDT"],
        "ranges": "march=2022-03-01:2022-03-31,june=2022-06-01:2022-06-30", "cell_reports": False, "bootstrap": 200}


def _spec(**changes):
    return resolve_spec(BacktestConfig(strategy="buy_hold"), {**GRID, **changes})


def _crash_on_two(x: int) -> int:
    if x == 2:
        os._exit(3)        # the worker process dies mid-task
    return x * 10


def _raise_on_two(x: int) -> int:
    if x == 2:
        raise RuntimeError("two is not allowed")
    return x * 10


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:     # as --scheduler makes it: not default
        yield client


def test_process_pool_dask_cluster_and_this_process_give_identical_tables(dask_client):
    spec = _spec()
    with ProcessExecutor(2) as pool:
        by_pool = build_comparison(run_comparison(spec, pool, show_bar=False), n_boot=200).table
    with DaskExecutor(dask_client) as dask:
        assert dask.workers == 2
        by_dask = build_comparison(run_comparison(spec, dask, show_bar=False), n_boot=200).table
    inline = build_comparison(run_comparison(spec, InlineExecutor(), show_bar=False), n_boot=200).table
    assert list(by_pool["status"]) == ["ok"] * 6
    assert list(zip(by_pool["range"], by_pool["strategy"]))[:3] == [
        ("march", "sma_cross"), ("march", "buy_hold"), ("march", "flat")]
    assert by_pool["Sharpe"].notna().sum() == 4         # flat has no spread, so no Sharpe
    pd.testing.assert_frame_equal(by_pool, by_dask)
    pd.testing.assert_frame_equal(by_pool, inline)


def test_failing_cells_are_error_rows_and_the_rest_finish():
    config = BacktestConfig(strategy="buy_hold", params={"sma_cross": {"fast": 60, "slow": 50}})
    spec = resolve_spec(config, {**GRID, "strategies": ["sma_cross", "buy_hold"],
                                 "ranges": "march=2022-03-01:2022-03-31,void=2015-01-01:2015-01-31"})
    lines = []
    outcomes = run_comparison(spec, InlineExecutor(), progress=lines.append, show_bar=False)
    table = build_comparison(outcomes).table.set_index(["range", "strategy"])
    assert table.loc[("march", "buy_hold"), "status"] == "ok"
    assert table.loc[("march", "sma_cross"), "error"] == "ValueError: sma_cross needs 0 < fast < slow, got fast=60 slow=50"
    for name in ("sma_cross", "buy_hold"):
        assert table.loc[("void", name), "error"].startswith("DataError: only 0 bar(s) of BTC/USDT:USDT 1h")
    assert "Traceback" in next(o for o in outcomes if o.cell.strategy == "sma_cross" and o.cell.range.name == "march").detail
    assert sum("DataError" in line or "ValueError" in line for line in lines) == 3


def test_a_dead_worker_fails_its_task_not_the_run():
    with ProcessExecutor(2) as pool:
        got = dict(pool.map_unordered(_crash_on_two, [0, 1, 2, 3]))
    assert sorted(got) == [0, 1, 2, 3]
    assert isinstance(got[2], TaskFailure) and "terminated abruptly" in got[2].error


def test_a_task_raising_on_dask_is_a_failure_value(dask_client):
    with DaskExecutor(dask_client.scheduler.address) as dask:       # the executor's own client, by address
        got = dict(dask.map_unordered(_raise_on_two, [0, 1, 2, 3]))      # index -> value; here index == item
    assert (got[0], got[1], got[3]) == (0, 10, 30)
    assert got[2] == TaskFailure("RuntimeError: two is not allowed")


def test_an_unreachable_scheduler_is_a_one_line_error():
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1)


def test_a_small_lstm_cell_trains_before_its_range_and_runs_in_the_grid(tmp_path):
    config = BacktestConfig(strategy="lstm", cache_dir=str(tmp_path),
                            model={"train_bars": 600, "val_bars": 200, "window": 16, "hidden": 8, "epochs": 1})
    spec = resolve_spec(config, {**GRID, "strategies": ["lstm", "buy_hold"], "ranges": "march=2022-03-01:2022-03-10"})
    outcomes = run_comparison(spec, InlineExecutor(), show_bar=False)
    assert [o.error for o in outcomes] == [None, None]
    lstm = outcomes[0].result
    assert lstm.equity.index[0] == pd.Timestamp("2022-03-01", tz="UTC")       # trades the range only
    assert lstm.predictions is not None and lstm.predictions.index[0] >= lstm.equity.index[0]
    (meta,) = tmp_path.glob("*/meta.json")                   # the cell's checkpoint: trained before the range
    spans = json.loads(meta.read_text())["spans"]
    assert pd.Timestamp(spans["train_end"]) == pd.Timestamp("2022-03-01", tz="UTC")
    assert pd.Timestamp(spans["validation"][1]) <= pd.Timestamp("2022-03-01", tz="UTC")


class _RecordingLibc:
    """Stands in for glibc: records mallopt/malloc_trim calls (the thresholds cannot be read back from glibc)."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_heap_malloc_lifts_dasks_trim_threshold_for_the_task_and_restores_it_after_the_last(monkeypatch):
    from backtests.compare import executors

    libc = _RecordingLibc()
    monkeypatch.setattr(executors, "_libc", lambda: libc)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")         # what Dask's nanny gives its workers
    with executors.heap_malloc():
        with executors.heap_malloc():                             # a second task thread in the same worker
            pass
        assert libc.calls == [("mallopt", -3, 32 * 2**20), ("mallopt", -1, 64 * 2**20)]
    assert libc.calls[2:] == [("malloc_trim", 0), ("mallopt", -1, 65536), ("mallopt", -3, 128 * 1024)]


def test_heap_malloc_leaves_a_process_without_dasks_setting_alone(monkeypatch):
    from backtests.compare import executors

    libc = _RecordingLibc()
    monkeypatch.setattr(executors, "_libc", lambda: libc)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with executors.heap_malloc():
        pass
    assert libc.calls == []


def test_heap_malloc_runs_on_the_real_libc_of_a_dask_worker(dask_client):
    from backtests.compare.executors import _libc

    env = dask_client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(env.values()) == {"65536"}                        # the nanny setting this works around
    if _libc() is None:
        pytest.skip("no glibc mallopt here")
    with DaskExecutor(dask_client) as dask:
        assert sorted(dask.map_unordered(_double_in_numpy, [1, 2])) == [(0, 2.0), (1, 4.0)]


def _double_in_numpy(x: int) -> float:
    import numpy as np

    return float(np.full(1_000_000, x, dtype=np.float64).sum() / 500_000)


def test_worker_preload_includes_what_torch_imports_on_the_first_optimizer():
    from backtests.compare import worker_modules

    modules = worker_modules(_spec(strategies=["lstm", "buy_hold"]))
    assert modules[-1] == "torch._dynamo" and "strategies.lstm_strategy" in modules


def _plus_shared(x: int, shared: dict) -> int:
    return x + shared["offset"]


def test_shared_input_reaches_every_task_on_every_executor(dask_client):
    shared = {"offset": 100}
    expected = [(0, 101), (1, 102), (2, 103)]
    with ProcessExecutor(2) as pool:
        assert sorted(pool.map_unordered(_plus_shared, [1, 2, 3], shared=shared)) == expected
    with DaskExecutor(dask_client) as dask:
        assert sorted(dask.map_unordered(_plus_shared, [1, 2, 3], shared=shared)) == expected
    assert sorted(InlineExecutor().map_unordered(_plus_shared, [1, 2, 3], shared=shared)) == expected


def test_a_cell_task_carries_its_cut_not_the_market_data():
    import pickle

    from backtests.compare import plan_cells

    plan = plan_cells(_spec())
    assert len(plan.tasks) == 6 and list(plan.data) == ["BTC/USDT:USDT"]
    assert all(len(pickle.dumps(task)) < 20_000 for task in plan.tasks)          # the data goes once per worker
    march = plan.tasks[0].market(plan.data).candles.index
    assert (march[0], march[-1]) == (pd.Timestamp("2022-03-01", tz="UTC"), pd.Timestamp("2022-03-31 23:00", tz="UTC"))


def test_a_dask_cluster_without_workers_is_a_one_line_error_not_a_wait():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with pytest.raises(ValueError, match="has no worker .*dask worker tcp://127.0.0.1"):
            list(DaskExecutor(client, timeout=1).map_unordered(_plus_shared, [1], shared={"offset": 1}))
