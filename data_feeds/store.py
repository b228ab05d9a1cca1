"""The local data store: one Parquet file per exchange / symbol / timeframe / kind.

Layout: ``<root>/<exchange>/<BTC-USDT-USDT>/<kind>-<timeframe>.parquet`` with kind one of
``candles``, ``mark`` (mark-price candles) or ``funding`` (funding has no timeframe:
``funding.parquet``). Files hold a ``timestamp`` column (UTC) and the value columns.

Writes are atomic: the frame goes to a temporary file in the same folder which then replaces the
old file with ``os.replace``, so a crash never leaves a half-written store file. A file that cannot
be read is reported with its path and never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import platformdirs
import pyarrow as pa
import pyarrow.parquet as pq

from data_feeds.errors import DataError
from data_feeds.files import atomic_path
from data_feeds.symbols import symbol_to_filename

KINDS = ("candles", "mark", "funding")
STORE_ENV = "LSTMBT_DATA_DIR"


def default_store_dir() -> Path:
    """``$LSTMBT_DATA_DIR`` if set, else the user cache folder (``~/.cache/lstmbt/data`` on Linux)."""
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("lstmbt")) / "data"


class Store:
    """Parquet files under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_store_dir()

    def path(self, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> Path:
        """Where the file for this exchange/symbol/timeframe/kind lives (it may not exist)."""
        if kind not in KINDS:
            raise DataError(f"unknown data kind {kind!r}; use one of {', '.join(KINDS)}")
        name = "funding.parquet" if kind == "funding" else f"{kind}-{timeframe}.parquet"
        return self.root / exchange / symbol_to_filename(symbol) / name

    def read(self, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> pd.DataFrame | None:
        """The stored frame indexed by UTC ``timestamp``, or None when nothing is stored."""
        path = self.path(exchange, symbol, timeframe, kind)
        if not path.exists():
            return None
        return read_parquet(path)

    def write(self, df: pd.DataFrame, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> Path:
        """Replace the stored frame atomically with ``df`` (UTC-indexed)."""
        path = self.path(exchange, symbol, timeframe, kind)
        write_parquet_atomic(df, path)
        return path

    def merge(self, new: pd.DataFrame, exchange: str, symbol: str, timeframe: str, kind: str = "candles") -> pd.DataFrame:
        """Union of what is stored and ``new`` (new rows win on equal timestamps), written atomically."""
        old = self.read(exchange, symbol, timeframe, kind)
        merged = new if old is None else pd.concat([old, new])
        merged = merged[~merged.index.duplicated(keep="last")].sort_index()
        self.write(merged, exchange, symbol, timeframe, kind)
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
        df = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"corrupt store file {path}: {exc.__class__.__name__}; move it away and download again") from exc
    if "timestamp" not in df.columns:
        raise DataError(f"corrupt store file {path}: no timestamp column")
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("timestamp"), utc=True), name="timestamp")
    return df


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX)."""
    table = pa.Table.from_pandas(df.rename_axis("timestamp").reset_index(), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
