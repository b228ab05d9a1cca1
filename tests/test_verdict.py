"""The paired Sharpe test and the verdict sentence on simulated series whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports.statistics import paired_sharpe_test, sharpe_ratio
from reports.verdict import CONFIDENT, LUCK, NA, NO, excess_returns, verdict


def _market(n=3000, seed=1):
    return np.random.default_rng(seed).normal(0.0001, 0.01, n)


def test_identical_series_have_no_difference_and_p_one():
    bh = _market()
    t = paired_sharpe_test(bh, bh, n_boot=200, seed=3)
    assert t.sharpe == 0.0 and t.low == 0.0 and t.high == 0.0
    assert t.p_value == 1.0


def test_planted_edge_over_the_reference_gets_a_small_p():
    bh = _market()
    edge = bh + 0.002            # the same market plus a steady 0.2 % per bar: Sharpe far above
    t = paired_sharpe_test(edge, bh, n_boot=300, seed=3)
    assert t.sharpe == pytest.approx(sharpe_ratio(edge) - sharpe_ratio(bh))
    assert t.low > 0 and t.p_value < 0.01
    back = paired_sharpe_test(bh, edge, n_boot=300, seed=3)         # the other way round: the same p, below 0
    assert back.sharpe < 0 and back.high < 0 and back.p_value < 0.01


def test_p_value_agrees_with_the_interval():
    # p <= 1 - confidence exactly when the percentile interval excludes 0, for every draw
    for k in range(12):
        a, b = _market(600, 300 + k) + 0.0004 * (k % 4), _market(600, 400 + k)
        t = paired_sharpe_test(a, b, n_boot=200, seed=k, confidence=0.9)
        assert (t.p_value <= 0.1 + 1e-12) == (t.low > 0 or t.high < 0), (k, t)


def test_noise_around_the_reference_is_not_significant_at_5_percent_most_of_the_time():
    # H0 true (an independent copy of the market with the same true Sharpe): p is roughly uniform, so about
    # 5 % of seeds reject; with 20 draws more than 5 rejections would be a broken test (P < 0.001)
    rejections = 0
    for k in range(20):
        a, b = _market(800, 100 + k), _market(800, 200 + k)
        rejections += paired_sharpe_test(a, b, n_boot=200, seed=k).p_value <= 0.05
    assert rejections <= 5


def test_paired_test_is_deterministic_for_a_seed_and_refuses_misaligned_series():
    a, b = _market(500, 7), _market(500, 8)
    assert paired_sharpe_test(a, b, n_boot=100, seed=5) == paired_sharpe_test(a, b, n_boot=100, seed=5)
    with pytest.raises(ValueError, match="aligned"):
        paired_sharpe_test(a, b[:-1])


def test_paired_test_against_flat_is_the_sharpe_above_zero():
    up = _market(2000, 9) + 0.003
    t = paired_sharpe_test(up, None, n_boot=200, seed=1)
    assert t.sharpe == pytest.approx(sharpe_ratio(up)) and t.p_value < 0.01
    assert math.isnan(paired_sharpe_test(np.zeros(100), None, n_boot=50).p_value)


def test_verdict_sentence_for_a_strategy_that_does_not_beat_buy_and_hold():
    bh = _market(3000, 11)
    weak = 0.5 * bh + np.random.default_rng(12).normal(0, 0.004, bh.size)
    v = verdict(weak, bh, "1h", n_boot=200, seed=0)
    assert v.beats_bh in (NO, LUCK)
    assert v.sentence.startswith("did not beat buy-and-hold with confidence (Sharpe ")
    assert f"p = {v.p_vs_bh:.2f}" in v.sentence
    assert v.sharpe_low <= v.sharpe <= v.sharpe_high


def test_verdict_for_a_planted_edge_is_confident_against_both():
    bh = _market(3000, 13)
    v = verdict(bh + 0.002, bh, "1h", n_boot=200, seed=0)
    assert (v.beats_bh, v.beats_flat) == (CONFIDENT, CONFIDENT)
    assert v.sentence.startswith("beat buy-and-hold with confidence") and "p = < 0.001" not in v.sentence


def test_flat_strategy_gets_no_verdict():
    v = verdict(np.zeros(500), _market(500), "1h", n_boot=50)
    assert v.beats_bh == NA and v.sentence.startswith("no verdict")


def test_risk_free_rate_is_taken_per_bar_from_both_series():
    r = np.full(3, 0.001)
    assert excess_returns(r, 0.04, "1d") == pytest.approx(0.001 - (1.04 ** (1 / 365) - 1))
    bh = _market(1000, 2)
    assert verdict(bh + 0.001, bh, "1h", n_boot=50, risk_free=0.05).sharpe < verdict(bh + 0.001, bh, "1h",
                                                                                       n_boot=50).sharpe
