"""The reproducibility manifest of a run (``manifest.json`` in every report folder) and re-running from it.

The manifest records what a run depended on: the data (span, rows, SHA-256, gaps), the full config and its seed,
the model checkpoints' hashes, the package versions and the command line. :func:`rerun_from_manifest` rebuilds
the config, runs the strategy and its baselines again and checks the data is the same bytes; with the same
packages its ``metrics.json`` is byte for byte the original's.

>>> rerun_from_manifest("runs/20260101-120000-btc-lstm-1h/manifest.json", "runs/check")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Callable

from backtests.config import BacktestConfig, config_from_dict
from backtests.result import BacktestResult
from reports.formatting import jsonable

MANIFEST_VERSION = 1
PACKAGES = ("lstmbt", "backtrader", "numpy", "pandas", "pyarrow", "matplotlib", "ccxt")
"""Distributions whose versions the manifest records; torch is added when the run imported it."""
DATA_KEYS = ("start", "end", "rows", "sha256", "gaps", "source", "funding_rows", "mark_prices")

Progress = Callable[[str], None]


class ManifestError(ValueError):
    """A manifest that cannot be read or re-run, or a re-run whose data differs from the recorded data."""


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """``{"python": "3.11.9", "numpy": "2.1.0", ...}``; None for a package that is not installed. Reads installed
    metadata only: nothing is imported, so asking for torch's version never loads torch."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    names = list(packages) + (["torch"] if "torch" in sys.modules else [])
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_manifest(config: BacktestConfig, main: BacktestResult, baselines: Sequence[BacktestResult] = (),
                   argv: Sequence[str] | None = None) -> dict:
    """The manifest of a run of ``config``: plain JSON data.

    ``config`` is the run's whole config (strategy, baselines, data, broker, model, seed), without the model cache
    folder, which never changes a result. ``argv`` defaults to ``sys.argv``. Checkpoints are ``main.models`` (one
    record per trained model: name, weights and data sha256, threshold). ``strategies`` records each run's strategy
    class, source file and that file's sha256, so ``--rerun`` can say when the code changed since.
    """
    cfg = config.to_dict()
    cfg.pop("cache_dir", None)
    return jsonable({
        "manifest_version": MANIFEST_VERSION,
        "run": {"name": config.name, "strategy": main.name, "baselines": [b.name for b in baselines],
                "exchange": main.exchange, "symbol": main.symbol, "timeframe": main.timeframe},
        "data": {k: main.data_span[k] for k in DATA_KEYS if k in main.data_span},
        "seed": config.seed,
        "config": cfg,
        "checkpoints": list(main.models),
        "strategies": [{"name": r.name, **r.source} for r in (main, *baselines) if r.source],
        "packages": package_versions(),
        "platform": platform.platform(),
        "command": list(sys.argv if argv is None else argv),
        "rerun": "lstmbt report RUN_DIR --rerun --out NEW_DIR",
    })


def read_manifest_file(path: str | os.PathLike) -> dict:
    """A manifest from ``path`` (a ``manifest.json`` or the run folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {p}; reports written before manifests existed cannot be re-run") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{p}: not a manifest object")
    if doc.get("manifest_version") != MANIFEST_VERSION or "config" not in doc:
        raise ManifestError(f"{p}: manifest version {doc.get('manifest_version')!r}, expected {MANIFEST_VERSION}")
    return doc


def config_from_manifest(manifest: dict, cache_dir: str | None = None) -> BacktestConfig:
    """The :class:`BacktestConfig` a manifest recorded (``cache_dir`` for trained models, default the user cache)."""
    config = config_from_dict(manifest["config"], "manifest config")
    out_dir = Path(config.out_dir)
    if out_dir.is_absolute() or ".." in out_dir.parts:
        raise ManifestError(f"manifest config out_dir {config.out_dir!r:.60} points outside the working folder; "
                            f"pass --out to choose where the rerun goes")
    return config.replace(cache_dir=cache_dir) if cache_dir else config


def rerun_from_manifest(manifest_path: str | os.PathLike, out: str | os.PathLike | None = None, *,
                        cache_dir: str | None = None, progress: Progress | None = None, force: bool = False) -> Path:
    """Run the backtest a manifest describes again into ``out`` (default ``runs/<time>-<name>``); returns the folder.

    Raises ManifestError when the data of the span is not the recorded data (another SHA-256 or row count): the
    metrics could not match then. Compare ``out/metrics.json`` with the original's bytes to confirm the rerun.
    """
    manifest = read_manifest_file(manifest_path)
    config = config_from_manifest(manifest, cache_dir) if out is None else \
        config_from_dict(manifest["config"], "manifest config").replace(**({"cache_dir": cache_dir} if cache_dir else {}))
    from backtests.session import run_and_report

    if progress:
        for line in source_changes(manifest):
            progress(f"warning: {line}")
    market, extra = None, {}
    if "input" in manifest:                  # a run on a DataFrame: its candles are saved in the run folder
        from backtests.api import load_input

        run_dir = Path(manifest_path)
        run_dir = run_dir if run_dir.is_dir() else run_dir.parent
        market = load_input(run_dir, manifest["input"])
        extra = {"input": manifest["input"]}
        if progress:
            progress(f"data: the run's saved candles, {run_dir / manifest['input']['files']['candles']['file']} "
                     f"({len(market.candles):,} rows, sha256 as recorded)")
    run = manifest.get("run") if isinstance(manifest.get("run"), dict) else {}
    label = run.get("strategy") if isinstance(run.get("strategy"), str) else None
    folder, main, _ = run_and_report(config, out, progress, force=force, market=market, label=label, extra=extra)
    if market is not None:
        import shutil

        for entry in manifest["input"]["files"].values():     # the rerun's folder can itself be rerun
            target = folder / entry["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / entry["file"], target)
    recorded = manifest.get("data", {})
    if not isinstance(recorded, dict):
        recorded = {}
    for key in ("sha256", "rows"):
        if key in recorded and recorded[key] != main.data_span.get(key):
            raise ManifestError(f"the data differs from the manifest's ({key} {main.data_span.get(key)} vs "
                                f"{recorded[key]}); restore the original data (see manifest 'data') to reproduce")
    return folder


def source_changes(manifest: dict) -> list[str]:
    """One line per strategy whose source file is gone or differs (sha256) from what the manifest recorded."""
    out = []
    for rec in manifest.get("strategies", []):
        path, digest = rec.get("file"), rec.get("sha256")
        if not path or not digest:
            continue
        if not Path(path).is_file():
            out.append(f"strategy {rec.get('name')}: its source file {path} is gone; the rerun uses what "
                       f"{rec.get('spec')} resolves to now")
            continue
        from strategies.loader import file_sha256

        now = file_sha256(path)
        if now != digest:
            out.append(f"strategy {rec.get('name')}: source file {path} changed since the run "
                       f"(sha256 {digest[:12]}... then, {now[:12]}... now); results may differ")
    return out


__all__ = ["ManifestError", "source_changes", "build_manifest", "config_from_manifest", "package_versions", "read_manifest_file",
           "rerun_from_manifest"]
