"""A run folder on disk: save a :class:`BacktestResult` without pickle, read it back exactly, re-render its report.

One result is a folder of Parquet files (each series and frame, dtypes, UTC times and index names intact) plus
``result.json`` (names, numbers, config, data span, attribution, extras)::

    runs/20260101-120000-btc-lstm-1h/
        report.html  metrics.json  manifest.json  *.png  *.csv       the report (reports.write_report)
        data/runs.json                                             names and roles, in report order
        data/0-lstm/{equity,position,target,funding,fees}.parquet
        data/0-lstm/{prices,fills,trades,rejected,predictions}.parquet
        data/0-lstm/result.json
        data/1-buy_hold/...
        data/0-pairs/portfolio/...                                 a multi-symbol run's book (PortfolioBook)

``lstmbt report RUN_DIR`` reads ``data/`` and ``manifest.json`` and writes the report again with
:func:`write_run_folder`, the same function ``lstmbt backtest`` uses, so metrics.json comes out byte for byte
the same.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa

from backtests.result import BacktestResult, PortfolioBook
from data_feeds.files import atomic_path, atomic_write
from reports.formatting import jsonable

SERIES = ("equity", "position", "target", "funding", "fees")
FRAMES = ("prices", "fills", "trades", "rejected", "predictions")
SCALARS = ("name", "strategy", "exchange", "symbol", "timeframe", "initial_cash")
PLAIN = ("config", "data_span", "attribution", "extras", "models", "fold_boundaries", "source")
FORMAT_VERSION = 1


class RunFolderError(ValueError):
    """A run folder that cannot be read back (missing files, another format version)."""


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", write_page_checksum=True)


def _freq(index: pd.Index) -> str | None:
    return getattr(index, "freqstr", None)


def save_run(result: BacktestResult, folder: str | os.PathLike) -> Path:
    """Write ``result`` into ``folder`` (created if needed) as Parquet + ``result.json``; returns the folder.

    Everything :func:`load_run` needs to rebuild an equal result: no pickle, readable with any Parquet tool.
    Plain fields (config, data span, attribution, extras) must be JSON data; timestamps in them become ISO text.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names, freqs = {}, {}
    for key in SERIES:
        series: pd.Series = getattr(result, key)
        names[key] = series.name
        freqs[key] = _freq(series.index)
        _write_parquet(series.to_frame(name="value"), out / f"{key}.parquet")
    present = []
    for key in FRAMES:
        frame = getattr(result, key)
        (out / f"{key}.parquet").unlink(missing_ok=True)
        if frame is None:
            continue
        present.append(key)
        freqs[key] = _freq(frame.index)
        _write_parquet(frame, out / f"{key}.parquet")
    meta = {"format": FORMAT_VERSION, **{k: jsonable(getattr(result, k)) for k in SCALARS},
            **{k: jsonable(getattr(result, k)) for k in PLAIN},
            "series_names": names, "frames": present, "freqs": freqs}
    if getattr(result, "portfolio", None) is not None:      # the key only then: single-symbol files unchanged
        meta["portfolio"] = "portfolio"
        _save_book(result.portfolio, out / "portfolio")
    # key order kept as given (not sorted): the report lists attribution terms and config in this order
    atomic_write(out / "result.json", json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return out


def _read_parquet(path: Path, freq: str | None) -> pd.DataFrame:
    if not path.exists():
        raise RunFolderError(f"{path} is missing; the run folder is incomplete (re-run the backtest)")
    try:
        frame = pd.read_parquet(path, engine="pyarrow", page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        raise RunFolderError(f"{path} is corrupt ({exc.__class__.__name__}); re-run the backtest") from None
    if freq and isinstance(frame.index, pd.DatetimeIndex):
        frame.index = pd.DatetimeIndex(frame.index, freq=freq)
    return frame


def load_run(folder: str | os.PathLike) -> BacktestResult:
    """The :class:`BacktestResult` that :func:`save_run` wrote into ``folder``, equal to the one saved."""
    src = Path(folder)
    try:
        meta = json.loads((src / "result.json").read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{src} holds no saved run (no result.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{src / 'result.json'} is unreadable ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        shown = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RunFolderError(f"{src}: run format {shown!r}, this lstmbt reads {FORMAT_VERSION}")
    try:
        freqs = meta["freqs"]
        series = {k: _read_parquet(src / f"{k}.parquet", freqs.get(k))["value"].rename(meta["series_names"][k])
                  for k in SERIES}
        frames = {k: _read_parquet(src / f"{k}.parquet", freqs.get(k)) if k in meta["frames"] else None
                  for k in FRAMES}
        plain = {k: meta[k] for k in PLAIN if k in meta}
        extras = plain.get("extras") or {}
        if "models" not in meta:                # a folder written before the typed fields: they lived in extras
            plain["models"] = list(extras.get("checkpoints", []))
            plain["fold_boundaries"] = list(extras.get("fold_boundaries", []))
        plain["fold_boundaries"] = [pd.Timestamp(t) for t in plain.get("fold_boundaries", [])]
        result = BacktestResult(**{k: meta[k] for k in SCALARS}, **series, **frames, **plain)
        if meta.get("portfolio"):
            result.portfolio = _load_book(src / "portfolio")
        _check_result(result)
    except RunFolderError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise RunFolderError(f"{src / 'result.json'} does not describe a saved run ({exc.__class__.__name__}: "
                             f"{str(exc)[:80]}); it was modified or damaged, re-run the backtest") from None
    return result


_BOOK_FRAMES = ("position", "notional", "target", "pnl", "maintenance", "attribution", "liquidations")
_BOOK_SERIES = ("margin_balance", "margin_ratio")


def _save_book(book: PortfolioBook, folder: Path) -> None:
    """A :class:`PortfolioBook` as Parquet (its frames, series and each symbol's prices) plus ``book.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    freqs = {}
    for key in _BOOK_FRAMES:
        frame = getattr(book, key)
        freqs[key] = _freq(frame.index)
        _write_parquet(frame, folder / f"{key}.parquet")
    for key in _BOOK_SERIES:
        series = getattr(book, key)
        freqs[key] = _freq(series.index)
        _write_parquet(series.to_frame(name="value"), folder / f"{key}.parquet")
    for i, symbol in enumerate(book.symbols):
        _write_parquet(book.prices[symbol], folder / f"prices-{i}.parquet")
    meta = {"symbols": list(book.symbols), "margin_mode": book.margin_mode, "weights": jsonable(book.weights),
            "coverage": jsonable(book.coverage), "freqs": freqs,
            "series_names": {k: getattr(book, k).name for k in _BOOK_SERIES}}
    atomic_write(folder / "book.json", json.dumps(meta, indent=2, allow_nan=False) + "\n")


def _load_book(folder: Path) -> PortfolioBook:
    """The :class:`PortfolioBook` that :func:`_save_book` wrote (coverage times back as UTC Timestamps)."""
    try:
        meta = json.loads((folder / "book.json").read_text())
    except OSError as exc:
        raise RunFolderError(f"{folder / 'book.json'} is missing or unreadable ({exc.__class__.__name__}); "
                             "re-run the backtest") from None
    freqs = meta["freqs"]
    frames = {k: _read_parquet(folder / f"{k}.parquet", freqs.get(k)) for k in _BOOK_FRAMES}
    series = {k: _read_parquet(folder / f"{k}.parquet", freqs.get(k))["value"].rename(meta["series_names"][k])
              for k in _BOOK_SERIES}
    ts = lambda t: None if t is None else pd.Timestamp(t)  # noqa: E731
    coverage = {s: {**c, "first": ts(c.get("first")), "last": ts(c.get("last")),
                    "gaps": [[ts(a), ts(b)] for a, b in c.get("gaps") or []]}
                for s, c in (meta.get("coverage") or {}).items()}
    prices = {s: _read_parquet(folder / f"prices-{i}.parquet", None) for i, s in enumerate(meta["symbols"])}
    return PortfolioBook(symbols=list(meta["symbols"]), margin_mode=meta["margin_mode"], weights=meta["weights"],
                         prices=prices, coverage=coverage, **frames, **series)


def _check_result(result: BacktestResult) -> None:
    """The types a report needs, so a hand-edited result.json is one line, not a traceback in the report writer."""
    for key in ("name", "strategy", "exchange", "symbol", "timeframe"):
        if not isinstance(getattr(result, key), str):
            raise RunFolderError(f"result.json: {key} must be text, got {getattr(result, key)!r:.60}")
    cash = result.initial_cash
    if isinstance(cash, bool) or not isinstance(cash, (int, float)) or not cash > 0 or cash == float("inf"):
        raise RunFolderError(f"result.json: initial_cash must be a positive number, got {cash!r:.60}")
    for key in ("config", "data_span", "attribution", "extras"):
        if not isinstance(getattr(result, key), dict):
            raise RunFolderError(f"result.json: {key} must be an object, got {type(getattr(result, key)).__name__}")
    for key in SERIES:
        series = getattr(result, key)
        if not isinstance(series.index, pd.DatetimeIndex) or not pd.api.types.is_numeric_dtype(series):
            raise RunFolderError(f"{key}.parquet: not a numeric time series")


def _slug(text: str) -> str:
    """A file-name-safe form of a run name: ``"sma <b>"`` -> ``"sma_b_"``, at most 40 characters (used after an
    ``<i>-`` prefix, so never ``.`` or ``..`` alone)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:40] or "run"


def save_runs(folder: str | os.PathLike, main: BacktestResult, baselines: list[BacktestResult]) -> Path:
    """Save the strategy and its baselines under ``folder/data/`` with an index ``runs.json``; returns data/."""
    data = Path(folder) / "data"
    entries = []
    for i, (result, role) in enumerate([(main, "strategy"), *[(b, "baseline") for b in baselines]]):
        sub = f"{i}-{_slug(result.name)}"
        save_run(result, data / sub)
        entries.append({"folder": sub, "name": result.name, "role": role})
    atomic_write(data / "runs.json", json.dumps({"runs": entries}, indent=2) + "\n")
    return data


def load_runs(folder: str | os.PathLike) -> tuple[BacktestResult, list[BacktestResult]]:
    """``(strategy, baselines)`` as :func:`save_runs` saved them under ``folder/data/``."""
    data = Path(folder) / "data"
    try:
        entries = json.loads((data / "runs.json").read_text())["runs"]
    except FileNotFoundError:
        raise RunFolderError(f"{folder} has no saved run data (data/runs.json); was it written by "
                             f"'lstmbt backtest'? Re-run the backtest to get one") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise RunFolderError(f"{data / 'runs.json'} is unreadable or damaged ({exc.__class__.__name__})") from None
    if not isinstance(entries, list) or not entries:
        raise RunFolderError(f"{data / 'runs.json'} lists no runs; re-run the backtest")
    results = [load_run(inside(data, e.get("folder") if isinstance(e, dict) else None, "runs.json"))
               for e in entries]
    return results[0], results[1:]


def inside(root: str | os.PathLike, name, what: str) -> Path:
    """``root/name`` resolved, refused (RunFolderError) unless it lies inside ``root``: a path read from a run
    folder (runs.json, a manifest) never sends lstmbt to another folder."""
    if not isinstance(name, str) or not name:
        raise RunFolderError(f"{what}: expected a folder name, got {name!r:.60}")
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path == base or base not in path.parents:
        raise RunFolderError(f"{what}: {name!r:.60} points outside {root}; refusing to read it")
    return path


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """``folder/manifest.json`` as a dict, or None when the folder has none."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{path} is unreadable ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise RunFolderError(f"{path} is not a manifest object")
    return doc


def write_run_folder(folder: str | os.PathLike, main: BacktestResult, baselines: list[BacktestResult],
                     manifest: dict | None = None, *, log_scale: bool | None = None) -> Path:
    """Save the runs' data and write the report (``reports.write_report``); returns ``report.html``'s path.

    Used by ``lstmbt backtest`` after a run and by ``lstmbt report`` on a saved folder, so both write the
    same files from the same results.
    """
    from reports import write_report

    save_runs(folder, main, baselines)
    return write_report(main, folder, baselines=baselines, manifest=manifest, log_scale=log_scale)


def rerender(folder: str | os.PathLike, *, log_scale: bool | None = None) -> Path:
    """Write ``folder``'s report again from its saved data and manifest, without re-running anything."""
    main, baselines = load_runs(folder)
    return write_run_folder(folder, main, baselines, read_manifest(folder), log_scale=log_scale)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``lstmbt report``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'lstmbt backtest'")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--log", dest="log_scale", action="store_true", default=None,
                       help="equity chart on a log scale (default: automatic, log when equity spans over 5x)")
    scale.add_argument("--linear", dest="log_scale", action="store_false", help="equity chart on a linear scale")
    parser.add_argument("--rerun", action="store_true",
                        help="re-run the backtest from RUN_DIR/manifest.json instead (needs the same data)")
    parser.add_argument("--out", help="with --rerun: folder for the new run (default runs/<UTC time>-<name>)")
    parser.add_argument("--force", action="store_true", help="with --rerun: replace a non-empty --out folder")


def report_command(args: argparse.Namespace) -> int:
    """``lstmbt report RUN_DIR``: re-render the report from saved data, or ``--rerun`` it from its manifest."""
    folder = Path(args.run_dir)
    if not folder.is_dir():
        raise RunFolderError(f"run folder not found: {folder}")
    if args.rerun:
        from backtests.manifest import rerun_from_manifest

        out = rerun_from_manifest(folder / "manifest.json", args.out, progress=lambda line: print(line, flush=True),
                                  force=getattr(args, "force", False))
        same = (out / "metrics.json").read_bytes() == (folder / "metrics.json").read_bytes()
        print(f"report: {out / 'report.html'}")
        print("metrics.json: identical to the original" if same else "metrics.json: DIFFERS from the original")
        return 0 if same else 1
    if args.out:
        raise RunFolderError("--out goes with --rerun; without it the report is rewritten in RUN_DIR")
    page = rerender(folder, log_scale=args.log_scale)
    print(f"report: {page}")
    return 0


__all__ = ["add_report_arguments", "load_run", "load_runs", "read_manifest", "report_command", "rerender",
           "save_run", "save_runs", "write_run_folder"]
