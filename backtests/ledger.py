"""The trial ledger: every configuration tried on which data, so significance corrections count what was tried.

Each backtest, comparison cell and search trial (``lstmbt optimize``: kind ``"optimize"`` over the search span,
``"optimize-final"`` for the winner's one run on the final span) appends one line of JSON to a local file::

    {"v": 1, "time": "2026-01-01T12:00:00Z", "kind": "backtest", "config_hash": "3f2a...", "strategy": "lstm",
     "summary": "lstm seed=42 lev=1 window=48 horizon=24", "exchange": "binanceusdm", "symbol": "BTC/USDT:USDT",
     "timeframe": "1h", "start": "2024-07-01T00:00:00+00:00", "end": "2025-12-31T23:00:00+00:00",
     "sharpe": 1.30}

The file is ``$LSTMBT_LEDGER`` when set, else ``ledger.jsonl`` in the user cache folder (``~/.cache/lstmbt`` on
Linux); commands take ``--ledger PATH``. Appends are safe under concurrency: a lock file next to the ledger
(``filelock``) serialises writers, and each entry is one ``write`` on a file opened with ``O_APPEND``; a reader
skips a line it cannot parse (a torn line from a crash) instead of failing.

A *configuration* is everything that can change a result except the data span and the output places: strategy,
params, model, broker, fraction, seed, risk-free rate (:func:`config_hash`). :func:`trials_on` counts the distinct
configurations tried on the same exchange, symbol and timeframe over a span that overlaps the one asked about, and
returns their Sharpe ratios (the latest per configuration), which is what the deflated Sharpe ratio needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd
import platformdirs
from filelock import FileLock

LEDGER_ENV = "LSTMBT_LEDGER"
FORMAT = 1
_IGNORED = ("name", "out_dir", "cache_dir", "baselines")
_IGNORED_DATA = ("start", "end", "store_dir", "path", "funding_path")


def ledger_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$LSTMBT_LEDGER``, else ``<user cache>/lstmbt/ledger.jsonl``."""
    if path:
        return Path(path)
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV])
    return Path(platformdirs.user_cache_dir("lstmbt")) / "ledger.jsonl"


def config_hash(config: dict) -> str:
    """First 16 hex digits of the SHA-256 of the configuration's canonical JSON, without the run's name, output
    folders, baselines and data span (the same strategy and settings on another span hash the same)."""
    body = {k: v for k, v in config.items() if k not in _IGNORED}
    if isinstance(body.get("data"), dict):
        body["data"] = {k: v for k, v in body["data"].items() if k not in _IGNORED_DATA}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_summary(config: dict) -> str:
    """A short human line: ``"lstm seed=42 lev=1 horizon=24 window=48"`` (strategy, seed, leverage, params,
    model settings)."""
    parts = [str(config.get("strategy", "?")), f"seed={config.get('seed')}",
             f"lev={(config.get('broker') or {}).get('leverage')}"]
    for table in ("params", "model"):
        for k, v in sorted((config.get(table) or {}).items()):
            if not isinstance(v, dict):
                parts.append(f"{k}={v}")
    return " ".join(parts)[:300]


@dataclass(frozen=True)
class Trials:
    """Distinct configurations tried on overlapping data: ``count`` and their annualised ``sharpes`` (NaN dropped)."""

    count: int
    sharpes: tuple[float, ...]
    path: str


def _iso(t) -> str:
    """ISO 8601 in UTC; a time without a zone is taken as UTC."""
    ts = pd.Timestamp(t)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")).isoformat()


def make_entry(kind: str, config: dict, *, exchange: str, symbol: str, timeframe: str, start, end,
               sharpe: float | None) -> dict:
    """One ledger line (see the module docstring) for a configuration tried on ``start .. end`` (bar times)."""
    sharpe = float(sharpe) if sharpe is not None and math.isfinite(float(sharpe)) else None
    return {"v": FORMAT, "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": kind,
            "config_hash": config_hash(config), "strategy": str(config.get("strategy", "?")),
            "summary": config_summary(config), "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
            "start": _iso(start), "end": _iso(end), "sharpe": sharpe}


def record(entries: Iterable[dict], path: str | os.PathLike | None = None) -> Path:
    """Append ``entries`` to the ledger (created with its folder if needed); returns its path.

    Writers on one machine take the lock file ``<ledger>.lock``; each line is written with one ``os.write`` on an
    ``O_APPEND`` descriptor, so even a writer that ignores the lock cannot interleave inside a line.
    """
    target = ledger_path(path)
    lines = [json.dumps(e, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n" for e in entries]
    if not lines:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock", timeout=30):
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                for line in lines:
                    os.write(fd, line.encode())
            finally:
                os.close(fd)
    except OSError as exc:
        raise ValueError(f"cannot write the trial ledger {target}: {exc.strerror or exc}; "
                         f"choose another file with --ledger or ${LEDGER_ENV}") from None
    return target


def read(path: str | os.PathLike | None = None) -> list[dict]:
    """Every well-formed entry of the ledger, oldest first; [] when there is none yet."""
    target = ledger_path(path)
    try:
        text = target.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("v") == FORMAT:
            out.append(entry)
    return out


def configs_on(exchange: str, symbol: str, timeframe: str, start, end, *, path: str | os.PathLike | None = None,
               entries: list[dict] | None = None) -> dict[str, float | None]:
    """Config hash -> its latest recorded Sharpe ratio (None when undefined), for every configuration tried on
    ``exchange``/``symbol``/``timeframe`` over a span overlapping ``start .. end``."""
    t0, t1 = pd.Timestamp(_iso(start)), pd.Timestamp(_iso(end))
    latest: dict[str, float | None] = {}
    for e in entries if entries is not None else read(path):
        if (e.get("exchange"), e.get("symbol"), e.get("timeframe")) != (exchange, symbol, timeframe):
            continue
        try:
            s0, s1 = pd.Timestamp(e["start"]), pd.Timestamp(e["end"])
        except (KeyError, ValueError, TypeError):
            continue
        if s0 <= t1 and t0 <= s1:
            latest[e.get("config_hash", "?")] = e.get("sharpe")
    return latest


def trials_on(exchange: str, symbol: str, timeframe: str, start, end, *, path: str | os.PathLike | None = None,
              entries: list[dict] | None = None) -> Trials:
    """Distinct configurations tried on ``exchange``/``symbol``/``timeframe`` over a span overlapping
    ``start .. end``, with the latest Sharpe ratio recorded for each."""
    latest = configs_on(exchange, symbol, timeframe, start, end, path=path, entries=entries)
    sharpes = tuple(float(s) for s in latest.values() if isinstance(s, (int, float)) and math.isfinite(s))
    return Trials(len(latest), sharpes, str(ledger_path(path)))


def record_results(kind: str, results: Iterable, path: str | os.PathLike | None = None) -> Path:
    """Record each :class:`~backtests.result.BacktestResult` of ``results`` as a trial on its own bars."""
    from reports.metrics import result_metrics

    entries = []
    for r in results:
        sharpe = result_metrics(r).get("Sharpe")
        entries.append(make_entry(kind, r.config, exchange=r.exchange, symbol=r.symbol, timeframe=r.timeframe,
                                  start=r.equity.index[0], end=r.equity.index[-1], sharpe=sharpe))
    return record(entries, path)


def trials_for(result, path: str | os.PathLike | None = None) -> Trials:
    """:func:`trials_on` the bars of ``result``."""
    return trials_on(result.exchange, result.symbol, result.timeframe, result.equity.index[0],
                     result.equity.index[-1], path=path)


__all__ = ["LEDGER_ENV", "Trials", "config_hash", "configs_on", "config_summary", "ledger_path", "make_entry", "read", "record",
           "record_results", "trials_for", "trials_on"]
