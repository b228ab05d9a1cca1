"""CPCV with refitted models (backtests.optimize.refit): a logistic model refitted on each split's training groups
finds a planted one-bar momentum and finds nothing in noise; refits come back from the cache; training bars keep
clear of the test groups; the replay by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from backtests.compare.executors import InlineExecutor
from backtests.optimize.guards import cpcv_splits
from backtests.optimize.refit import RefitOutcome, _blocked, refit_cpcv, replay_returns
from strategies.ml.config import ModelConfig
from tests.conftest import make_candles

N, OFFSET = 1500, 60
CFG = ModelConfig(kind="logreg", features=("ret_1",), window=1, horizon=1, train_bars=100, val_bars=50,
                  class_weighting=False)


def _market(hit: float, seed: int):
    rng = np.random.default_rng(seed)
    r = [0.01]
    for _ in range(N - 1):                      # the next move keeps the last one's sign with probability ``hit``
        size = abs(rng.normal(0, 0.01))
        r.append(np.sign(r[-1]) * size if rng.random() < hit else -np.sign(r[-1]) * size)
    candles = make_candles(100 * np.exp(np.cumsum(r)))
    return SimpleNamespace(candles=candles, funding=pd.DataFrame({"funding_rate": []},
                                                                  index=pd.DatetimeIndex([], tz="UTC")))


def _refit(market, cache, groups=6, tests=2):
    splits = cpcv_splits(N - OFFSET, groups, tests, purge=1, embargo=12)
    return refit_cpcv(splits, np.zeros(len(splits), dtype=int), [(CFG, 0.0002)], market, OFFSET, groups, tests,
                      InlineExecutor(), str(cache))


def test_a_refitted_model_finds_a_planted_momentum_and_nothing_in_noise(tmp_path):
    edge = _refit(_market(0.75, seed=1), tmp_path / "a")
    assert edge.errors == [] and edge.trained == 15 and edge.cached == 0
    assert np.median(edge.selected_test) > 0.3 and (edge.path_sharpes > 0.3).all()     # per-bar Sharpe ratios
    noise = _refit(_market(0.5, seed=2), tmp_path / "b", groups=4, tests=1)
    print("edge", np.round(edge.selected_test, 3), "noise", np.round(noise.selected_test, 3))
    assert noise.errors == [] and abs(np.median(noise.selected_test)) < 0.1
    again = _refit(_market(0.75, seed=1), tmp_path / "a")
    assert again.trained == 0 and again.cached == 15
    assert np.array_equal(again.selected_test, edge.selected_test)


def test_training_bars_keep_clear_of_each_test_group():
    mask = _blocked(20, [(5, 8), (12, 14)], before=2, after=3)
    assert np.flatnonzero(mask).tolist() == [3, 4, 8, 9, 10, 11, 14, 15, 16]


def test_the_replay_holds_each_decision_over_the_next_bar_and_pays_half_the_cost_per_change():
    opens = np.array([100.0, 100, 110, 121, 121, 108.9])
    # decisions on bars 0..3 (probabilities short, flat, long): long, long, short, flat
    probs = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    out = RefitOutcome(0, np.array([0, 1, 2, 3]), probs, 0.0)
    r = replay_returns(out, opens, 0, np.array([2, 3, 4]), cost=0.002, min_confidence=None)
    # bar 2: held long (decided on 1), no change from bar 0's long: +10 %; bar 3: short (decided on 2), a change of
    # 2 units: 0 % move - 0.002; bar 4: flat after short: -0.001
    assert np.allclose(r, [0.10, -0.002, -0.001])
