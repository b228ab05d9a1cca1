"""Strategies: the target-position base class, the LSTM strategy, baselines and the name registry."""

from strategies.registry import STRATEGY_NAMES, get_strategy
from strategies.signal import Signal

__all__ = ["STRATEGY_NAMES", "Signal", "get_strategy"]
