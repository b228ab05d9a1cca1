"""The overfitting guards as pure functions: CPCV purging and embargo on a toy index, CPCV paths, PBO by CSCV
against hand-computed cases, parameter importances, objective metrics and the span plan."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from backtests.config import ConfigError
from backtests.optimize.guards import (cpcv_paths, cpcv_selection, cpcv_splits, default_slices, group_bounds,
                                       importances, pbo_cscv)
from backtests.optimize.objective import metric_value, parse_objectives, plan_spans


def test_groups_are_contiguous_and_as_equal_as_possible():
    assert group_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError):
        group_bounds(3, 4)


def test_cpcv_purges_before_and_embargoes_after_each_test_group_on_a_toy_index():
    # 12 bars, 4 groups of 3: testing group 1 (bars 3-5) with purge 1 and embargo 2 trains on 0, 1 and 8-11
    split = cpcv_splits(12, 4, 1, purge=1, embargo=2)[1]
    assert split.groups == (1,)
    assert split.test.tolist() == [3, 4, 5]
    assert split.train.tolist() == [0, 1, 8, 9, 10, 11]
    # two test groups (0 and 2: bars 0-2 and 6-8): purge drops bar 5, embargo drops 3-4 and 9-10
    split = cpcv_splits(12, 4, 2, purge=1, embargo=2)[1]
    assert split.groups == (0, 2)
    assert split.test.tolist() == [0, 1, 2, 6, 7, 8]
    assert split.train.tolist() == [11]
    # without purge and embargo, train and test partition the bars
    for s in cpcv_splits(12, 4, 2):
        assert sorted(s.train.tolist() + s.test.tolist()) == list(range(12))


@pytest.mark.parametrize("n, groups, k, purge, embargo", [(100, 6, 2, 3, 2), (57, 5, 1, 0, 4), (40, 4, 3, 2, 0)])
def test_no_training_bar_sits_in_the_purge_or_embargo_of_any_test_group(n, groups, k, purge, embargo):
    splits = cpcv_splits(n, groups, k, purge=purge, embargo=embargo)
    assert len(splits) == math.comb(groups, k)
    bounds = group_bounds(n, groups)
    for s in splits:
        assert not set(s.train) & set(s.test)
        for g in s.groups:
            a, b = bounds[g]
            assert not set(s.train) & set(range(a - purge, a)), "a purged bar was trained on"
            assert not set(s.train) & set(range(b, b + embargo)), "an embargoed bar was trained on"
        kept = set(range(n)) - set(s.test)
        for g in s.groups:
            a, b = bounds[g]
            kept -= set(range(max(a - purge, 0), a)) | set(range(b, min(b + embargo, n)))
        assert set(s.train.tolist()) == kept, "only purged and embargoed bars may be dropped"


def test_cpcv_paths_cover_each_group_once_and_use_each_split_group_once():
    table = cpcv_paths(6, 2)
    assert table.shape == (5, 6)                 # C(5, 1) paths
    splits = list(combinations(range(6), 2))
    used = {(int(s), g) for row in table for g, s in enumerate(row)}
    assert used == {(i, g) for i, s in enumerate(splits) for g in s}
    for row in table:
        assert all(g in splits[s] for g, s in enumerate(row))


def test_cpcv_selection_picks_the_training_best_and_reports_its_test_sharpe():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (600, 3))
    noise[:, 1] += 0.004                           # candidate 1 has a real edge everywhere
    res = cpcv_selection(noise, 6, 2, purge=2, embargo=3)
    assert len(res.splits) == 15 and res.path_sharpes.shape == (5,)
    assert (res.selected == 1).all()
    assert np.allclose(res.selected_test, res.test_sharpes[np.arange(15), 1])
    assert (res.path_sharpes > 0.2).all()


def _two_trials(a_first: float, a_second: float) -> np.ndarray:
    # two slices of two bars; trial B mirrors trial A
    a = np.array([a_first + 0.01, a_first - 0.01, a_second + 0.01, a_second - 0.01])
    b = np.array([-a_first + 0.01, -a_first - 0.01, -a_second + 0.01, -a_second - 0.01])
    return np.column_stack([a, b])


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    # A wins slice 0, B wins slice 1: each in-sample winner is the worse of 2 out of sample:
    # rank 1 of 2, w = 1/3, logit ln(0.5) = -0.693 in both combinations
    res = pbo_cscv(_two_trials(0.01, -0.01), n_slices=2)
    assert res.pbo == 1.0
    assert np.allclose(res.logits, [math.log(0.5), math.log(0.5)])
    assert res.best.tolist() == [0, 1]
    assert res.prob_loss == 1.0


def test_pbo_is_zero_when_one_trial_wins_everywhere():
    res = pbo_cscv(_two_trials(0.01, 0.005), n_slices=2)        # A wins both slices: w = 2/3, logit ln 2
    assert res.pbo == 0.0
    assert np.allclose(res.logits, [math.log(2), math.log(2)])
    assert res.best.tolist() == [0, 0]


def test_pbo_of_four_slices_by_hand():
    # 3 trials, 4 slices of 2 bars (slice mean +/- 0.01); slice means in percent:
    #   trial 0: 3 3 -1 -1   trial 1: 1 1 1 1   trial 2: -1 -1 3 3
    # IS {0,1}: Sharpe 0.03/0.01155 = 2.6 (t0), 0.866 (t1), -0.866 (t2): t0 wins, and is worst on {2,3}:
    #   rank 1 of 3, w = 1/4, logit ln(1/3). IS {2,3}: the mirror image, t2 wins and is worst out of sample.
    # Mixed halves, e.g. {0,2}: t0 and t2 have returns .04 .02 0 -.02 (Sharpe 0.01/0.0258 = 0.387), t1 has
    #   .02 0 .02 0 (0.866): t1 wins and is best out of sample too: rank 3, w = 3/4, logit ln 3.
    # PBO = 2 of 6 combinations = 1/3.
    means = np.array([[3, 3, -1, -1], [1, 1, 1, 1], [-1, -1, 3, 3]], dtype=float) * 0.01
    m = np.repeat(means.T, 2, axis=0)
    m[0::2] += 0.01
    m[1::2] -= 0.01
    res = pbo_cscv(m, n_slices=4)
    combos = list(combinations(range(4), 2))
    logits = dict(zip(combos, res.logits))
    best = dict(zip(combos, res.best.tolist()))
    assert logits[(0, 1)] == pytest.approx(math.log(1 / 3)) and best[(0, 1)] == 0
    assert logits[(2, 3)] == pytest.approx(math.log(1 / 3)) and best[(2, 3)] == 2
    for combo in [(0, 2), (0, 3), (1, 2), (1, 3)]:
        assert best[combo] == 1
        assert logits[combo] == pytest.approx(math.log(3))
    assert res.is_sharpe[combos.index((0, 1))] == pytest.approx(0.03 / np.std([0.04, 0.02, 0.04, 0.02], ddof=1))
    assert res.pbo == pytest.approx(1 / 3)


def test_pbo_is_calibrated_on_noise_and_near_zero_for_one_real_edge():
    # over pure noise PBO is a random variable centred on 0.5 (one matrix of 14 trials: 5-95 % range about
    # 0.2-0.8), so its mean over 20 independent noise matrices must sit near 0.5
    draws = [pbo_cscv(np.random.default_rng(seed).normal(0, 0.01, (800, 14)), 10).pbo for seed in range(20)]
    assert 0.4 <= np.mean(draws) <= 0.6
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.01, (1600, 40))
    edged = noise.copy()
    edged[:, 5] += 0.003
    assert pbo_cscv(edged, 16).pbo < 0.05


def test_default_slices_keep_at_least_ten_bars_per_slice():
    assert default_slices(1600) == 16
    assert default_slices(90) == 8
    assert default_slices(15) == 2


def test_importances_find_the_parameter_that_drives_the_objective():
    rng = np.random.default_rng(3)
    params = pd.DataFrame({"params.fast": rng.integers(1, 20, 60), "model.cell": rng.choice(["lstm", "gru"], 60)})
    y = params["params.fast"].to_numpy() * 0.1 + rng.normal(0, 0.01, 60)
    imp = importances(params, y)
    assert imp.index[0] == "params.fast"
    assert imp["params.fast"] > 0.9
    assert imp.sum() == pytest.approx(1.0)


def test_metrics_by_hand():
    r = [0.1, -0.5, 0.2]
    assert metric_value("return", r, "1h") == pytest.approx(-34.0)             # 1.1 * 0.5 * 1.2 - 1
    assert metric_value("max_drawdown", r, "1h") == pytest.approx(50.0)        # 1.1 -> 0.55
    r = [0.03, -0.01, 0.03, -0.01]
    assert metric_value("sharpe", r, "1h") == pytest.approx(0.01 / np.std(r, ddof=1) * math.sqrt(8760))
    assert math.isnan(metric_value("sharpe", [0.0, 0.0], "1h"))


def test_objectives_say_which_way_is_better():
    obj = parse_objectives(["sharpe", "-max_drawdown"])
    assert [(o.metric, o.direction) for o in obj] == [("sharpe", "maximize"), ("max_drawdown", "minimize")]
    for bad, hint in (("-sharpe", "higher is better"), ("max_drawdown", "write -max_drawdown"),
                      ("profit", "unknown metric"), ("sharpe,sortino,return", "one or two")):
        with pytest.raises(ConfigError, match=hint):
            parse_objectives(bad)


def test_span_plan_keeps_the_final_fifth_apart():
    index = pd.date_range("2024-01-01", periods=1000, freq="1h", tz="UTC")
    plan = plan_spans(index, 4, 0.2)
    assert [s.bars for s in plan.search] == [200, 200, 200, 200]
    assert plan.final_start == index[800] and plan.final_bars == 200
    assert [s.bars for s in plan.final] == [200]
    assert plan.search[-1].stop == plan.final_start
    assert plan.final[-1].stop == index[-1] + pd.Timedelta("1h")


def test_best_toml_writer_round_trips_config_data():
    import tomllib

    from backtests.config import BacktestConfig, config_from_dict
    from backtests.optimize.report import to_toml

    config = BacktestConfig(strategy="lstm", baselines=("buy_hold",), params={"mode": "online"},
                            model={"hidden": 16, "lr": 0.00123, "cell": "gru", "tune_threshold": True,
                                   "features": ["ret_1", "range"]})
    data = config.to_dict()
    text = to_toml(data, "header line\nsecond line")
    assert text.startswith("# header line\n# second line\n")
    assert config_from_dict(tomllib.loads(text)) == config


def test_a_search_table_becomes_typed_dimensions_and_values_land_in_params_and_model():
    import optuna

    from backtests.config import BacktestConfig
    from backtests.optimize.space import apply_values, parse_space

    config = BacktestConfig(strategy="lstm")
    space = parse_space({"model.hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
                         "model.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                         "model.cell": {"choices": ["lstm", "gru"]}, "params.mode": {"choices": ["batched"]}}, config)
    assert [d.describe() for d in space.dimensions] == ["int 16..64 step 16", "float 0.0001..0.01 log",
                                                        "one of lstm, gru", "one of batched"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = space.suggest(study.ask())
    assert values["model.hidden"] in (16, 32, 48, 64) and 1e-4 <= values["model.lr"] <= 1e-2
    tried = apply_values(config, values)
    assert tried.model == {"hidden": values["model.hidden"], "lr": values["model.lr"], "cell": values["model.cell"]}
    assert tried.params == {"mode": "batched"}
    default = parse_space({}, config)                                    # the default LSTM space
    assert {d.field for d in default.dimensions} == {"window", "hidden", "layers", "cell", "horizon", "lr",
                                                     "dropout", "label_cost", "tune_threshold"}


def test_the_shipped_search_example_and_the_main_job_config_are_valid_searches():
    from pathlib import Path

    from backtests.optimize import load_optimize_spec

    configs = Path(__file__).resolve().parents[1] / "backtests" / "configs"
    example = load_optimize_spec(configs / "optimize_example.toml")
    assert example.trials == 60 and len(example.space.dimensions) == 9 and example.workers == 2
    main_job = load_optimize_spec(configs / "btc_lstm_1h.toml")           # no [search]: the default space
    assert main_job.space.names == example.space.names
    small = load_optimize_spec(configs / "optimize_lstm_small.toml")    # the 30-trial search of the README
    assert small.trials == 30 and small.folds == 3 and "model.label_cost" in small.space.names
