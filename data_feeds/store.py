"""The local data store: one Parquet file per exchange / symbol / timeframe / kind.

Layout: ``<root>/<exchange>/<BTC-USDT-USDT>/<kind>-<timeframe>.parquet`` with kind one of
``candles``, ``mark`` (mark-price candles) or ``funding`` (funding has no timeframe:
``funding.parquet``). Files hold a ``timestamp`` column (UTC) and the value columns.

Writes are atomic: the frame goes to a temporary file in the same folder which then replaces the
old file with ``os.replace``, so a crash never leaves a half-written store file. A file that cannot
be read is reported with its path and never overwritten.

Every write and every read-merge-write holds a file lock (``<file>.lock``, the ``filelock`` library), so two
processes downloading the same series never lose each other's rows; under the lock, temporary files left by a
killed writer (``.<file>.*.tmp``) are removed. Parquet pages carry CRC checksums written with the data and
verified on every read, so a flipped byte is a "corrupt store file" error, never a wrong price.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import filelock

import pandas as pd
import platformdirs
import pyarrow as pa
import pyarrow.parquet as pq

from data_feeds.errors import DataError
from data_feeds.files import atomic_path
from data_feeds.symbols import symbol_to_filename

KINDS = ("candles", "mark", "funding")
STORE_ENV = "LSTMBT_DATA_DIR"
LOCK_TIMEOUT = 600.0
"""Seconds a writer waits for another process's lock on the same store file before giving up."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_path_name(value: str, what: str) -> str:
    """``value`` if it is safe as one path component (letters, digits, ``_``, ``-``; at most 64), else DataError."""
    if not isinstance(value, str) or not _NAME.match(value):
        shown = repr(value) if len(str(value)) <= 40 else repr(str(value)[:40]) + "..."
        raise DataError(f"invalid {what} {shown}: use letters, digits, '_' or '-' (at most 64 characters)")
    return value


def default_store_dir() -> Path:
    """``$LSTMBT_DATA_DIR`` if set, else the user cache folder (``~/.cache/lstmbt/data`` on Linux)."""
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("lstmbt")) / "data"


class Store:
    """Parquet files under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        if self.root.exists() and not self.root.is_dir():
            raise DataError(f"data store {self.root} is a file, not a folder; pass --data-dir a folder")

    def path(self, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> Path:
        """Where the file for this exchange/symbol/timeframe/kind lives (it may not exist)."""
        if kind not in KINDS:
            raise DataError(f"unknown data kind {kind!r}; use one of {', '.join(KINDS)}")
        name = "funding.parquet" if kind == "funding" else f"{kind}-{check_path_name(timeframe, 'timeframe')}.parquet"
        return self.root / check_path_name(exchange, "exchange id") / symbol_to_filename(symbol) / name

    @contextmanager
    def lock(self, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> Iterator[Path]:
        """Hold the inter-process lock of one store file (waits up to :data:`LOCK_TIMEOUT` s); yields its path.

        Re-entrant in one process. Temporary files of writers that died are removed once the lock is held.
        """
        path = self.path(exchange, symbol, timeframe, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT, is_singleton=True)
        try:
            with lock:
                for stale in path.parent.glob(f".{path.name}.*.tmp"):
                    stale.unlink(missing_ok=True)
                yield path
        except filelock.Timeout:
            raise DataError(f"{path} is locked by another lstmbt process for over {LOCK_TIMEOUT:.0f} s "
                            f"(lock file {path}.lock); wait for it to finish") from None

    def read(self, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> pd.DataFrame | None:
        """The stored frame indexed by UTC ``timestamp``, or None when nothing is stored."""
        path = self.path(exchange, symbol, timeframe, kind)
        if not path.exists():
            return None
        return read_parquet(path)

    def write(self, df: pd.DataFrame, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> Path:
        """Replace the stored frame atomically with ``df`` (UTC-indexed)."""
        with self.lock(exchange, symbol, timeframe, kind) as path:
            write_parquet_atomic(df, path)
        return path

    def merge(self, new: pd.DataFrame, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> pd.DataFrame:
        """Union of what is stored and ``new`` (new rows win on equal timestamps), written atomically while the
        file's lock is held, so a concurrent writer's rows are never lost."""
        with self.lock(exchange, symbol, timeframe, kind) as path:
            old = self.read(exchange, symbol, timeframe, kind)
            merged = new if old is None else pd.concat([old, new])
            merged = merged[~merged.index.duplicated(keep="last")].sort_index()
            write_parquet_atomic(merged, path)
        return merged

    def entries(self) -> list[tuple[str, str, str, str, Path]]:
        """Every stored file as (exchange, symbol-filename, kind, timeframe, path)."""
        out = []
        for path in sorted(self.root.glob("*/*/*.parquet")):
            kind, _, timeframe = path.stem.partition("-")
            out.append((path.parent.parent.name, path.parent.name, kind, timeframe or "", path))
        return out


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a store file; a corrupt file raises DataError naming it (the file is left untouched)."""
    try:
        # one read of the whole file: pyarrow opens a path more than once (footer, then pages), which could mix
        # two versions of a file a concurrent writer replaced in between; the bytes of one open are one version
        blob = path.read_bytes()
        df = pq.read_table(pa.BufferReader(blob), page_checksum_verification=True).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"corrupt store file {path}: {exc.__class__.__name__}; move it away and download again") from exc
    if "timestamp" not in df.columns:
        raise DataError(f"corrupt store file {path}: no timestamp column")
    df.index = timestamp_index(df.pop("timestamp"), path)
    return df


def timestamp_index(ts: pd.Series, path: Path) -> pd.DatetimeIndex:
    """A file's ``timestamp`` column as a UTC index named ``timestamp``: the store writes UTC datetimes; a user's
    file may hold epoch milliseconds (as CSV files do) or ISO text. Anything else is a DataError naming ``path``."""
    try:
        if pd.api.types.is_numeric_dtype(ts) and not pd.api.types.is_bool_dtype(ts):
            index = pd.to_datetime(ts.astype("int64"), unit="ms", utc=True)
        else:
            index = pd.to_datetime(ts, utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{path}: unreadable timestamps ({exc.__class__.__name__})") from None
    return pd.DatetimeIndex(index, name="timestamp")


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX)."""
    table = pa.Table.from_pandas(df.rename_axis("timestamp").reset_index(), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
