"""Model kinds: the shipped models by name, and a user's model class from ``file.py:Class`` or ``pkg.mod:Class``.

>>> model_class("logreg").__name__
'LogisticRegressionModel'

A user file is imported under a private module name (it never shadows a package) and checked against the
protocol; every problem (missing file, import error, no such class, not a model) is one :class:`ModelError`
line naming the file. An exception raised while importing the user's file keeps its traceback as the cause.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from strategies.ml.errors import ConfigError
from strategies.ml.protocol import INPUT_KINDS

BUILTIN = {
    "lstm": "strategies.lstm.networks:RecurrentModel",
    "gru": "strategies.lstm.networks:RecurrentModel",
    "lstm_stateful": "strategies.lstm.stateful:StatefulRecurrentModel",
    "gru_stateful": "strategies.lstm.stateful:StatefulRecurrentModel",
    "transformer": "strategies.lstm.networks:TransformerModel",
    "logreg": "strategies.ml.logreg:LogisticRegressionModel",
    "gbm": "strategies.ml.gbm:GradientBoostingModel",          # optional extra: LightGBM
}
REQUIRED = ("fit", "predict_proba", "state", "from_state")


class ModelError(ConfigError):
    """A model kind that cannot be used: unknown name, missing file, import error, not a model class."""


def split_kind(kind: str) -> tuple[str, str]:
    """``"a/b.py:Cls"`` -> (``"a/b.py"``, ``"Cls"``); raises ModelError without exactly one class name."""
    where, sep, name = kind.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ModelError(f"model kind {kind!r}: write 'path/to/file.py:ClassName' or 'package.module:ClassName'")
    return where, name


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def source_file(kind: str) -> Path | None:
    """The user's ``.py`` file behind ``kind`` (resolved), or None for a shipped or importable-module kind."""
    if kind in BUILTIN:
        return None
    where, _ = split_kind(kind)
    return Path(where).expanduser().resolve() if _is_file(where) else None


def source_sha256(kind: str) -> str | None:
    """sha256 of the user's model file (None for shipped kinds and module kinds); changes retrain the model."""
    path = source_file(kind)
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"model file {path}: cannot read it ({exc.strerror or exc})") from exc


_LOADED: dict[tuple[Path, str], object] = {}      # (file, its sha256) -> module: one import per file version


def _load_file(path: Path, kind: str):
    if not path.is_file():
        raise ModelError(f"model file {path} not found (model kind {kind!r})")
    digest = source_sha256(kind)
    if (path, digest) in _LOADED:
        return _LOADED[path, digest]
    name = "lstmbt_user_model_" + hashlib.sha256(f"{path}|{digest}".encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"model file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelError(f"model file {path}: import failed: {exc.__class__.__name__}: {exc}") from exc
    _LOADED[path, digest] = module
    return module


def _load_module(where: str, kind: str):
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise ModelError(f"model module {where!r} not found (model kind {kind!r}); give an importable "
                             f"module or a path to a .py file") from exc
        raise ModelError(f"model module {where}: import failed: {exc.__class__.__name__}: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"model module {where}: import failed: {exc.__class__.__name__}: {exc}") from exc


def check_model_class(cls, origin: str) -> type:
    """``cls`` when it is a class implementing the protocol (methods and a valid ``input_kind``), else ModelError."""
    if not inspect.isclass(cls):
        raise ModelError(f"{origin}: {getattr(cls, '__name__', cls)!r} is not a class")
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise ModelError(f"{origin}: {cls.__name__} is not a model: it lacks {', '.join(missing)} "
                         f"(see strategies.ml.protocol.Model)")
    if getattr(cls, "input_kind", None) not in INPUT_KINDS:
        raise ModelError(f"{origin}: {cls.__name__}.input_kind must be one of {', '.join(map(repr, INPUT_KINDS))}, "
                         f"got {getattr(cls, 'input_kind', None)!r}")
    if cls.input_kind == "sequence" and not callable(getattr(cls, "predict_sequence", None)):
        raise ModelError(f"{origin}: {cls.__name__} has input_kind 'sequence' but no predict_sequence(x, state) "
                         f"(see strategies.ml.protocol)")
    return cls


def model_class(kind: str) -> type:
    """The class implementing model ``kind`` (a shipped name, ``file.py:Class`` or ``pkg.mod:Class``)."""
    if kind in BUILTIN:
        module, _, attr = BUILTIN[kind].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        requires = getattr(cls, "requires", None)      # an optional extra's package (gbm: lightgbm)
        if requires and importlib.util.find_spec(requires) is None:
            raise ModelError(f"model kind {kind!r} needs the optional package {requires}: pip install 'lstmbt[{kind}]'")
        if requires:
            try:
                importlib.import_module(requires)
            except (ImportError, OSError) as exc:      # installed, but a shared library it links is missing
                raise ModelError(f"model kind {kind!r}: {requires} is installed but cannot load ({exc})") from None
        return cls
    where, name = split_kind(kind)
    if _is_file(where):
        path = Path(where).expanduser().resolve()
        module, origin = _load_file(path, kind), f"model file {path}"
    else:
        module, origin = _load_module(where, kind), f"model module {where}"
    if not hasattr(module, name):
        found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and callable(getattr(v, "fit", None))
                       and v.__module__ == module.__name__)
        hint = f" (classes with fit there: {', '.join(found)})" if found else ""
        raise ModelError(f"{origin}: no class {name!r}{hint}")
    return check_model_class(getattr(module, name), origin)
