"""Strategies: the public contract for writing your own, the shipped strategies and the name registry.

Write a strategy by subclassing :class:`TargetPositionStrategy` and returning a :class:`Signal` (or any number in
[-1, 1]) from ``target()``; see ``strategies/examples/`` and the README's "Write your own strategy"::

    from strategies import Signal, TargetPositionStrategy

    class AlwaysLong(TargetPositionStrategy):
        def target(self):
            return Signal.LONG

Run it with ``lstmbt backtest --strategy my_file.py:AlwaysLong`` or ``Backtest(candles, AlwaysLong).run()``.
Names are imported on first use, so ``from strategies import Signal`` does not import Backtrader or torch.
"""

import importlib

from strategies.registry import STRATEGY_NAMES, get_strategy, register_strategy, strategy_names
from strategies.signal import Signal

_LAZY = {
    "TargetPositionStrategy": "strategies.base",
    "position_size": "strategies.base",
    "Prepared": "strategies.contract",
    "ModelRecord": "strategies.contract",
    "LSTMStrategy": "strategies.lstm_strategy",
    "PortfolioStrategy": "strategies.portfolio",
    "StrategyLoadError": "strategies.loader",
    "load_strategy": "strategies.loader",
}

__all__ = sorted(["STRATEGY_NAMES", "Signal", "get_strategy", "register_strategy", "strategy_names", *_LAZY])


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'strategies' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
