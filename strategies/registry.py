"""Names used on the command line and in configs, mapped to strategy classes.

Built-in names map to ``module:Class`` text, so classes are imported on first use (running a baseline never
imports torch). :func:`register_strategy` adds a user's own name for this process. :func:`get_strategy` also takes
a spec, ``path/to/file.py:Class`` or ``pkg.mod:Class`` (see :mod:`strategies.loader`).
"""

from __future__ import annotations

import difflib
import importlib
import re

from strategies.loader import StrategyLoadError, canonical_spec, is_spec, load_strategy, spec_of

_REGISTRY: dict[str, object] = {
    "lstm": "strategies.lstm_strategy:LSTMStrategy",
    "gru": "strategies.lstm_strategy:GRUStrategy",
    "transformer": "strategies.lstm_strategy:TransformerStrategy",
    "logreg": "strategies.lstm_strategy:LogRegStrategy",
    "gbm": "strategies.lstm_strategy:GBMStrategy",
    "buy_hold": "strategies.baselines:BuyAndHold",
    "sma_cross": "strategies.baselines:SmaCross",
    "flat": "strategies.baselines:Flat",
    "lstm_portfolio": "strategies.portfolio:LSTMPortfolio",
}
STRATEGY_NAMES = tuple(_REGISTRY)
"""The built-in strategy names (see :func:`strategy_names` for every name registered in this process)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


def strategy_names() -> tuple[str, ...]:
    """Every registered name, built-in ones first."""
    return tuple(_REGISTRY)


def register_strategy(name: str, strategy) -> None:
    """Make ``name`` mean ``strategy`` (a TargetPositionStrategy subclass, or a ``file.py:Class`` /
    ``pkg.mod:Class`` spec) in this process: ``register_strategy("rsi", RsiLongShort)`` then
    ``BacktestConfig(strategy="rsi")``. Built-in names cannot be replaced. A name registered here is not known in
    ``compare`` worker processes: compare a spec (``my_rsi.py:RsiLongShort``) there instead."""
    from strategies.base import TargetPositionStrategy

    if not isinstance(name, str) or not _NAME.match(name) or ":" in name or name.endswith(".py"):
        raise ValueError(f"strategy name {name!r}: use letters, digits, '_', '.', '-' (no ':' and no '.py')")
    if name in STRATEGY_NAMES:
        raise ValueError(f"{name!r} is a built-in strategy; register yours under another name")
    if isinstance(strategy, str):
        load_strategy(strategy)                     # fail now, not at the first backtest
    elif not (isinstance(strategy, type) and issubclass(strategy, TargetPositionStrategy)):
        raise ValueError(f"register_strategy({name!r}, ...) needs a TargetPositionStrategy subclass or a "
                         f"'file.py:Class' spec, got {strategy!r}")
    _REGISTRY[name] = strategy


def get_strategy(name: str):
    """The class registered under ``name``, or the class a ``file.py:Class`` / ``pkg.mod:Class`` spec names.
    An unknown name raises with a "did you mean" hint; a spec that cannot be loaded raises StrategyLoadError."""
    if not isinstance(name, str) or not name:
        raise UnknownStrategyError(f"strategy must be a name or 'file.py:Class', got {name!r}")
    if name not in _REGISTRY and is_spec(name):
        return load_strategy(name)
    if name not in _REGISTRY:
        folded = {key.lower(): key for key in _REGISTRY}           # "LSTM" suggests "lstm": case is ignored
        close = [folded[name.lower()]] if name.lower() in folded else [
            folded[c] for c in difflib.get_close_matches(name.lower(), folded, n=1)]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownStrategyError(f"unknown strategy {name!r}{hint} (available: {', '.join(_REGISTRY)}; "
                                   f"or your own as path/to/file.py:ClassName)")
    target = _REGISTRY[name]
    if not isinstance(target, str):
        return target
    if name not in STRATEGY_NAMES:
        return load_strategy(target)
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def names_class(name, cls) -> bool:
    """Whether ``name`` (a registered name or a spec) means ``cls``, without importing anything."""
    target = _REGISTRY.get(name, name)
    if not isinstance(target, str):
        return target is cls
    return canonical_spec(target) in (spec_of(cls), f"{cls.__module__}:{cls.__qualname__}")


def portable_spec(name: str) -> str:
    """What another process can resolve for ``name``: a built-in name or a spec as is; a name registered in this
    process (:func:`register_strategy`) as its spec (``/abs/file.py:Class`` or ``module:Class``), since worker
    processes start with only the built-in names."""
    target = _REGISTRY.get(name)
    if target is None or name in STRATEGY_NAMES:
        return name
    return target if isinstance(target, str) else spec_of(target)


__all__ = ["STRATEGY_NAMES", "names_class", "portable_spec", "StrategyLoadError", "UnknownStrategyError", "get_strategy", "register_strategy",
           "strategy_names"]
