"""Typed validation of every config value and flag, before any work starts; warnings for implausible inputs.

The config dataclasses (:mod:`backtests.config`) call :func:`check_fields` first thing in ``__post_init__``, so a
TOML file, a command-line flag, a manifest and the Python API all pass the same checks. Each field is checked
against its type annotation:

- ``float``: a finite number, never a boolean (``leverage = true`` and ``cash = inf`` are refused);
- ``int``: a whole number, never a boolean;
- ``bool``: ``true`` or ``false`` only (``funding = "no"`` is refused, not read as true);
- ``str``: text (``strategy = ["lstm"]`` and ``symbol = 5`` are refused), at most :data:`MAX_TEXT` characters;
- ``tuple[str, ...]``: a list of names; one string is read as a comma-separated list (``baselines = "sma_cross"``);
- ``dict``: a table (``params = 5`` and ``model = "big"`` are refused);
- dates (:data:`DATE_FIELDS`): ``"YYYY-MM-DD"`` text or a TOML date, with the same inclusive end (a TOML date
  ``end = 2024-06-30`` covers that day, like ``"2024-06-30"``); numbers such as ``20240101`` are refused.

Errors are :class:`ConfigError` (a ValueError): the CLI prints them as one line and exits 2. Fields of types not
listed are left to their class's own checks.

>>> check_fields(BrokerConfig(cash=float("inf")))     # doctest: +SKIP
ConfigError: cash must be a finite number, got inf
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import typing
from pathlib import Path
from typing import Any

MAX_TEXT = 200
"""Longest text value accepted (names, paths, symbols are much shorter in practice)."""
MAX_NAME = 100
"""Longest run name (it becomes part of a folder name, slugged and cut to 40 characters)."""
MAX_SYMBOL = 40
DATE_FIELDS = ("start", "end")
FOLDER_FIELDS = ("store_dir", "cache_dir")
"""Fields naming a folder lstmbt reads and writes: refused when they name an existing file."""
MEMORY_SHARE = 0.5
"""A model whose estimated training memory exceeds this share of the machine's RAM is refused before it is built."""


class ConfigError(ValueError):
    """A config file or flag that cannot be used."""


def _hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:           # an annotation that cannot be resolved: nothing to check by type
        return {}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(name: str, value: Any, *, whole: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name} must be {kind}, got {_describe(value)} ({type(value).__name__})")
    if whole and not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value if whole else float(value)


def _text(name: str, value: Any, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {_describe(value)} ({type(value).__name__})")
    if len(value) > limit:
        raise ConfigError(f"{name} is {len(value):,} characters long; at most {limit} are accepted")
    if "\x00" in value:
        raise ConfigError(f"{name} contains a NUL character")
    return value


def check_date(name: str, value: Any) -> str:
    """``"YYYY-MM-DD"`` (or ``"YYYY-MM-DDTHH:MM"``) text from text or a TOML date/datetime, checked by the shared
    parser (:func:`data_feeds.loader.parse_time`); the inclusive-end rule then applies to both spellings alike."""
    from data_feeds.loader import parse_time

    if isinstance(value, dt.datetime):
        value = value.isoformat()
    elif isinstance(value, dt.date):
        value = value.strftime("%Y-%m-%d")
    elif not isinstance(value, str):
        raise ConfigError(f"{name} must be a date such as \"2024-01-01\" (text or a TOML date), got "
                          f"{_describe(value)} ({type(value).__name__})")
    value = _text(name, value, 40).strip()
    try:
        parse_time(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if len(value) < 10 or not (value[:4].isdigit() and value[4] == "-" and value[7] == "-"):
        raise ConfigError(f"{name}: cannot read {_describe(value)} as a date; use YYYY-MM-DD")
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of names such as [\"buy_hold\", \"sma_cross\"], got "
                          f"{_describe(value)}")
    return tuple(_text(name, v) for v in value if v)


def check_value(name: str, kind: Any, value: Any) -> Any:
    """``value`` checked (and normalised) against the annotation ``kind``; raises ConfigError naming ``name``."""
    if name in DATE_FIELDS:
        return check_date(name, value)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return check_value(name, rest[0], value) if len(rest) == 1 else value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {_describe(value)} ({type(value).__name__})")
        return value
    if kind is float:
        return _number(name, value)
    if kind is int:
        return _number(name, value, whole=True)
    if kind is str:
        return _text(name, value)
    if origin is tuple and args and args[0] is str:
        return _names(name, value)
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table (key = value pairs), got {_describe(value)} "
                              f"({type(value).__name__})")
        return value
    return value


def check_fields(obj: Any) -> None:
    """Check and normalise every field of the dataclass instance ``obj`` in place (see the module docstring)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name not in hints:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            continue
        checked = check_value(f.name, hints[f.name], value)
        if f.name in FOLDER_FIELDS and checked is not None:
            check_folder(f.name, checked)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def check_folder(name: str, value: str) -> str:
    """A folder lstmbt will create or use: refused when it names an existing file (or sits under one)."""
    path = Path(value).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{name} {value!r}: {p} is a file, not a folder")
            break
    return value


def check_name(value: str) -> str:
    """A run name: text of at most :data:`MAX_NAME` characters (it is slugged where it becomes a path)."""
    return _text("name", value, MAX_NAME)


def check_symbol_field(value: str) -> str:
    """A ccxt unified symbol of at most :data:`MAX_SYMBOL` characters."""
    from data_feeds.symbols import check_symbol

    _text("symbol", value, MAX_SYMBOL)
    try:
        return check_symbol(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# ---------------------------------------------------------------- model size before allocation

def total_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_model_bytes(model: dict, n_inputs: int = 16) -> int:
    """Rough training memory of a recurrent model from its ``[model]`` table: float32 weights, gradients and two
    Adam moments (4 copies of 4 x layers x hidden x (hidden + inputs + 2) parameters) plus the activations of one
    batch (batch x window x hidden x layers x 8 gate values). ``hidden=32``: a few MB; ``hidden=1e6``: terabytes."""
    def whole(key, default):
        value = model.get(key, default)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and value > 0 else default
    hidden, layers = whole("hidden", 32), whole("layers", 1)
    window, batch = whole("window", 48), whole("batch_size", 256)
    params = 4 * layers * hidden * (hidden + n_inputs + 2) + 3 * hidden
    return int(4 * 4 * params + 4 * 8 * batch * window * hidden * layers)


def check_model_size(model: dict, where: str = "[model]") -> None:
    """Refuse a model whose estimated training memory exceeds :data:`MEMORY_SHARE` of this machine's RAM."""
    total = total_memory_bytes()
    if not total or not isinstance(model, dict):
        return
    need = estimate_model_bytes(model)
    if need > MEMORY_SHARE * total:
        shown = ", ".join(f"{k}={model[k]}" for k in ("hidden", "layers", "window", "batch_size") if k in model)
        raise ConfigError(f"{where} {shown}: training would need about {need / 2**30:,.1f} GiB, more than "
                          f"{MEMORY_SHARE:.0%} of this machine's {total / 2**30:,.1f} GiB; use a smaller model")


# ---------------------------------------------------------------- warnings: accepted but implausible

FEE_WARN = 0.01
"""A fee of 1 % of notional or more per fill is accepted with a warning (Binance charges 0.02-0.05 %)."""
FUNDING_WARN = 0.01
"""A funding rate above 1 % per settlement (in absolute value) is accepted with a warning (Binance caps most
perpetuals at 0.3-2 % per interval; typical rates are 0.01 %)."""
PRICE_RATIO_WARN = 10.0
"""A close-to-close move by more than 10x (up or down) in one bar is accepted with a warning."""


def config_warnings(broker) -> list[str]:
    """Warnings for broker settings that are legal but implausible (fees of 1 % or more)."""
    out = []
    for name in ("taker_fee", "maker_fee"):
        value = getattr(broker, name, 0.0)
        if value >= FEE_WARN:
            out.append(f"{name} = {value} is {value:.2%} of notional per fill (Binance: 0.02-0.05 %); "
                       f"fees are fractions, 0.0005 = 0.05 %")
    return out


def market_warnings(candles, funding) -> list[str]:
    """Warnings for data that is valid but implausible: funding beyond 1 % per settlement, a bar-to-bar price
    ratio above 10."""
    import numpy as np

    out = []
    if funding is not None and len(funding) and "funding_rate" in funding:
        rates = funding["funding_rate"].to_numpy("float64")
        big = np.abs(rates) > FUNDING_WARN
        if big.any():
            at = funding.index[np.argmax(big)]
            out.append(f"{int(big.sum())} funding rate(s) beyond ±{FUNDING_WARN:.0%} per settlement, the first "
                       f"{rates[big][0]:g} at {at}; rates are fractions, 0.0001 = 0.01 %")
    if candles is not None and len(candles) > 1 and "close" in candles:
        close = candles["close"].to_numpy("float64")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = np.maximum(close[1:] / close[:-1], close[:-1] / close[1:])
        big = ~(ratio <= PRICE_RATIO_WARN)
        if big.any():
            i = int(np.argmax(big)) + 1
            out.append(f"{int(big.sum())} bar(s) where the close moves more than {PRICE_RATIO_WARN:g}x from the "
                       f"previous bar, the first at {candles.index[i]} ({close[i - 1]:g} -> {close[i]:g}); "
                       f"check the data")
    return out


__all__ = ["ConfigError", "check_date", "check_fields", "check_folder", "check_model_size", "check_name",
           "check_symbol_field", "check_value", "config_warnings", "estimate_model_bytes", "market_warnings"]
