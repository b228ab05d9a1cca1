"""The verdict on one backtest: did the strategy beat buy-and-hold, and staying flat, with confidence?

One pure function, :func:`verdict`, used by the backtest report (``report.html``, ``metrics.json``, the terminal)
and by ``lstmbt compare``, so the same cell gets the same answer in both. It takes the strategy's and buy-and-hold's
bar returns on the same bars and reports, in annualised Sharpe units:

- the strategy's Sharpe ratio with its block-bootstrap interval, and its PSR against zero;
- buy-and-hold's Sharpe ratio with its interval;
- the paired test against buy-and-hold (:func:`reports.statistics.paired_sharpe_test`): the difference of the two
  Sharpe ratios, its interval and its two-sided p-value, both Sharpe ratios treated as estimates;
- the test against flat (a Sharpe ratio of 0 exactly, since flat never moves): the bootstrap p-value of the
  strategy's Sharpe ratio being 0;
- one sentence a trader can read, e.g. "did not beat buy-and-hold with confidence (Sharpe 1.30 vs 0.55, p = 0.21)".

"With confidence" means the difference is positive and its p-value at most ``1 - confidence`` (0.05 by default),
which is the same as its ``confidence`` bootstrap interval lying above 0: the sentence never contradicts the
interval printed next to it. ``risk_free`` (an annual rate,
0.04 = 4 %) is taken out of both return series first, compounded per bar over a 24/7 year.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from data_feeds.timeframes import bars_per_year
from reports.statistics import (annualised_sharpe, block_bootstrap_sharpe, paired_sharpe_test,
                                probabilistic_sharpe_ratio, sharpe_ratio)

CONFIDENT, LUCK, NO, NA = "yes, with confidence", "only by luck", "no", "n/a"
"""Labels of the "beats buy-and-hold" answer: confident; higher Sharpe but not confidently; not higher; undefined."""


@dataclass(frozen=True)
class Verdict:
    """See the module docstring; Sharpe figures annualised, p-values two-sided (with the interval), NaN where
    undefined."""

    sharpe: float
    sharpe_low: float
    sharpe_high: float
    psr_vs_0: float
    p_vs_flat: float
    bh_sharpe: float
    bh_sharpe_low: float
    bh_sharpe_high: float
    diff: float
    diff_low: float
    diff_high: float
    p_vs_bh: float
    beats_bh: str
    beats_flat: str
    sentence: str
    confidence: float
    n_boot: int
    block: int
    seed: int
    risk_free: float
    bars: int

    def as_dict(self) -> dict:
        """Plain data for metrics.json (NaN stays NaN here; the JSON writer makes it null)."""
        return asdict(self)


def excess_returns(returns, risk_free: float, timeframe: str) -> np.ndarray:
    """Bar returns minus the risk-free rate per bar, ``(1 + rf) ** (1 / P) - 1`` with ``P = bars_per_year``:
    4 % a year is 0.000448 % per hourly bar."""
    r = np.asarray(returns, dtype="float64")
    if not risk_free:
        return r
    if not (math.isfinite(risk_free) and risk_free > -1):
        raise ValueError(f"risk-free rate must be an annual fraction above -1 (0.04 = 4 %), got {risk_free!r}")
    return r - ((1.0 + risk_free) ** (1.0 / bars_per_year(timeframe)) - 1.0)


def _label(diff: float, p: float, alpha: float) -> str:
    if not (math.isfinite(diff) and math.isfinite(p)):
        return NA
    if diff <= 0:
        return NO
    return CONFIDENT if p <= alpha else LUCK


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.2f}" if p >= 0.01 else f"{p:.3f}"


def _sentence(v: dict, alpha: float) -> str:
    if not math.isfinite(v["sharpe"]):
        return "no verdict: the strategy's equity never moved (no Sharpe ratio; it stayed flat)"
    vs = f"Sharpe {v['sharpe']:.2f} vs {v['bh_sharpe']:.2f}" if math.isfinite(v["bh_sharpe"]) else ""
    if v["beats_bh"] == CONFIDENT:
        bh = f"beat buy-and-hold with confidence ({vs}, p = {_p(v['p_vs_bh'])})"
    elif v["beats_bh"] == NA:
        bh = "could not be compared with buy-and-hold (its Sharpe ratio is undefined)"
    else:
        bh = f"did not beat buy-and-hold with confidence ({vs}, p = {_p(v['p_vs_bh'])})"
    flat = (f"made money with confidence against staying flat (p = {_p(v['p_vs_flat'])})"
            if v["beats_flat"] == CONFIDENT else
            f"did not beat staying flat with confidence (p = {_p(v['p_vs_flat'])})")
    return f"{bh}; {flat}"


def verdict(returns, bh_returns, timeframe: str, *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0,
            risk_free: float = 0.0) -> Verdict:
    """The verdict on ``returns`` (the strategy's bar returns) against ``bh_returns`` (buy-and-hold's on the same
    bars) and against flat; see the module docstring. Deterministic for a ``seed``."""
    r = excess_returns(returns, risk_free, timeframe)
    bh = excess_returns(bh_returns, risk_free, timeframe)
    if r.size != bh.size:
        raise ValueError(f"strategy and buy-and-hold returns must cover the same bars: {r.size} vs {bh.size}")
    alpha = 1.0 - confidence
    ann = lambda x: annualised_sharpe(x, timeframe)  # noqa: E731
    low, high = block_bootstrap_sharpe(r, confidence=confidence, n_boot=n_boot, seed=seed)
    bh_low, bh_high = block_bootstrap_sharpe(bh, confidence=confidence, n_boot=n_boot, seed=seed)
    paired = paired_sharpe_test(r, bh, confidence=confidence, n_boot=n_boot, seed=seed)
    alone = paired_sharpe_test(r, None, confidence=confidence, n_boot=n_boot, seed=seed)
    v = {"sharpe": ann(sharpe_ratio(r)), "sharpe_low": ann(low), "sharpe_high": ann(high),
         "psr_vs_0": probabilistic_sharpe_ratio(r, 0.0), "p_vs_flat": alone.p_value,
         "bh_sharpe": ann(sharpe_ratio(bh)), "bh_sharpe_low": ann(bh_low), "bh_sharpe_high": ann(bh_high),
         "diff": ann(paired.sharpe), "diff_low": ann(paired.low), "diff_high": ann(paired.high),
         "p_vs_bh": paired.p_value}
    v["beats_bh"] = _label(v["diff"], v["p_vs_bh"], alpha)
    v["beats_flat"] = _label(v["sharpe"], v["p_vs_flat"], alpha)
    v["sentence"] = _sentence(v, alpha)
    return Verdict(**v, confidence=confidence, n_boot=n_boot, block=paired.block, seed=seed,
                   risk_free=float(risk_free), bars=int(r.size))


__all__ = ["CONFIDENT", "LUCK", "NA", "NO", "Verdict", "excess_returns", "verdict"]
