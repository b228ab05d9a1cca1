"""The search end to end on hand-made candles with a cheap strategy (sma_cross): a search over noise is caught by
the guards, a planted edge survives them and the final span; the same seed gives the same trials in this process
and on a Dask cluster; a study resumes, recovers trials cut off by a crash and refuses other settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtests.config import BacktestConfig, ConfigError
from backtests.compare.executors import DaskExecutor, InlineExecutor
from backtests.optimize import resolve_spec, run_search
from backtests.optimize.study import open_study
from tests.conftest import make_candles, write_candles_csv

SPACE = {"params.fast": {"choices": [1, 2, 3, 5, 8]}, "params.slow": {"type": "int", "low": 10, "high": 60, "step": 5}}
NOISE_SEED = 11
FREE = {"taker_fee": 0.0, "maker_fee": 0.0, "slippage": "none", "funding": False}   # no costs: signal only


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path, monkeypatch):
    """Every search records its trials in the trial ledger: keep it in the test's folder."""
    monkeypatch.setenv("LSTMBT_LEDGER", str(tmp_path / "ledger.jsonl"))


def random_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def planted_edge(n: int, seed: int, lookback: int = 30, hit: float = 0.7) -> np.ndarray:
    """Closes whose next return has the sign of (close - its ``lookback``-bar mean) with probability ``hit``: the
    rule sma_cross(fast=1, slow=lookback) trades."""
    rng = np.random.default_rng(seed)
    close = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, lookback))))
    for _ in range(n - lookback):
        side = 1.0 if close[-1] > np.mean(close[-lookback:]) else -1.0
        size = abs(rng.normal(0, 0.01))
        close.append(close[-1] * np.exp(side * size if rng.random() < hit else -side * size))
    return np.asarray(close)


def _spec(tmp_path, closes, name: str, **optimize):
    """A search over the whole candle file (its last whole day is the span's end: a span past the data is refused)."""
    path = tmp_path / f"{name}.csv"
    end = (pd.Timestamp("2024-01-01") + pd.Timedelta(hours=len(closes))).normalize() - pd.Timedelta(days=1)
    write_candles_csv(make_candles(closes, start="2024-01-01"), path)
    config = BacktestConfig(strategy="sma_cross", seed=3, out_dir=str(tmp_path)).replace(
        data={"path": str(path), "symbol": "TEST/USDT:USDT", "timeframe": "1h", "start": "2024-01-01",
              "end": f"{end:%Y-%m-%d}"}, broker=FREE)
    table = {"trials": 12, "folds": 3, "prune": False, "out": str(tmp_path / name), **optimize}
    return resolve_spec(config, dict(SPACE), table, "test")


def test_a_search_over_noise_is_flagged_and_its_winner_is_no_better_than_chance_on_the_final_span(tmp_path):
    out = run_search(_spec(tmp_path, random_walk(1200, seed=NOISE_SEED), "noise"), InlineExecutor(), show_bar=False)
    g, s = out.summary["guards"], out.summary
    assert s["trials"]["COMPLETE"] == 12
    # not trivially: the trials really differ, traded, and the winner was run on the whole final span
    assert out.trials["sharpe"].round(6).nunique() >= 8 and (out.trials["trades"] > 0).all()
    assert s["final"]["bars"] == out.plan.final_bars > 0 and s["final"]["trades"] > 0
    assert g["pbo_trials"] == 12 and g["dsr_trials"] >= 8
    assert g["pbo"] >= 0.4, g              # a coin flip out of sample; seeds 11, 1, 2, 3 give 0.79, 0.58, 0.54, 0.78
    assert g["dsr"] < 0.95                                      # not significant once 14 tries are counted
    assert s["final"]["psr"] < 0.95                             # the final span: no evidence of skill
    print("noise:", json.dumps({k: g[k] for k in ("pbo", "dsr")}), "final Sharpe", s["final"]["sharpe"])


def test_a_planted_edge_passes_the_guards_and_survives_the_final_span(tmp_path):
    out = run_search(_spec(tmp_path, planted_edge(1200, seed=5), "edge"), InlineExecutor(), show_bar=False)
    g, s = out.summary["guards"], out.summary
    assert out.trials["sharpe"].round(6).nunique() >= 8 and s["final"]["trades"] > 0
    assert g["pbo_trials"] == 12 and s["final"]["bars"] == out.plan.final_bars > 0
    assert g["pbo"] < 0.3, g                                    # seeds 5-8 give 0.19, 0.25, 0.03, 0.03
    assert g["dsr"] > 0.95
    assert s["final"]["sharpe"] > 2 and s["final"]["psr"] > 0.95
    assert 20 <= s["best"]["params"]["params.slow"] <= 40       # the planted lookback is 30
    print("edge:", json.dumps({k: g[k] for k in ("pbo", "dsr")}), "final Sharpe", s["final"]["sharpe"])
    for name in ("report.html", "trials.csv", "best.toml", "pbo.png", "cpcv.png", "history.png", "slices.png"):
        assert (out.folder / name).stat().st_size > 0


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def test_same_seed_same_trials_in_this_process_and_on_a_loopback_dask_cluster(tmp_path, dask_client):
    closes = random_walk(1200, seed=2)
    local = run_search(_spec(tmp_path, closes, "local", trials=4, folds=2, prune=True), InlineExecutor(), batch=2,
                       show_bar=False, write=False)
    with DaskExecutor(dask_client) as dask:
        remote = run_search(_spec(tmp_path, closes, "dask", trials=4, folds=2, prune=True), dask, batch=2,
                            show_bar=False, write=False)
    cols = ["number", "state", "sharpe", "params.fast", "params.slow", "fold_values", "trades"]
    assert local.trials[cols].equals(remote.trials[cols])
    assert local.summary["final"] == remote.summary["final"]


def test_a_study_resumes_recovers_a_cut_off_trial_and_refuses_other_settings(tmp_path):
    closes = random_walk(1200, seed=4)
    spec = _spec(tmp_path, closes, "resume", trials=3, folds=2)
    first = run_search(spec, InlineExecutor(), show_bar=False, write=False)
    assert len(first.trials) == 3
    # a crash mid-trial leaves it RUNNING in the journal: the next run fails it and tries its parameters again
    study = open_study(first.folder, spec)
    cut = study.ask()
    cut_params = spec.space.suggest(cut)
    again = run_search(_spec(tmp_path, closes, "resume", trials=6, folds=2), InlineExecutor(), show_bar=False)
    t = again.trials.set_index("number")
    assert list(t.index) == [0, 1, 2, 3, 4, 5, 6]
    assert t.loc[3, "state"] == "FAIL"
    assert t.loc[4, "retry_of"] == 3
    assert (t.loc[4, "params.fast"], t.loc[4, "params.slow"]) == (cut_params["params.fast"], cut_params["params.slow"])
    assert (t.loc[[0, 1, 2], "sharpe"].to_numpy() == first.trials["sharpe"].to_numpy()).all()
    with pytest.raises(ConfigError, match="other settings"):
        run_search(_spec(tmp_path, closes, "resume", trials=6, folds=3), InlineExecutor(), show_bar=False)


def test_two_objectives_use_nsga2_and_report_a_pareto_front(tmp_path):
    spec = _spec(tmp_path, random_walk(900, seed=8), "two", trials=5, folds=2, objectives=["sharpe", "-max_drawdown"])
    assert [o.direction for o in spec.objectives] == ["maximize", "minimize"]
    out = run_search(spec, InlineExecutor(), show_bar=False)
    t = out.trials
    assert (t["state"] == "COMPLETE").all() and t["-max_drawdown"].gt(0).all()
    front = out.summary["front"]
    assert out.best.number in front
    # no complete trial dominates a front member
    for n in front:
        me = t.set_index("number").loc[n]
        assert not ((t["sharpe"] >= me["sharpe"]) & (t["-max_drawdown"] <= me["-max_drawdown"])
                    & ((t["sharpe"] > me["sharpe"]) | (t["-max_drawdown"] < me["-max_drawdown"]))).any()
    assert (out.folder / "pareto.png").stat().st_size > 0


def test_the_median_pruner_stops_trials_below_the_median_after_a_fold(tmp_path):
    out = run_search(_spec(tmp_path, random_walk(900, seed=4), "prune", trials=9, prune=True), InlineExecutor(),
                     show_bar=False, write=False)
    t = out.trials
    pruned = t[t["state"] == "PRUNED"]
    assert len(pruned) >= 1 and (t.loc[t["number"] < 5, "state"] == "COMPLETE").all()      # 5 startup trials
    assert (pruned["folds_run"] == 2).all()      # not before the second fold; not after the last, which saves nothing


def test_every_trial_goes_into_the_ledger_and_the_deflated_sharpe_counts_the_ledger_too(tmp_path):
    from backtests import ledger

    closes = random_walk(900, seed=6)
    spec = _spec(tmp_path, closes, "ledger", trials=3, folds=2)
    path = tmp_path / "ledger.jsonl"
    # five other configurations already tried on these bars, one on another symbol, one on a later span
    others = [ledger.make_entry("backtest", {"strategy": "sma_cross", "params": {"fast": k}}, exchange="binanceusdm",
                                symbol="TEST/USDT:USDT", timeframe="1h", start="2024-01-05", end="2024-01-20",
                                sharpe=0.5 * k) for k in range(5)]
    others.append(ledger.make_entry("backtest", {"strategy": "x"}, exchange="binanceusdm", symbol="ETH/USDT:USDT",
                                    timeframe="1h", start="2024-01-05", end="2024-01-20", sharpe=1.0))
    others.append(ledger.make_entry("backtest", {"strategy": "y"}, exchange="binanceusdm", symbol="TEST/USDT:USDT",
                                    timeframe="1h", start="2025-01-05", end="2025-01-20", sharpe=1.0))
    ledger.record(others, path)
    out = run_search(spec, InlineExecutor(), show_bar=False, write=False)
    g = out.summary["guards"]
    searched = [e for e in ledger.read(path) if e["kind"] == "optimize"]
    assert len(searched) == 3                                         # every trial, on the search span
    assert {e["start"][:10] for e in searched} == {"2024-01-01"}
    assert g["dsr_search_configs"] == len({e["config_hash"] for e in searched}) >= 2
    assert g["dsr_ledger_trials"] == 5
    assert g["dsr_trials"] == g["dsr_search_configs"] + 5
    final = [e for e in ledger.read(path) if e["kind"] == "optimize-final"]
    assert len(final) == 1 and final[0]["start"] >= out.plan.final_start.isoformat()
