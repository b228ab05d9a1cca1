"""Backtests: configs, the engine that runs Cerebro, the futures broker, and the CLI.

>>> from backtests import Backtest, BacktestConfig, BrokerConfig, run_backtest
>>> result = run_backtest(BacktestConfig(strategy="sma_cross"))     # doctest: +SKIP
>>> run = Backtest(candles, MyStrategy, broker=BrokerConfig(leverage=3)).run()   # doctest: +SKIP
>>> run.metrics["Sharpe"], run.report("runs/mine")                  # doctest: +SKIP

Names are imported on first use, so ``from backtests.result import BacktestResult`` (what reports and
notebooks need) never imports Backtrader.
"""

import importlib

_EXPORTS = {
    "Backtest": "backtests.api",
    "BacktestRun": "backtests.api",
    "BacktestConfig": "backtests.config",
    "DataConfig": "backtests.config",
    "load_config": "backtests.config",
    "BrokerConfig": "backtests.config",
    "run_backtest": "backtests.engine",
    "BacktestResult": "backtests.result",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'backtests' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
