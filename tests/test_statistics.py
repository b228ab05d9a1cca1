"""Sharpe statistics against answers worked out by hand, and the bootstrap interval against simulated truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports.statistics import (annualised_sharpe, block_bootstrap_sharpe, deflated_sharpe_ratio,
                                expected_max_sharpe, probabilistic_sharpe_ratio, return_moments, sharpe_ratio,
                                sharpe_standard_error)

# Two-point series: every moment is known in closed form.
# SYMMETRIC: 0.001 +/- 0.02, half each -> mean 0.001, population std 0.02, skew 0, kurtosis 1;
#   sample std = 0.02 * sqrt(100/99), so SR = 0.05 * sqrt(0.99) = 0.0497494.
SYMMETRIC = np.array([0.021, -0.019] * 50)
# SKEWED: p = 0.2 of mu + 2 sigma, 0.8 of mu - sigma/2 (mu 0.001, sigma 0.01) -> skew (1-2p)/sqrt(p(1-p)) = 1.5,
#   kurtosis (1-3p+3p^2)/(p(1-p)) = 3.25, SR = 0.1 * sqrt(0.99) = 0.0994987.
SKEWED = np.array([0.021] * 20 + [-0.004] * 80)


def test_sharpe_ratio_is_mean_over_sample_std():
    assert sharpe_ratio([0.03, -0.01, 0.03, -0.01]) == pytest.approx(0.01 / 0.0230940, rel=1e-5)


def test_sharpe_ratio_is_nan_without_spread_or_data():
    assert math.isnan(sharpe_ratio([0.01, 0.01, 0.01]))
    assert math.isnan(sharpe_ratio([0.01]))


def test_annualised_sharpe_scales_hourly_by_sqrt_8760():
    assert annualised_sharpe(0.01, "1h") == pytest.approx(0.01 * 93.59487, rel=1e-6)
    assert annualised_sharpe(0.1, "1d") == pytest.approx(0.1 * math.sqrt(365))


def test_moments_of_two_point_series_match_closed_form():
    sym, skw = return_moments(SYMMETRIC), return_moments(SKEWED)
    assert (sym.n, sym.sharpe, sym.skew, sym.kurtosis) == pytest.approx((100, 0.0497494, 0.0, 1.0), abs=1e-7)
    assert (skw.n, skw.sharpe, skw.skew, skw.kurtosis) == pytest.approx((100, 0.0994987, 1.5, 3.25), abs=1e-7)


def test_standard_error_of_normal_returns():
    # sqrt((1 - 0 + (3 - 1)/4 * 0.01) / 100) = sqrt(1.005 / 100)
    assert sharpe_standard_error(0.1, 101) == pytest.approx(0.1002497, rel=1e-6)


def test_psr_of_symmetric_series_is_phi_of_0_495():
    # kurtosis 1 makes the bracket exactly 1: PSR = Phi(SR * sqrt(99)) = Phi(0.05 * 9.9) = Phi(0.495)
    assert probabilistic_sharpe_ratio(SYMMETRIC) == pytest.approx(0.6896999, abs=1e-6)


def test_psr_against_its_own_sharpe_is_one_half():
    assert probabilistic_sharpe_ratio(SYMMETRIC, benchmark=0.05 * math.sqrt(0.99)) == pytest.approx(0.5)


def test_psr_of_skewed_series_uses_skew_and_kurtosis():
    # z = 0.99 / sqrt(1 - 1.5 SR + 0.5625 SR^2) = 0.99 / sqrt(0.8563206) = 1.0698355 -> Phi(z) = 0.8576533
    assert probabilistic_sharpe_ratio(SKEWED) == pytest.approx(0.8576533, abs=1e-6)
    # the mirror image (skew -1.5, same kurtosis) has the same Sharpe... of opposite sign; flip its mean back:
    mirrored = -SKEWED + 2 * SKEWED.mean()
    assert probabilistic_sharpe_ratio(mirrored) == pytest.approx(0.8215407, abs=1e-6)   # bracket 1 + 1.5 SR + ...


def test_psr_is_nan_for_a_flat_curve():
    assert math.isnan(probabilistic_sharpe_ratio(np.zeros(50)))


def test_expected_max_sharpe_by_hand():
    # 0.02 * ((1 - 0.5772157) * Phi^-1(0.9) + 0.5772157 * Phi^-1(1 - 1/(10 e))) = 0.02 * (0.4227843 * 1.2815516
    # + 0.5772157 * 1.7892418)
    assert expected_max_sharpe(10, 0.0004) == pytest.approx(0.0314920, abs=1e-6)
    assert expected_max_sharpe(1, 0.5) == 0.0


def test_expected_max_sharpe_matches_the_simulated_maximum_of_normals():
    draws = np.random.default_rng(7).standard_normal((20_000, 100)).max(axis=1).mean()   # about 2.51
    assert expected_max_sharpe(100, 1.0) == pytest.approx(draws, rel=0.02)


def test_dsr_by_hand_for_two_trials():
    # trials [0, 0.02]: V = 0.0002 (ddof 1), N = 2 -> SR0 = sqrt(0.0002) * 0.5772157 * Phi^-1(1 - 1/(2e))
    # = 0.0141421 * 0.5772157 * 0.9004526 = 0.0073505; DSR = Phi((0.0497494 - 0.0073505) * sqrt(99)) = 0.6634378
    assert deflated_sharpe_ratio(SYMMETRIC, [0.0, 0.02]) == pytest.approx(0.6634378, abs=1e-6)


def test_dsr_with_one_trial_is_the_psr():
    assert deflated_sharpe_ratio(SYMMETRIC, [0.05]) == pytest.approx(probabilistic_sharpe_ratio(SYMMETRIC))


def test_dsr_falls_as_trials_grow():
    rng = np.random.default_rng(3)
    few, many = rng.normal(0, 0.03, 5), rng.normal(0, 0.03, 200)
    many[:5] = few     # the same spread, more tries
    assert deflated_sharpe_ratio(SKEWED, many) < deflated_sharpe_ratio(SKEWED, few) < probabilistic_sharpe_ratio(SKEWED)


def test_dsr_against_a_benchmark_is_the_psr_against_benchmark_plus_expected_max():
    trials = [0.0, 0.02]
    sr0 = expected_max_sharpe(2, 0.0002)
    assert deflated_sharpe_ratio(SKEWED, trials, 0.03) == pytest.approx(probabilistic_sharpe_ratio(SKEWED, 0.03 + sr0))


def test_bootstrap_interval_covers_the_true_sharpe_at_about_the_nominal_rate():
    true_sr = 0.1                       # i.i.d. normal returns, mean 0.001, sd 0.01
    rng = np.random.default_rng(2024)
    sims, hits = 200, 0
    for k in range(sims):
        r = rng.normal(0.001, 0.01, 400)
        low, high = block_bootstrap_sharpe(r, confidence=0.90, n_boot=300, seed=k)
        hits += low <= true_sr <= high
    # nominal 90 %; binomial sd over 200 runs is 2.1 points
    assert 0.84 <= hits / sims <= 0.96


def test_bootstrap_is_deterministic_for_a_seed():
    r = np.random.default_rng(0).normal(0.0005, 0.01, 300)
    assert block_bootstrap_sharpe(r, seed=5) == block_bootstrap_sharpe(r, seed=5)
    assert block_bootstrap_sharpe(r, seed=5) != block_bootstrap_sharpe(r, seed=6)


def test_blocks_widen_the_interval_of_autocorrelated_returns():
    rng = np.random.default_rng(11)
    shocks = rng.normal(0.0005, 0.01, 3000)
    r = np.convolve(shocks, np.ones(12) / 12, mode="valid")      # each return shares 11 shocks with the next
    lo1, hi1 = block_bootstrap_sharpe(r, block=1, n_boot=400)
    lo24, hi24 = block_bootstrap_sharpe(r, block=24, n_boot=400)
    assert hi24 - lo24 > 1.8 * (hi1 - lo1)


def test_bootstrap_rejects_bad_arguments():
    r = np.random.default_rng(0).normal(0, 0.01, 50)
    with pytest.raises(ValueError, match="confidence"):
        block_bootstrap_sharpe(r, confidence=1.5)
    with pytest.raises(ValueError, match="block"):
        block_bootstrap_sharpe(r, block=500)
    assert all(math.isnan(x) for x in block_bootstrap_sharpe(np.zeros(50)))
