"""Closed candles, funding settlements and mark prices of one perpetual, polled from an exchange through ccxt.

Only closed candles leave here: a candle whose open time plus the bar length lies after the exchange's clock
is still forming (its close, high, low and volume will change) and is never returned. The clock is the
exchange's own (``fetch_time`` through ccxt's ``load_time_difference``), so a local clock that runs fast or slow
does not make a forming candle look closed. Every request is retried with backoff (:mod:`data_feeds.retry`);
rows are checked like any other data (:mod:`data_feeds.validate`); candles at or before the last one already
held are dropped (duplicates, or a late copy of a bar already decided on) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from data_feeds.exchange import check_market, fetch_page, has_mark_candles, page_limit
from data_feeds.retry import Retrier, RetryPolicy
from data_feeds.timeframes import timeframe_seconds
from data_feeds.validate import CANDLE_COLUMNS, check_candles, check_frame

FUNDING_COLUMNS = ("funding_rate",)


@dataclass
class Polled:
    """What one poll brought: new closed candles (possibly several, after a disconnect), funding settlements
    and mark candles up to the exchange's clock, and how many candles were dropped as already held."""

    candles: pd.DataFrame
    funding: pd.DataFrame
    mark: pd.DataFrame | None
    ignored: int
    now: pd.Timestamp


def empty_candles() -> pd.DataFrame:
    """A candle frame with no rows, indexed like the store (UTC ms ``timestamp``)."""
    return _frame(np.empty((0, 6)), CANDLE_COLUMNS)


def _frame(rows: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(rows[:, 0].astype("int64"), unit="ms", utc=True),
                             name="timestamp").as_unit("ms")
    return pd.DataFrame(rows[:, 1:1 + len(columns)], index=index, columns=list(columns)).astype("float64")


class LiveSource:
    """Polls ``symbol``'s closed ``timeframe`` candles (and funding, mark prices) from a ccxt ``exchange``.

    ``policy`` bounds the retries of one request; ``on_retry(error, wait)`` hears about each retry. A poll that
    still fails raises :class:`data_feeds.retry.GiveUp`; the runner reconnects with its own backoff.
    """

    def __init__(self, exchange, symbol: str, timeframe: str, *, policy: RetryPolicy | None = None,
                 on_retry: Callable[[BaseException, float], None] | None = None):
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.step_ms = timeframe_seconds(timeframe) * 1000
        self.retrier = Retrier(policy, on_retry=on_retry)
        self.with_mark = False

    def connect(self) -> None:
        """Load markets, check the symbol and timeframe, and measure the offset of the exchange's clock."""
        self.retrier.call(self.exchange.load_markets, self.exchange)
        check_market(self.exchange, self.symbol, self.timeframe)
        self.with_mark = has_mark_candles(self.exchange)
        self.sync_clock()

    def sync_clock(self) -> None:
        """ccxt's time-difference option: ``options['timeDifference']`` = local minus exchange milliseconds."""
        self.retrier.call(self.exchange.load_time_difference, self.exchange)

    def now_ms(self) -> int:
        """The exchange's clock, in epoch milliseconds."""
        return int(self.exchange.milliseconds() - self.exchange.options.get("timeDifference", 0))

    def last_closed_open_ms(self, now_ms: int | None = None) -> int:
        """Open time of the newest candle that has closed by ``now_ms`` (the exchange's clock)."""
        now = self.now_ms() if now_ms is None else now_ms
        return (now // self.step_ms) * self.step_ms - self.step_ms

    def poll(self, after: pd.Timestamp | None, since: pd.Timestamp) -> Polled:
        """Closed candles after ``after`` (all since ``since`` when None), and funding and mark rows since the
        first new candle. Several candles come back at once when the runner was away for a while (backfill).
        The exchange's clock is read again first (one light request), so drift between the clocks never
        makes a forming candle look closed."""
        self.sync_clock()
        now = self.now_ms()
        last_closed = self.last_closed_open_ms(now)
        first = int(since.value // 1_000_000) if after is None else int(after.value // 1_000_000) + self.step_ms
        return self._polled(self._rows("candles", first, last_closed), after, first, now, last_closed)

    def close(self) -> None:
        """Release what the source holds open (nothing for REST polling)."""

    def _polled(self, rows: np.ndarray, after: pd.Timestamp | None, first: int, now: int,
                last_closed: int) -> Polled:
        """Candle ``rows`` (column 0: open ms) filtered to the closed ones after ``after`` and de-duplicated, with
        the funding settlements and mark candles fetched from ``first``."""
        held = int(after.value // 1_000_000) if after is not None else first - 1
        fresh = rows[(rows[:, 0] > held) & (rows[:, 0] <= last_closed)] if len(rows) else rows
        fresh = fresh[np.unique(fresh[:, 0], return_index=True)[1]] if len(fresh) else fresh
        ignored = len(rows) - len(fresh)
        candles = _frame(fresh.reshape(-1, 6), CANDLE_COLUMNS) if len(fresh) else empty_candles()
        if len(candles):
            check_candles(candles, f"{self.exchange.id} {self.symbol} {self.timeframe} live candles")
        funding = self._funding(first, now)
        mark = None
        if self.with_mark:
            mark_rows = self._rows("mark", first, last_closed)
            mark_rows = mark_rows[mark_rows[:, 0] <= last_closed] if len(mark_rows) else mark_rows
            mark = _frame(mark_rows.reshape(-1, 6), CANDLE_COLUMNS) if len(mark_rows) else empty_candles()
            mark = mark[~mark.index.duplicated()]
        return Polled(candles, funding, mark, ignored, pd.Timestamp(now, unit="ms", tz="UTC"))

    def _funding(self, first: int, now: int) -> pd.DataFrame:
        rows = self._rows("funding", first, now, width=2)
        if not len(rows):
            return _frame(np.empty((0, 2)), FUNDING_COLUMNS)
        rows[:, 0] = (rows[:, 0] + 30_000) // 60_000 * 60_000  # settlement times to the minute
        frame = _frame(rows, FUNDING_COLUMNS)
        frame = frame[~frame.index.duplicated()].sort_index()
        check_frame(frame, FUNDING_COLUMNS, f"{self.exchange.id} {self.symbol} live funding")
        return frame

    def _rows(self, kind: str, since: int, until: int, width: int = 6) -> np.ndarray:
        """Every row of ``kind`` with timestamp in ``[since, until]``, page after page."""
        if until < since:
            return np.empty((0, width))
        limit = page_limit(self.exchange.id, kind)
        out: list[list] = []
        start = since
        while start <= until:
            page = self.retrier.call(lambda: fetch_page(self.exchange, self.symbol, kind, self.timeframe, start,
                                                        until, limit), self.exchange)
            page = [r[:width] for r in page if r and r[0] is not None and since <= r[0] <= until]
            if not page:
                break
            out.extend(page)
            newest = max(r[0] for r in page)
            if newest < start:
                break
            start = int(newest) + 1
        return np.array(out, dtype="float64").reshape(-1, width)
