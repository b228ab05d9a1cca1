"""How much a Sharpe ratio can be trusted: block-bootstrap intervals, the probabilistic and the deflated Sharpe ratio.

Pure functions of bar returns (fractions: 0.01 = +1 % in one bar). Every Sharpe ratio here is **per bar** (not
annualised) unless a name says otherwise: ``SR = mean(r) / std(r, ddof=1)``, risk-free rate 0. Multiply by
``sqrt(bars_per_year(timeframe))`` (:func:`annualised_sharpe`) to compare with ``compute_metrics``' ``"Sharpe"``.

Notation, after Bailey and López de Prado (2012, "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2);
2014, "The Deflated Sharpe Ratio", J. of Portfolio Management 40(5)):

- ``n``: number of returns; ``SR``: the observed per-bar Sharpe ratio;
- ``g3``: skewness ``m3 / m2**1.5``, ``g4``: kurtosis ``m4 / m2**2`` (not excess: 3 for a normal), with ``mk`` the
  k-th central sample moment (divided by n);
- ``Phi``: the standard normal CDF, ``Phi^-1`` its inverse.

No function uses a global random state: the bootstrap draws from ``numpy.random.default_rng(seed)``, so the same
returns and seed give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from data_feeds.timeframes import bars_per_year

EULER_GAMMA = 0.5772156649015329
"""The Euler-Mascheroni constant, in the expected maximum of N standard normals."""
_NORMAL = NormalDist()


@dataclass(frozen=True)
class ReturnMoments:
    """What the PSR needs of a return series: ``n``, per-bar ``sharpe``, ``skew`` (g3) and ``kurtosis`` (g4, not
    excess). Returns ``[0.03, -0.01] * 50`` give n=100, sharpe 0.4975 (0.01 / 0.0201), skew 0, kurtosis 1."""

    n: int
    sharpe: float
    skew: float
    kurtosis: float


def _clean(returns) -> np.ndarray:
    r = np.asarray(returns, dtype="float64").ravel()
    return r[np.isfinite(r)]


def sharpe_ratio(returns) -> float:
    """Per-bar Sharpe ratio ``mean(r) / std(r, ddof=1)``; NaN with fewer than 2 returns or zero spread.

    ``[0.03, -0.01, 0.03, -0.01]``: mean 0.01, std 0.02309 -> 0.4330.
    """
    r = _clean(returns)
    if r.size < 2:
        return float("nan")
    std = float(np.std(r, ddof=1))
    return float(np.mean(r)) / std if std > 0 else float("nan")


def annualised_sharpe(sharpe: float, timeframe: str) -> float:
    """Per-bar Sharpe times ``sqrt(bars_per_year(timeframe))`` (a 24/7 market): 0.01 per 1h bar -> 0.936 a year."""
    return float(sharpe) * math.sqrt(bars_per_year(timeframe))


def return_moments(returns) -> ReturnMoments:
    """``n``, per-bar Sharpe, skewness and (non-excess) kurtosis of the finite values of ``returns``."""
    r = _clean(returns)
    n = int(r.size)
    if n < 2:
        return ReturnMoments(n, float("nan"), float("nan"), float("nan"))
    d = r - r.mean()
    m2 = float(np.mean(d ** 2))
    if m2 <= 0:
        return ReturnMoments(n, float("nan"), float("nan"), float("nan"))
    return ReturnMoments(n, sharpe_ratio(r), float(np.mean(d ** 3)) / m2 ** 1.5, float(np.mean(d ** 4)) / m2 ** 2)


def sharpe_standard_error(sharpe: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of an estimated per-bar Sharpe ratio for non-normal returns (Mertens 2002; Bailey & López de
    Prado 2012, eq. 5)::

        sigma_SR = sqrt((1 - g3 * SR + (g4 - 1) / 4 * SR**2) / (n - 1))

    Normal returns (g3=0, g4=3) with SR=0.1 over n=101 bars: sqrt((1 + 0.005) / 100) = 0.10025. NaN when n < 2 or
    the bracket is not positive (possible only for extreme skew).
    """
    if n < 2 or not all(math.isfinite(x) for x in (sharpe, skew, kurtosis)):
        return float("nan")
    bracket = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    return math.sqrt(bracket / (n - 1)) if bracket > 0 else float("nan")


def probabilistic_sharpe_ratio(returns, benchmark: float = 0.0) -> float:
    """Probability that the true per-bar Sharpe ratio exceeds ``benchmark`` (also per bar), given the observed
    returns (Bailey & López de Prado 2012, eq. 11)::

        PSR(SR*) = Phi( (SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR**2) )

    Returns ``[0.021, -0.019] * 50`` (mean 0.001, g3 = 0, g4 = 1, so the square root is 1): SR = 0.05 * sqrt(0.99)
    and PSR(0) = Phi(0.05 * sqrt(0.99) * sqrt(99)) = Phi(0.495) = 0.6897. NaN when the Sharpe ratio is undefined.
    """
    m = return_moments(returns)
    se = sharpe_standard_error(m.sharpe, m.n, m.skew, m.kurtosis)
    if not (math.isfinite(se) and math.isfinite(benchmark)) or se <= 0:
        return float("nan")
    return _NORMAL.cdf((m.sharpe - benchmark) / se)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """Expected maximum of ``n_trials`` per-bar Sharpe ratios whose true value is 0, given the variance of the
    trials' estimates (Bailey & López de Prado 2014, eq. 2, from the extreme-value limit of N normals)::

        SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    with gamma the Euler-Mascheroni constant. N = 10, V = 0.0004: 0.02 * (0.42278 * 1.28155 + 0.57722 * 1.78924)
    = 0.03149. One trial selects nothing: 0. NaN when the variance is not a finite number >= 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if not (math.isfinite(variance) and variance >= 0):
        return float("nan")
    if n_trials == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(returns, trial_sharpes, benchmark: float = 0.0) -> float:
    """PSR against the Sharpe ratio that the best of the trials would reach by luck alone (Bailey & López de Prado
    2014, eq. 1): ``DSR = PSR(benchmark + SR0)`` with ``SR0 = expected_max_sharpe(N, V)``, N the number of finite
    ``trial_sharpes`` (per bar, every configuration tried, this one included) and V their variance (ddof=1).

    ``benchmark=0`` is the paper's DSR. A non-zero ``benchmark`` (e.g. buy-and-hold's per-bar Sharpe on the same
    bars) asks the same question against that reference: can the strategy's edge over it be told apart from the
    luck of picking the best of N tries? A DSR >= 0.95 is the paper's "significant at 5 %".
    """
    sharpes = _clean(trial_sharpes)
    if sharpes.size == 0:
        return float("nan")
    variance = float(np.var(sharpes, ddof=1)) if sharpes.size > 1 else 0.0
    return probabilistic_sharpe_ratio(returns, benchmark + expected_max_sharpe(int(sharpes.size), variance))


def default_block_length(n: int) -> int:
    """Block length for the bootstrap: ``round(n ** (1/3))``, at least 1 (4,380 hourly bars -> 16 bars)."""
    return max(1, int(round(n ** (1.0 / 3.0))))


def block_bootstrap_sharpe(returns, *, confidence: float = 0.95, n_boot: int = 1000, block: int | None = None,
                           seed: int = 0, chunk: int = 100) -> tuple[float, float]:
    """Percentile confidence interval ``(low, high)`` of the per-bar Sharpe ratio by circular block bootstrap.

    Bar returns are autocorrelated (positions are held for many bars; volatility clusters), so resampling single
    bars would understate the spread. Each resample glues ``ceil(n / block)`` blocks of ``block`` consecutive
    returns, each starting at a uniformly drawn bar and wrapping around the end (circular, so every bar is equally
    likely to be drawn), cut to ``n`` returns. ``block`` defaults to :func:`default_block_length`. With
    ``confidence=0.95`` the interval runs from the 2.5th to the 97.5th percentile of the ``n_boot`` resampled
    Sharpe ratios. Deterministic for a given ``seed``. (NaN, NaN) with fewer than 3 returns or no spread.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    r = _clean(returns)
    n = int(r.size)
    if n < 3 or not float(np.std(r)) > 0:
        return float("nan"), float("nan")
    block = default_block_length(n) if block is None else int(block)
    if not 1 <= block <= n:
        raise ValueError(f"block must be between 1 and {n} bars, got {block}")
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    offsets = np.arange(block)
    stats = np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        size = min(chunk, n_boot - lo)
        starts = rng.integers(0, n, size=(size, n_blocks))
        idx = ((starts[:, :, None] + offsets) % n).reshape(size, -1)[:, :n]
        sample = r[idx]
        std = sample.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[lo:lo + size] = np.where(std > 0, sample.mean(axis=1) / std, np.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def _block_indices(rng: np.random.Generator, size: int, n: int, block: int) -> np.ndarray:
    """``size`` circular block-bootstrap index rows of length ``n`` (see :func:`block_bootstrap_sharpe`)."""
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(size, n_blocks))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(size, -1)[:, :n]


def _row_sharpes(sample: np.ndarray) -> np.ndarray:
    std = sample.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, sample.mean(axis=1) / std, np.nan)


@dataclass(frozen=True)
class SharpeTest:
    """A bootstrap test of one per-bar Sharpe ratio against a reference, both as estimates.

    - ``sharpe``: the observed per-bar statistic (a Sharpe ratio, or a difference of two);
    - ``low`` / ``high``: its ``confidence`` percentile interval from ``n_boot`` paired circular block resamples;
    - ``p_value``: two-sided, of "the true value is 0", matching the percentile interval (small = the interval
      lies clear of 0; read the side from ``sharpe``); 1.0 for a difference of identical series;
    - ``n``, ``block``, ``n_boot``, ``confidence``, ``seed``: how it was made.
    """

    sharpe: float
    low: float
    high: float
    p_value: float
    n: int
    block: int
    n_boot: int
    confidence: float
    seed: int


def _nan_test(n: int, block: int, n_boot: int, confidence: float, seed: int) -> SharpeTest:
    nan = float("nan")
    return SharpeTest(nan, nan, nan, nan, n, block, n_boot, confidence, seed)


def paired_sharpe_test(returns, reference=None, *, confidence: float = 0.95, n_boot: int = 1000,
                       block: int | None = None, seed: int = 0, chunk: int = 100) -> SharpeTest:
    """Is the per-bar Sharpe ratio of ``returns`` above that of ``reference`` (same bars), treating *both* Sharpe
    ratios as estimates? Without ``reference``: is it above 0 (the flat account)?

    The statistic is ``d = SR(returns) - SR(reference)``. Each of ``n_boot`` resamples draws the *same* circular
    blocks of bars from both series (so their correlation and the autocorrelation within blocks survive; Ledoit
    and Wolf 2008 use the same paired resampling, studentised) and recomputes ``d*``. The interval is the
    percentile interval of ``d*``, and the p-value is the two-sided one that goes with it (the smallest
    ``1 - confidence`` whose percentile interval still excludes 0)::

        p = min(1, 2 * (1 + min(#{d* <= 0}, #{d* >= 0})) / (1 + n_boot))

    so "the difference is positive and p <= 0.05" is exactly "the 95 % interval lies above 0". Identical series
    give d* = 0 in every resample, so p = 1 (no evidence of a difference); a strategy whose returns are the
    reference's plus a steady edge gets a small p. Resamples with no spread in a series are
    dropped. ``block`` defaults to :func:`default_block_length` (n^(1/3) bars). Deterministic for a ``seed``.
    Everything is NaN with fewer than 3 aligned finite bars or when a Sharpe ratio is undefined (no spread).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    a = np.asarray(returns, dtype="float64").ravel()
    b = None if reference is None else np.asarray(reference, dtype="float64").ravel()
    if b is not None and b.size != a.size:
        raise ValueError(f"returns and reference must be aligned bar by bar: {a.size} vs {b.size} values")
    keep = np.isfinite(a) if b is None else np.isfinite(a) & np.isfinite(b)
    a = a[keep]
    b = None if b is None else b[keep]
    n = int(a.size)
    block = default_block_length(n) if block is None else int(block)
    observed = sharpe_ratio(a) - (0.0 if b is None else sharpe_ratio(b))
    if n < 3 or not math.isfinite(observed):
        return _nan_test(n, block, n_boot, confidence, seed)
    if not 1 <= block <= n:
        raise ValueError(f"block must be between 1 and {n} bars, got {block}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        size = min(chunk, n_boot - lo)
        idx = _block_indices(rng, size, n, block)
        d = _row_sharpes(a[idx])
        if b is not None:
            d = d - _row_sharpes(b[idx])
        stats[lo:lo + size] = d
    stats = stats[np.isfinite(stats)]
    if stats.size < 10:
        return _nan_test(n, block, n_boot, confidence, seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    tol = 1e-12 * max(1.0, abs(observed))         # identical series give d* of a few ulps either side of 0
    tail_count = min(int(np.sum(stats <= tol)), int(np.sum(stats >= -tol)))
    p = 2.0 * (1 + tail_count) / (1 + stats.size)
    return SharpeTest(float(observed), float(low), float(high), float(min(p, 1.0)), n, block, n_boot, confidence,
                      seed)


__all__ = ["EULER_GAMMA", "ReturnMoments", "annualised_sharpe", "block_bootstrap_sharpe", "default_block_length",
           "deflated_sharpe_ratio", "expected_max_sharpe", "probabilistic_sharpe_ratio", "return_moments",
           "sharpe_ratio", "sharpe_standard_error", "SharpeTest", "paired_sharpe_test"]
