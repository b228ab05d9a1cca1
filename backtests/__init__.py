"""Backtests: configs, the engine that runs Cerebro, the futures broker, and the CLI.

>>> from backtests import BacktestConfig, run_backtest
>>> result = run_backtest(BacktestConfig(strategy="sma_cross"))     # doctest: +SKIP
"""

from backtests.broker import BrokerConfig
from backtests.config import BacktestConfig, DataConfig, load_config
from backtests.engine import run_backtest
from backtests.result import BacktestResult

__all__ = ["BacktestConfig", "BacktestResult", "BrokerConfig", "DataConfig", "load_config", "run_backtest"]
