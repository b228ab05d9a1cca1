"""What ``lstmbt download`` and ``lstmbt data list`` do, as plain functions (the CLI only parses flags).

>>> download_command("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-06-30")   # doctest: +SKIP
>>> print(data_list())                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from typing import Sequence, TextIO

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_feeds.download import MAX_FUNDING_INTERVAL_MS, download
from data_feeds.errors import DataError
from data_feeds.exchange import read_exchange_config
from data_feeds.store import KINDS, Store
from data_feeds.timeframes import SUPPORTED, timeframe_seconds

LIST_COLUMNS = ("exchange", "symbol", "kind", "timeframe", "start", "end", "rows", "gaps", "missing", "note")


def download_command(exchange: str, symbol: str, timeframe: str, start: str, end: str, *,
                     data_dir: str | os.PathLike | None = None, exchange_config: str | os.PathLike | None = None,
                     kinds: Sequence[str] | None = None, progress: bool | None = None,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``lstmbt download``: fetch candles, mark-price candles and funding into the store and print a report.

    ``data_dir`` (``--data-dir``) defaults to ``$LSTMBT_DATA_DIR`` or the user cache folder;
    ``exchange_config`` (``--exchange-config``) is a TOML/JSON file of ccxt constructor options; ``kinds``
    defaults to all of candles, mark, funding. Returns 0 when done, 130 after Ctrl-C (verified pages are
    saved; a re-run resumes). A failed download raises DataError with a one-line message saying what was saved.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    config = read_exchange_config(exchange_config) if exchange_config is not None else None
    try:
        report = download(exchange, symbol, timeframe, start, end, kinds=tuple(kinds or KINDS), store_dir=data_dir,
                          exchange_config=config, progress=progress,
                          on_retry=lambda line: tqdm.write(line, file=err))
    except KeyboardInterrupt:
        root = Store(data_dir).root
        print(f"interrupted: the pages verified so far are saved under {root}; run the same command again to resume",
              file=err)
        return 130
    print("\n".join(report.lines()), file=out)
    return 0


def stored_entries(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per store file: exchange, symbol, kind, timeframe, first and last timestamp, rows, gaps.

    ``gaps`` counts holes in the series and ``missing`` the bars they lack (funding: settlements more than
    8 h apart, ``missing`` in hours). A file that cannot be read is listed with a note naming it.
    """
    store = Store(data_dir)
    rows = []
    for exchange, file_symbol, kind, timeframe, path in store.entries():
        symbol = file_symbol.replace("-", "/", 1).replace("-", ":", 1)
        row = dict(exchange=exchange, symbol=symbol, kind=kind, timeframe=timeframe or "-", start="-", end="-",
                   rows=0, gaps=0, missing=0, note="")
        try:
            df = store.read(exchange, symbol, timeframe, kind)
        except DataError as exc:
            row["note"] = str(exc)
            rows.append(row)
            continue
        if df is not None and len(df):
            row.update(start=f"{df.index[0]:%Y-%m-%d %H:%M}", end=f"{df.index[-1]:%Y-%m-%d %H:%M}", rows=len(df))
            row["gaps"], row["missing"] = _gap_counts(df.index, kind, timeframe)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(LIST_COLUMNS))


def sample_entries() -> pd.DataFrame:
    """One row per file of the shipped sample (``data_feeds/sample/``): exchange, symbol, kind, timeframe, first
    and last timestamp, rows. ``load()`` falls back to these when the store has no such series."""
    from data_feeds.loader import SAMPLE_DIR, read_csv_frame

    rows = []
    for path in sorted(SAMPLE_DIR.glob("*.csv.gz")):
        exchange, file_symbol, *rest = path.name[:-len(".csv.gz")].split("_")
        kind = "funding" if rest[0] == "funding" else "mark" if rest[0] == "mark" else "candles"
        timeframe = "-" if kind == "funding" else rest[-1]
        df = read_csv_frame(path, ())
        rows.append(dict(exchange=exchange, symbol=file_symbol.replace("-", "/", 1).replace("-", ":", 1), kind=kind,
                         timeframe=timeframe, start=f"{df.index[0]:%Y-%m-%d %H:%M}",
                         end=f"{df.index[-1]:%Y-%m-%d %H:%M}", rows=len(df)))
    return pd.DataFrame(rows, columns=["exchange", "symbol", "kind", "timeframe", "start", "end", "rows"])


def data_list(data_dir: str | os.PathLike | None = None) -> str:
    """``lstmbt data list``: the table of :func:`stored_entries` (or a line saying the store is empty), then what
    the shipped sample covers (:func:`sample_entries`), which every command uses where the store has nothing."""
    table = stored_entries(data_dir)
    root = Store(data_dir).root
    if table.empty:
        text = f"no data stored in {root}"
    else:
        if not table["note"].astype(bool).any():
            table = table.drop(columns="note")
        text = f"store: {root}\n" + table.to_string(index=False)
    sample = sample_entries()
    if len(sample):
        text += ("\n\nshipped sample (real Binance USDT-M data, used where the store has none; coarser timeframes "
                 "are resampled from it, e.g. 4h and 1d from 1h):\n" + sample.to_string(index=False))
    return text


def _gap_counts(index: pd.DatetimeIndex, kind: str, timeframe: str) -> tuple[int, int]:
    ms = index.as_unit("ms").asi8
    steps = np.diff(ms)
    if kind == "funding":
        where = steps > MAX_FUNDING_INTERVAL_MS
        return int(where.sum()), int((steps[where] // 3_600_000).sum())
    if timeframe not in SUPPORTED:
        return 0, 0
    step = timeframe_seconds(timeframe) * 1000
    where = steps > step
    return int(where.sum()), int((steps[where] // step - 1).sum())


__all__ = ["data_list", "download_command", "stored_entries"]
