"""Guards against fooling yourself with a search: pure functions of out-of-sample bar returns, no I/O.

- :func:`cpcv_splits` / :func:`cpcv_selection`: combinatorial purged cross-validation (López de Prado 2018,
  "Advances in Financial Machine Learning", ch. 7 and 12). The bars are cut into ``N`` contiguous groups; each
  of the ``C(N, k)`` splits tests on ``k`` groups and "trains" on the rest, minus the ``purge`` bars just before
  each test group (their outcome overlaps the test group's) and the ``embargo`` bars just after it (serial
  correlation leaks back). Here "training" is the selection of the search: among the best candidates, the one
  with the highest Sharpe ratio on the training bars is picked and its Sharpe ratio on the test bars is what
  the selection really delivers. The ``C(N-1, k-1)`` backtest paths glue each group's test returns into full
  out-of-sample histories.
- :func:`pbo_cscv`: the probability of backtest overfitting by combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado and Zhu 2015, "The probability of backtest overfitting", J. of Computational
  Finance 20(4)): the trial matrix (bars x trials) is cut into ``S`` slices; for every half of them as
  in-sample, the in-sample best trial's out-of-sample relative rank ``w`` gives a logit ``ln(w / (1 - w))``;
  PBO is the share of logits <= 0 (the chosen trial is no better than the median trial out of sample).
- :func:`importances`: how much of the objective's spread each parameter explains (correlation ratio).

Sharpe ratios are per bar (``mean / std(ddof=1)``), as in :mod:`reports.statistics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd


# ---------------------------------------------------------------- combinatorial purged cross-validation

@dataclass(frozen=True)
class Split:
    """One CPCV split: the test ``groups`` and bar positions of ``train`` (purged, embargoed) and ``test``."""

    groups: tuple[int, ...]
    train: np.ndarray
    test: np.ndarray


def group_bounds(n_bars: int, n_groups: int) -> list[tuple[int, int]]:
    """Half-open ``(first, stop)`` bar positions of ``n_groups`` contiguous groups as equal as possible
    (the first ``n_bars % n_groups`` groups get one bar more): 10 bars, 3 groups -> (0, 4), (4, 7), (7, 10)."""
    if n_groups < 2 or n_bars < n_groups:
        raise ValueError(f"need at least 2 groups and a bar per group, got {n_groups} groups for {n_bars} bars")
    sizes = np.full(n_groups, n_bars // n_groups)
    sizes[: n_bars % n_groups] += 1
    stops = np.cumsum(sizes)
    return [(int(s - z), int(s)) for s, z in zip(stops, sizes)]


def cpcv_splits(n_bars: int, n_groups: int, n_test_groups: int, *, purge: int = 0, embargo: int = 0) -> list[Split]:
    """Every split of CPCV(N=``n_groups``, k=``n_test_groups``), in ``itertools.combinations`` order.

    Training bars exclude the test bars, the ``purge`` bars before each test group's first bar and the
    ``embargo`` bars after its last bar. 12 bars, 4 groups of 3, k=1, purge 1, embargo 2: testing group 1
    (bars 3-5) trains on bars 0, 1 and 8-11 (bar 2 purged, bars 6-7 embargoed).
    """
    if not 1 <= n_test_groups < n_groups:
        raise ValueError(f"test groups must be between 1 and {n_groups - 1}, got {n_test_groups}")
    if purge < 0 or embargo < 0:
        raise ValueError(f"purge and embargo are bar counts >= 0, got {purge} and {embargo}")
    bounds = group_bounds(n_bars, n_groups)
    out = []
    for groups in combinations(range(n_groups), n_test_groups):
        test_mask = np.zeros(n_bars, dtype=bool)
        dropped = np.zeros(n_bars, dtype=bool)
        for g in groups:
            a, b = bounds[g]
            test_mask[a:b] = True
            dropped[max(a - purge, 0):a] = True
            dropped[b:min(b + embargo, n_bars)] = True
        out.append(Split(groups, np.flatnonzero(~test_mask & ~dropped), np.flatnonzero(test_mask)))
    return out


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """``(paths, n_groups)`` split numbers: path p takes group g's test returns from the p-th split (in
    combination order) that tests g. There are ``C(N-1, k-1)`` paths: N=6, k=2 gives 5."""
    splits = list(combinations(range(n_groups), n_test_groups))
    n_paths = math.comb(n_groups - 1, n_test_groups - 1)
    table = np.empty((n_paths, n_groups), dtype=np.int64)
    for g in range(n_groups):
        table[:, g] = [i for i, s in enumerate(splits) if g in s]
    return table


def _sharpes(returns: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe of each column of ``returns`` (bars x candidates); NaN where there is no spread."""
    if returns.shape[0] < 2:
        return np.full(returns.shape[1], np.nan)
    std = returns.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, returns.mean(axis=0) / std, np.nan)


def _argmax(values: np.ndarray) -> int:
    """Index of the largest finite value (the first on ties); 0 when none is finite."""
    finite = np.where(np.isfinite(values), values, -np.inf)
    return int(np.argmax(finite))


@dataclass(frozen=True)
class CPCVResult:
    """CPCV of a selection among candidates (per-bar Sharpe ratios).

    ``train_sharpes`` / ``test_sharpes``: (splits, candidates); ``selected``: (splits,) the candidate with the best
    training Sharpe in each split; ``selected_test``: (splits,) its test Sharpe; ``path_sharpes``: (paths,) Sharpe
    of each backtest path of the selection's test returns.
    """

    splits: list[Split]
    train_sharpes: np.ndarray
    test_sharpes: np.ndarray
    selected: np.ndarray
    selected_test: np.ndarray
    path_sharpes: np.ndarray
    n_groups: int
    n_test_groups: int
    purge: int
    embargo: int


def cpcv_selection(returns: np.ndarray, n_groups: int = 6, n_test_groups: int = 2, *, purge: int = 0,
                   embargo: int = 0) -> CPCVResult:
    """CPCV over ``returns`` (bars x candidates, out-of-sample bar returns of each candidate on the same bars):
    see the module docstring. NaN returns count as 0 (flat)."""
    r = np.nan_to_num(np.asarray(returns, dtype="float64"))
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError("returns must be a (bars, candidates) matrix with at least one candidate")
    splits = cpcv_splits(r.shape[0], n_groups, n_test_groups, purge=purge, embargo=embargo)
    train = np.array([_sharpes(r[s.train]) for s in splits])
    test = np.array([_sharpes(r[s.test]) for s in splits])
    selected = np.array([_argmax(row) for row in train], dtype=np.int64)
    selected_test = test[np.arange(len(splits)), selected]
    bounds = group_bounds(r.shape[0], n_groups)
    paths = cpcv_paths(n_groups, n_test_groups)
    path_sharpes = np.array([
        _sharpes(np.concatenate([r[bounds[g][0]:bounds[g][1], selected[split]] for g, split in enumerate(row)])
                 [:, None])[0]
        for row in paths])
    return CPCVResult(splits, train, test, selected, selected_test, path_sharpes, n_groups, n_test_groups, purge,
                      embargo)


# ---------------------------------------------------------------- probability of backtest overfitting

@dataclass(frozen=True)
class PBOResult:
    """CSCV over a trial matrix: ``pbo`` (share of ``logits`` <= 0), one logit per combination of in-sample
    slices, the in-sample best trial and its in-sample / out-of-sample per-bar Sharpe per combination, and
    ``prob_loss``: the share of combinations whose chosen trial lost money out of sample (Sharpe < 0)."""

    pbo: float
    logits: np.ndarray
    best: np.ndarray
    is_sharpe: np.ndarray
    oos_sharpe: np.ndarray
    prob_loss: float
    n_slices: int
    n_trials: int
    n_bars: int


def pbo_cscv(matrix, n_slices: int = 16) -> PBOResult:
    """PBO of choosing the best column of ``matrix`` (bars x trials of out-of-sample bar returns) by Sharpe.

    The rows are cut into ``n_slices`` (even) contiguous slices of equal length (the earliest ``bars % S`` rows are
    dropped). For each of the ``C(S, S/2)`` ways to pick half the slices as in-sample: ``n*`` = the trial with the
    best in-sample Sharpe; ``w`` = its out-of-sample rank among the N trials (1 = worst, ties share the average
    rank) divided by N + 1; logit = ln(w / (1 - w)). Two trials, two slices: one combination picks the trial
    that is worst on the other half, so its logit is ln((1/3) / (2/3)) = -0.693 and PBO counts it.
    """
    m = np.nan_to_num(np.asarray(matrix, dtype="float64"))
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a (bars, trials) matrix with at least 2 trials")
    if n_slices < 2 or n_slices % 2:
        raise ValueError(f"the number of slices must be even and >= 2, got {n_slices}")
    size = m.shape[0] // n_slices
    if size < 2:
        raise ValueError(f"{m.shape[0]} bars cannot make {n_slices} slices of at least 2 bars")
    m = m[m.shape[0] - size * n_slices:]
    blocks = m.reshape(n_slices, size, m.shape[1])
    sums, squares = blocks.sum(axis=1), (blocks ** 2).sum(axis=1)          # (S, N)
    combos = np.array(list(combinations(range(n_slices), n_slices // 2)))
    chosen = np.zeros((len(combos), n_slices))
    chosen[np.arange(len(combos))[:, None], combos] = 1.0
    n_half = size * n_slices // 2

    def sharpe(mask):
        s, q = mask @ sums, mask @ squares
        mean = s / n_half
        var = (q - n_half * mean ** 2) / (n_half - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var > 1e-30, mean / np.sqrt(np.maximum(var, 0)), np.nan)

    is_s, oos_s = sharpe(chosen), sharpe(1.0 - chosen)                   # (C, N)
    best = np.array([_argmax(row) for row in is_s], dtype=np.int64)
    rows = np.arange(len(combos))
    oos_best = oos_s[rows, best]
    oos_filled = np.nan_to_num(oos_s, nan=-np.inf)
    target = np.nan_to_num(oos_best, nan=-np.inf)[:, None]
    below = (oos_filled < target).sum(axis=1)
    ties = (oos_filled == target).sum(axis=1) - 1
    rank = below + 1 + ties / 2.0
    w = rank / (m.shape[1] + 1)
    logits = np.log(w / (1 - w))
    return PBOResult(float(np.mean(logits <= 0)), logits, best, is_s[rows, best], oos_best,
                     float(np.mean(np.nan_to_num(oos_best) < 0)), n_slices, int(m.shape[1]), int(m.shape[0]))


def default_slices(n_bars: int, wanted: int = 16) -> int:
    """The largest even slice count <= ``wanted`` that leaves at least 10 bars per slice (at least 2)."""
    s = min(wanted, n_bars // 10)
    s -= s % 2
    return max(s, 2)


# ---------------------------------------------------------------- parameter importances

def importances(params: pd.DataFrame, values) -> pd.Series:
    """Share of the objective's variance each parameter explains on its own (correlation ratio, eta squared),
    normalised to sum to 1, largest first.

    Numbers are cut into up to 5 quantile bins, other values are their own groups: eta^2 = between-group sum
    of squares / total sum of squares. A parameter whose groups all have the same mean explains 0; one that
    fixes the objective explains all of it. Parameters with one value only are left out.
    """
    y = np.asarray(values, dtype="float64")
    keep = np.isfinite(y)
    y = y[keep]
    out = {}
    total = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    for name in params.columns:
        col = params[name][keep].reset_index(drop=True)
        if col.nunique(dropna=False) < 2 or total <= 0:
            continue
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        groups = pd.qcut(col, q=min(5, col.nunique()), duplicates="drop") if numeric and col.nunique() > 5 \
            else col.astype(str)
        frame = pd.DataFrame({"g": groups, "y": y})
        stats = frame.groupby("g", observed=True)["y"].agg(["mean", "size"])
        between = float((stats["size"] * (stats["mean"] - y.mean()) ** 2).sum())
        out[name] = between / total
    s = pd.Series(out, dtype="float64")
    if s.sum() > 0:
        s = s / s.sum()
    return s.sort_values(ascending=False)


__all__ = ["CPCVResult", "PBOResult", "Split", "cpcv_paths", "cpcv_selection", "cpcv_splits", "default_slices",
           "group_bounds", "importances", "pbo_cscv"]
