"""The search space: the ``[search]`` table of a config, checked against the strategy's parameters and the model's.

Each entry names what it changes (``params.<name>`` for a strategy parameter, ``model.<field>`` for a
``ModelConfig`` field) and how it is drawn::

    [search]
    "params.fast"   = { type = "int", low = 5, high = 30, step = 5 }
    "model.hidden"  = { type = "int", low = 16, high = 64, step = 16 }
    "model.cell"    = { choices = ["lstm", "gru"] }
    "model.lr"      = { type = "float", low = 1e-4, high = 1e-2, log = true }

``int``: whole numbers ``low, low + step, ... <= high``; ``float``: any number in ``[low, high]`` (``log = true``
draws uniformly in log space, ``step`` rounds to a grid); ``choices``: one of the listed values (strings,
numbers or booleans, one kind per list). A name the strategy or model does not have, a value of the wrong kind
(``"model.window" = { type = "float", ... }``) or a malformed range is a :class:`ConfigError` naming the entry.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from backtests.config import BacktestConfig, ConfigError

KINDS = ("int", "float", "categorical")
_NUMBER_FIELDS = ("label_cost",)        # model fields whose default (None) does not tell their kind
_ENTRY_KEYS = {"type", "low", "high", "step", "log", "choices"}

DEFAULT_LSTM_SEARCH: dict[str, dict] = {
    "model.window": {"choices": [24, 48, 96]},
    "model.hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
    "model.layers": {"type": "int", "low": 1, "high": 2},
    "model.cell": {"choices": ["lstm", "gru"]},
    "model.horizon": {"choices": [4, 12, 24]},
    "model.lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
    "model.label_cost": {"choices": [0.0012, 0.003, 0.006]},
    "model.tune_threshold": {"choices": [True, False]},
}
"""The search when an LSTM config has no ``[search]`` table: window, size, cell, label horizon, learning rate,
dropout, label cost (the move below which a label is FLAT: the broker's 0.12 % round trip, or wider) and the
threshold policy (tuned on validation, or trade every argmax)."""

DEFAULT_SMA_SEARCH: dict[str, dict] = {
    "params.fast": {"type": "int", "low": 5, "high": 40, "step": 5},
    "params.slow": {"type": "int", "low": 50, "high": 200, "step": 10},
}


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``name`` as in the table (``"model.hidden"``), its ``kind`` and range or choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def section(self) -> str:
        """``"params"`` or ``"model"``."""
        return self.name.split(".", 1)[0]

    @property
    def field(self) -> str:
        """The parameter or model field it sets: ``"hidden"`` for ``"model.hidden"``."""
        return self.name.split(".", 1)[1]

    def suggest(self, trial) -> Any:
        """Draw a value from an Optuna trial (``trial.suggest_*`` under this dimension's name)."""
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def describe(self) -> str:
        """``"int 16..64 step 16"``, ``"float 0.0001..0.01 log"``, ``"one of lstm, gru"``."""
        if self.kind == "categorical":
            return "one of " + ", ".join(str(c) for c in self.choices)
        extra = " log" if self.log else f" step {self.step:g}" if self.step else ""
        return f"{self.kind} {self.low:g}..{self.high:g}{extra}"

    def to_dict(self) -> dict:
        """The table entry that reads back to this dimension."""
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a search, in the table's order."""

    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def suggest(self, trial) -> dict[str, Any]:
        """``{"model.hidden": 32, ...}`` drawn from ``trial``."""
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def to_dict(self) -> dict[str, dict]:
        return {d.name: d.to_dict() for d in self.dimensions}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind_of(value) -> str:
    return "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else \
        "float" if isinstance(value, float) else "str" if isinstance(value, str) else type(value).__name__


def parse_dimension(name: str, entry: Any, where: str = "[search]") -> Dimension:
    """One ``[search]`` entry, checked for shape only (not yet against the strategy)."""
    if not isinstance(name, str) or "." not in name or name.split(".", 1)[0] not in ("params", "model") \
            or not name.split(".", 1)[1]:
        raise ConfigError(f"{where}: {name!r} must be \"params.<name>\" or \"model.<field>\"")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} {name}: expected a table like {{ type = \"int\", low = 1, high = 4 }} or "
                          f"{{ choices = [...] }}, got {entry!r}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where} {name}: unknown key(s) {', '.join(unknown)}; use type, low, high, step, log or "
                          f"choices")
    kind = entry.get("type", "categorical" if "choices" in entry else None)
    if kind not in KINDS:
        raise ConfigError(f"{where} {name}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "categorical":
        choices = entry.get("choices")
        if set(entry) - {"type", "choices"}:
            raise ConfigError(f"{where} {name}: choices take no low/high/step/log")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where} {name}: choices must be a non-empty list, got {choices!r}")
        kinds = {_kind_of(c) for c in choices}
        if not kinds <= {"bool", "int", "float", "str"} or (len(kinds) > 1 and kinds != {"int", "float"}):
            raise ConfigError(f"{where} {name}: choices must all be strings, all numbers or all booleans, "
                              f"got {choices!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{where} {name}: a choice is listed twice in {choices!r}")
        return Dimension(name, "categorical", choices=tuple(choices))
    if "choices" in entry:
        raise ConfigError(f"{where} {name}: give either choices or type = \"{kind}\" with low/high, not both")
    low, high, step, log = entry.get("low"), entry.get("high"), entry.get("step"), entry.get("log", False)
    if not (_is_number(low) and _is_number(high)):
        raise ConfigError(f"{where} {name}: low and high must be numbers, got low={low!r} high={high!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where} {name}: log must be true or false, got {log!r}")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where} {name}: an int range needs whole-number low and high, got {low!r}..{high!r}")
    if not low < high:
        raise ConfigError(f"{where} {name}: low must be below high, got {low!r}..{high!r}")
    if step is not None:
        if not _is_number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise ConfigError(f"{where} {name}: step must be a positive {'whole ' if kind == 'int' else ''}number, "
                              f"got {step!r}")
        if log:
            raise ConfigError(f"{where} {name}: give either step or log = true, not both")
    if log and low <= 0:
        raise ConfigError(f"{where} {name}: log = true needs low > 0, got {low!r}")
    return Dimension(name, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high,
                     step, log)


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _model_field_kinds(cls, config: BacktestConfig) -> dict[str, set[str] | None]:
    """Field of the strategy's model config -> the kinds of value it takes (from its default), e.g.
    ``{"hidden": {"int"}, "lr": {"int", "float"}}``; the model config class is whatever the strategy's
    ``model_config`` returns (a dataclass)."""
    model = cls.model_config(config)
    out: dict[str, set[str] | None] = {}
    for f in dataclasses.fields(type(model)):
        if f.name in _NUMBER_FIELDS:
            out[f.name] = {"int", "float"}
            continue
        default = _field_default(f)
        kind = _kind_of(default)
        out[f.name] = None if default is None else {"int", "float"} if kind == "float" else {kind}
    return out


def _strategy_param_kinds(cls) -> dict[str, set[str] | None]:
    """Tunable parameter -> the kinds of value it takes (None: anything, the default is None)."""
    from strategies.base import TargetPositionStrategy

    names = set(cls.params._getkeys()) - set(TargetPositionStrategy.params._getkeys()) - {"predictor"}
    out: dict[str, set[str] | None] = {}
    for n in sorted(names):
        default = getattr(cls.params, n)
        kind = _kind_of(default)
        out[n] = None if default is None else {"int", "float"} if kind == "float" else {kind}
    return out


def uses_model(cls) -> bool:
    """Whether a strategy class reads a ``[model]`` table (it has a ``model_config`` classmethod)."""
    return callable(getattr(cls, "model_config", None))


def _value_kinds(d: Dimension) -> set[str]:
    if d.kind == "categorical":
        return {_kind_of(c) for c in d.choices}
    return {d.kind}


def check_space(space: SearchSpace, config: BacktestConfig, where: str = "[search]") -> SearchSpace:
    """``space`` if every dimension names a parameter of ``config.strategy`` or a model field (when the strategy
    has a model) and draws values of that field's kind; else a one-line ConfigError."""
    from strategies.registry import get_strategy

    cls = get_strategy(config.strategy)
    params = _strategy_param_kinds(cls)
    model = _model_field_kinds(cls, config) if uses_model(cls) else {}
    for d in space.dimensions:
        if d.section == "model":
            if not model:
                raise ConfigError(f"{where} {d.name}: strategy {config.strategy!r} has no model to tune; search "
                                  f"params.* instead (valid: {', '.join(params) or 'none'})")
            if d.field not in model:
                raise ConfigError(f"{where} {d.name}: the model has no field {d.field!r}; valid: "
                                  f"{', '.join(sorted(model))}")
            allowed = model[d.field]
        else:
            if d.field not in params:
                raise ConfigError(f"{where} {d.name}: strategy {config.strategy!r} has no parameter {d.field!r}; "
                                  f"valid: {', '.join(params) or 'none'}")
            allowed = params[d.field]
        got = _value_kinds(d)
        if allowed is not None and not got <= allowed:
            raise ConfigError(f"{where} {d.name}: takes {' or '.join(sorted(allowed))} values, the search draws "
                              f"{' and '.join(sorted(got))}")
        if d.section == "model":             # the ends of a range and every choice must make a valid model
            for value in (d.choices if d.kind == "categorical" else (d.low, d.high)):
                try:
                    cls.model_config(config.replace(model={**config.model, d.field: value}))
                except ValueError as exc:
                    raise ConfigError(f"{where} {d.name} = {value!r}: {str(exc).strip().splitlines()[0]}") from None
    return space


def parse_space(table: dict, config: BacktestConfig, where: str = "[search]") -> SearchSpace:
    """The ``[search]`` table as a checked :class:`SearchSpace`; an empty table takes the strategy's default."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    if not table:
        table = default_search(config)
    space = SearchSpace(tuple(parse_dimension(name, entry, where) for name, entry in table.items()))
    return check_space(space, config, where)


def default_search(config: BacktestConfig) -> dict[str, dict]:
    """The search used when a config has no ``[search]`` table (LSTM or sma_cross); other strategies must
    declare one."""
    from strategies.registry import get_strategy

    if uses_model(get_strategy(config.strategy)):
        return dict(DEFAULT_LSTM_SEARCH)
    if config.strategy == "sma_cross":
        return dict(DEFAULT_SMA_SEARCH)
    raise ConfigError(f"strategy {config.strategy!r} has no default search space; add a [search] table")


def apply_values(config: BacktestConfig, values: dict[str, Any]) -> BacktestConfig:
    """``config`` with the drawn ``values`` (``{"params.fast": 10, "model.hidden": 32}``) written into its
    ``params`` and ``model`` tables."""
    params, model = dict(config.params), dict(config.model)
    for name, value in values.items():
        section, field = name.split(".", 1)
        (params if section == "params" else model)[field] = value
    return config.replace(params=params, model=model)


__all__ = ["DEFAULT_LSTM_SEARCH", "DEFAULT_SMA_SEARCH", "Dimension", "SearchSpace", "apply_values", "check_space",
           "default_search", "parse_dimension", "parse_space", "uses_model"]
