"""Names used on the command line and in configs, mapped to strategy classes.

Classes are imported on first use, so running a baseline never imports torch.
"""

from __future__ import annotations

import difflib
import importlib

_REGISTRY = {
    "lstm": "strategies.lstm_strategy:LSTMStrategy",
    "buy_hold": "strategies.baselines:BuyAndHold",
    "sma_cross": "strategies.baselines:SmaCross",
    "flat": "strategies.baselines:Flat",
}
STRATEGY_NAMES = tuple(_REGISTRY)


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


def get_strategy(name: str):
    """The class registered under ``name``; an unknown name raises with a "did you mean" hint."""
    if name not in _REGISTRY:
        folded = {key.lower(): key for key in _REGISTRY}           # "LSTM" suggests "lstm": case is ignored
        close = [folded[name.lower()]] if name.lower() in folded else [
            folded[c] for c in difflib.get_close_matches(name.lower(), folded, n=1)]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownStrategyError(f"unknown strategy {name!r}{hint} (available: {', '.join(_REGISTRY)})")
    module, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
