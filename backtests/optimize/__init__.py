"""``lstmbt optimize``: a walk-forward hyperparameter search (Optuna) that guards against overfitting.

The search space is a config's ``[search]`` table (:mod:`.space`); each trial is scored out of sample, fold by
fold, over a search span (:mod:`.objective`); the last part of the data is kept back and the winner is run on it
once; the report adds the probability of backtest overfitting, combinatorial purged cross-validation and the
deflated Sharpe ratio (:mod:`.guards`).

>>> from backtests.optimize import load_optimize_spec, run_search
>>> outcome = run_search(load_optimize_spec("my.toml", trials=30, workers=2))     # doctest: +SKIP
>>> outcome.summary["guards"]["pbo"]                                               # doctest: +SKIP
"""

from backtests.optimize.guards import cpcv_selection, cpcv_splits, importances, pbo_cscv
from backtests.optimize.objective import metric_value, parse_objectives, plan_spans
from backtests.optimize.search import SearchOutcome, run_search
from backtests.optimize.space import SearchSpace, parse_space
from backtests.optimize.study import OptimizeSpec, load_optimize_spec, resolve_spec

__all__ = ["OptimizeSpec", "SearchOutcome", "SearchSpace", "cpcv_selection", "cpcv_splits", "importances",
           "load_optimize_spec", "metric_value", "parse_objectives", "parse_space", "pbo_cscv", "plan_spans",
           "resolve_spec", "run_search"]
