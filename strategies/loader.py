"""Load a user's strategy class from a file (``path/to/my_rsi.py:RsiLongShort``) or a module (``pkg.mod:Class``).

Wherever lstmbt takes a strategy name (``--strategy``, ``--baselines``, ``--strategies``, TOML ``strategy`` and
``baselines``, compare grids, ``check-lookahead``, ``report --rerun``) it also takes such a spec. A spec is told
from a registered name by its colon: ``"sma_cross"`` is a name, ``"my_rsi.py:RsiLongShort"`` a file and class,
``"mypackage.signals:TrendLSTM"`` a module and class. A file path is relative to the current folder; configs keep
it absolute (:func:`canonical_spec`), so worker processes, Dask workers on the same disk and ``report --rerun``
find the same file.

Every way a spec can fail (no such file, a file that raises or does not compile, no such class, a class that is not
a :class:`~strategies.base.TargetPositionStrategy`) is a :class:`StrategyLoadError`: one line naming the file and
the problem, which the CLI prints with exit status 2.

>>> cls = load_strategy("examples/my_rsi.py:RsiLongShort")          # doctest: +SKIP
>>> strategy_source(cls)["sha256"]                                   # doctest: +SKIP
'3f5a...'
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
import types
from pathlib import Path

_FILE_MODULES: dict[str, tuple[str, object]] = {}
"""Absolute file path -> (sha256 of its bytes when loaded, module): a file is executed again only when it changed."""

_USER_FILES: set[str] = set()
"""Source files of every user strategy loaded in this process (for :func:`user_frames`)."""

_SOURCES: dict[str, str] = {}
"""Absolute file path -> source text sent along with a task (:func:`provide_source`): used instead of the disk."""

MODULE_PREFIX = "lstmbt_user_strategy_"


class StrategyLoadError(ValueError):
    """A strategy spec that cannot be turned into a strategy class (one line, names the file and the problem)."""


def is_spec(name: str) -> bool:
    """True for ``file.py:Class`` / ``pkg.mod:Class`` (and a bare ``file.py``), False for a registered name."""
    return isinstance(name, str) and (":" in name or name.endswith(".py"))


def _split(spec: str) -> tuple[str, str]:
    where, sep, attr = spec.rpartition(":")
    if not sep or not where:                       # "my_rsi.py" or ":Class"
        raise StrategyLoadError(f"strategy {spec!r}: name the class too, e.g. {spec.rstrip(':') or 'my_rsi.py'}:MyStrategy")
    return where, attr


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def canonical_spec(name):
    """``name`` with a file path made absolute (``"my_rsi.py:Rsi"`` -> ``"/home/me/my_rsi.py:Rsi"``); registered
    names, module specs and anything that is not a string come back unchanged."""
    if not is_spec(name) or ":" not in name:
        return name
    where, attr = name.rpartition(":")[::2]
    if not where or not _is_path(where):
        return name
    return f"{os.path.abspath(os.path.expanduser(where))}:{attr}"


def display_name(name: str) -> str:
    """How reports name a strategy: a file spec by its file name and class (``"my_rsi.py:RsiLongShort"``),
    anything else as given."""
    if is_spec(name) and ":" in name:
        where, attr = name.rpartition(":")[::2]
        if where and _is_path(where):
            return f"{Path(where).name}:{attr}"
    return name


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provide_source(path: str, text: str) -> None:
    """Use ``text`` as the content of strategy file ``path`` in this process (a compare worker gets the client's
    file this way, so it needs no shared disk and runs exactly the code the client saw)."""
    _SOURCES[os.path.abspath(path)] = text


def read_source(path: str) -> str:
    """The text of strategy file ``path`` (what :func:`provide_source` gave, else the file on disk)."""
    if path in _SOURCES:
        return _SOURCES[path]
    p = Path(path)
    if not p.is_file():
        raise StrategyLoadError(f"strategy file not found: {path}" if not p.exists() else
                                f"strategy file {path} is not a file")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StrategyLoadError(f"{path}: cannot read it ({_describe(exc)})") from None


def _load_file(path: str) -> object:
    text = read_source(path)
    digest = hashlib.sha256(text.encode()).hexdigest()
    cached = _FILE_MODULES.get(path)
    if cached and cached[0] == digest:
        return cached[1]
    name = MODULE_PREFIX + hashlib.sha256(path.encode()).hexdigest()[:12]
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module          # dataclasses, typing and pickle look the module up while it runs
    _USER_FILES.add(path)
    folder = os.path.dirname(path)
    added = folder not in sys.path
    if added:                           # the file may import helper modules that sit next to it
        sys.path.insert(0, folder)
    try:
        exec(compile(text, path, "exec"), module.__dict__)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise StrategyLoadError(f"{path}: line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:            # the user's file raised while importing: say where, in one line
        sys.modules.pop(name, None)
        raise StrategyLoadError(f"{path}: cannot load it{_where(exc, path)}: {_describe(exc)}") from None
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    _FILE_MODULES[path] = (digest, module)
    return module


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _where(exc: BaseException, path: str) -> str:
    lines = [f.lineno for f in _frames(exc.__traceback__) if os.path.abspath(f.filename) == path]
    return f" (line {lines[-1]})" if lines else ""


def _frames(tb):
    import traceback

    return traceback.extract_tb(tb) if tb is not None else []


def _load_module(where: str) -> object:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:                           # 'lstmbt' as a console script does not put the current folder on the path
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise StrategyLoadError(f"strategy module {where!r} not found ({exc}); give a file path "
                                    f"(my_strategy.py:Class) or install the package") from None
        raise StrategyLoadError(f"module {where}: cannot import it: {_describe(exc)}") from None
    except SyntaxError as exc:
        raise StrategyLoadError(f"{exc.filename}: line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:
        raise StrategyLoadError(f"module {where}: cannot import it: {_describe(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    source = getattr(module, "__file__", None)
    if source and not os.path.abspath(source).startswith(_PACKAGE_ROOT):
        _USER_FILES.add(os.path.abspath(source))
    return module


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1]) + os.sep


def load_strategy(spec: str):
    """The strategy class a spec names (see the module docstring); raises :class:`StrategyLoadError`."""
    from strategies.base import TargetPositionStrategy

    where, attr = _split(canonical_spec(spec))
    module = _load_file(where) if _is_path(where) else _load_module(where)
    label = where if _is_path(where) else f"module {where}"
    cls = getattr(module, attr, None)
    if cls is None:
        found = [n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, TargetPositionStrategy)
                 and v.__module__ == module.__name__]
        hint = f"; strategies there: {', '.join(found)}" if found else "; it defines no TargetPositionStrategy subclass"
        raise StrategyLoadError(f"{label}: no class {attr!r}{hint}")
    if not (inspect.isclass(cls) and issubclass(cls, TargetPositionStrategy)):
        raise StrategyLoadError(f"{label}: {attr} is not a strategy (a subclass of "
                                f"strategies.TargetPositionStrategy); it is {type(cls).__name__} {cls!r}"[:300])
    return cls


def spec_of(cls) -> str:
    """The spec that loads ``cls`` again in another process: ``/abs/file.py:Class`` for a class loaded from a file,
    ``module:Class`` otherwise (which only works where that module is importable)."""
    module = sys.modules.get(cls.__module__)
    if cls.__module__.startswith(MODULE_PREFIX) and module is not None:
        return f"{os.path.abspath(module.__file__)}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def strategy_source(cls, spec: str | None = None) -> dict:
    """What a manifest records of a strategy: its spec, class, source file and that file's sha256 (None when the
    class has no source file, e.g. one typed into an interactive session)."""
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:
        source = None
    if source and not Path(source).is_file():
        source = None
    return {"spec": spec or spec_of(cls), "class": f"{cls.__module__}.{cls.__qualname__}",
            "file": os.path.abspath(source) if source else None, "sha256": file_sha256(source) if source else None}


def user_frames(tb) -> list:
    """The frames of ``tb`` that run in a user's strategy file (loaded by this module), outermost first."""
    return [f for f in _frames(tb) if os.path.abspath(f.filename) in _USER_FILES]


def file_spec_path(name) -> str | None:
    """The absolute file of a ``file.py:Class`` spec, else None."""
    if not is_spec(name) or ":" not in name:
        return None
    where = canonical_spec(name).rpartition(":")[0]
    return where if where and _is_path(where) else None


__all__ = ["StrategyLoadError", "canonical_spec", "display_name", "file_sha256", "file_spec_path", "is_spec",
           "load_strategy", "provide_source", "read_source", "spec_of", "strategy_source", "user_frames"]
