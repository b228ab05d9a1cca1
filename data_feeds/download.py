"""Download candles, mark-price candles and funding history into the store: paginated, verified, resumable.

>>> report = download("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-06-30")   # doctest: +SKIP
>>> print("\\n".join(report.lines()))                                                      # doctest: +SKIP

How a span is fetched
    Pages are explicit windows ``[since, until]`` (ms, both ends inclusive) of at most the exchange's page
    cap (1,000 hourly candles on Binance: about 41 days), never ccxt's ``paginate`` (anchored to "now").
    Only closed bars are fetched. Funding windows are ``(limit - 1)`` hours wide, so even hourly funding
    fits in one page.

How a page is verified (ccxt answers a malformed, HTML or empty page with ``[]`` and no error)
    Every row must have numeric fields, lie inside its window, on the timeframe grid, in strictly increasing
    order, with sane OHLC; otherwise the page is retried. A candle page must hold every bar of its window;
    a funding page a settlement at least every 8 h. A page that falls short is fetched again and accepted
    only when the exchange gives the same answer twice: those missing bars are real exchange gaps
    (maintenance), reported, never filled. An empty page after data was seen is a fault: it is retried,
    and the download fails if it persists. (So an outage longer than a whole page, over 16 h of 1m bars,
    would read as a fault.) After the download every bar of the fetched windows must be either stored or
    confirmed missing by the exchange.

How it resumes
    Verified pages are flushed to the store every ``flush_pages`` pages with :meth:`Store.merge` (atomic).
    A re-run fetches only what lies before the first stored row (paging backwards from it, so the store
    stays contiguous even when interrupted) and after the last one: a span that does not touch the stored
    one is fetched together with the stretch between them, so the stored series never has a hole. A corrupt
    store file stops the download with its path and is left untouched.

Two downloads at once
    Every merge into the store holds the file's lock, so neither loses the other's rows. Each plans from the
    store as it found it, so two disjoint spans can leave a hole between them; after its last merge a download
    fetches again every hole touching its span that none of its own pages covered (a hole left by another
    writer or an old run), so a gap is reported as an exchange gap only after a fetch of this run confirmed it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import ccxt
from ccxt.base.decimal_to_precision import TICK_SIZE
import numpy as np
import pandas as pd
from tqdm import tqdm

from data_feeds.errors import DataError
from data_feeds.exchange import (check_market, fetch_page, has_mark_candles, is_finite, make_exchange, page_limit)
from data_feeds.loader import parse_span
from data_feeds.market_rules import rules_from_ccxt, rules_path, write_rules
from data_feeds.progress import Progress
from data_feeds.retry import GiveUp, PageFault, Retrier, RetryPolicy, describe_error
from data_feeds.store import KINDS, Store
from data_feeds.symbols import check_symbol
from data_feeds.timeframes import timeframe_seconds
from data_feeds.validate import CANDLE_COLUMNS, FUNDING_COLUMNS, find_gaps

log = logging.getLogger("lstmbt.download")

HOUR_MS = 3_600_000
MAX_FUNDING_INTERVAL_MS = 8 * HOUR_MS + 60_000  # 8 h between settlements, plus a minute of timestamp jitter
MIN_FUNDING_PAGE = 25  # rows: a funding window is (limit - 1) hours wide and must span more than 8 h


class DownloadError(DataError):
    """A download that stopped; the one-line message says why, what is saved and how to resume."""


class Unconfirmed(PageFault):
    """A short page fetched once: it is fetched again, and kept only if the exchange answers the same."""


@dataclass(frozen=True)
class Window:
    """One page request: rows with open time (or settlement time) in ``[start, end]`` ms, both inclusive."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_ts(self.start)} .. {_ts(self.end)}"


@dataclass
class KindReport:
    """What one kind's download did and what the store now holds inside the requested span."""

    kind: str
    path: Path
    pages: int = 0
    fetched_rows: int = 0
    retries: list[str] = field(default_factory=list)
    confirmations: int = 0
    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal, e.g. ``candles: 4368 rows 2024-01-01 00:00 .. 2024-06-30 23:00 ...``."""
        if self.rows == 0:
            head = f"{self.kind}: no rows in the requested span"
        else:
            head = f"{self.kind}: {self.rows} rows {_ts(self.first)} .. {_ts(self.last)}"
        fetched = f"fetched {self.fetched_rows} rows in {self.pages} page(s)"
        if self.retries:
            fetched += f", {len(self.retries)} fault(s) retried"
        if self.confirmations:
            fetched += f", {self.confirmations} short page(s) re-fetched to confirm"
        parts = [head, fetched]
        if len(self.gaps):
            biggest = self.gaps.sort_values("missing").iloc[-1]
            parts.append(f"exchange gaps: {len(self.gaps)} ({int(self.gaps['missing'].sum())} missing, largest after "
                         f"{_ts(biggest['after'])})")
        return "; ".join(parts + self.notes) + f" -> {self.path}"


@dataclass
class DownloadReport:
    """The result of :func:`download`: one :class:`KindReport` per kind, in the order fetched."""

    exchange: str
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    kinds: list[KindReport] = field(default_factory=list)
    rules_line: str = ""

    def lines(self) -> list[str]:
        span = f"{_ts(self.start)} .. {_ts(self.end)} (end exclusive)"
        return ([f"{self.exchange} {self.symbol} {self.timeframe} {span}"] + ["  " + k.line() for k in self.kinds]
                + (["  " + self.rules_line] if self.rules_line else []))


def download(exchange_id: str, symbol: str, timeframe: str, start, end, *, kinds: tuple[str, ...] = KINDS,
             store_dir: str | Path | None = None, exchange_config: Mapping | None = None,
             exchange: ccxt.Exchange | None = None, policy: RetryPolicy | None = None,
             page_size: int | None = None, flush_pages: int = 50, progress: bool | None = None,
             on_retry: Callable[[str], None] | None = None) -> DownloadReport:
    """Bring ``kinds`` of ``symbol`` over ``[start, end]`` (a date-only end includes that day) into the store.

    ``exchange_config``: ccxt constructor options (see :func:`data_feeds.exchange.make_exchange`); ``exchange``:
    an already built ccxt object instead. ``page_size`` lowers the rows per request below the exchange's cap.
    ``flush_pages``: verified pages kept in memory before they are merged into the store (a crash loses at most
    these; each flush rewrites the file). ``progress=None`` shows a bar only on a terminal.
    ``on_retry`` hears one line per retry as it happens (default: printed on stderr, above any progress bar), e.g.
    ``binanceusdm markets: NetworkError: ...; retry 1 of 7 in 1.0 s``, so a slow failure is never silent.
    Raises :class:`DownloadError` (or DataError for bad arguments or a corrupt store file) and, on Ctrl-C,
    KeyboardInterrupt after saving the verified pages.
    """
    check_symbol(symbol)
    timeframe_seconds(timeframe)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DataError(f"unknown data kind(s) {', '.join(unknown)}; use {', '.join(KINDS)}")
    if flush_pages < 1:
        raise DataError(f"flush_pages must be at least 1, not {flush_pages}")
    t0, t1 = parse_span(start, end)
    exchange = exchange or make_exchange(exchange_id, exchange_config)
    store = Store(store_dir)
    for kind in kinds:  # a corrupt store file stops us before any request
        store.read(exchange_id, symbol, timeframe, kind)
    say = on_retry or _print_retry
    retrier = Retrier(policy, on_retry=retry_reporter(f"{exchange_id} markets", policy, say))
    try:
        retrier.call(exchange.load_markets, exchange)
    except GiveUp as exc:
        raise DownloadError(f"{exchange_id}: cannot load markets: {exc}; nothing was downloaded") from exc
    except ccxt.BaseError as exc:   # refused outright (HTTP 401/403: authentication, a bad request)
        raise DownloadError(f"{exchange_id}: cannot load markets: {describe_error(exc)}; nothing was "
                            f"downloaded") from exc
    check_market(exchange, symbol, timeframe)
    report = DownloadReport(exchange_id, symbol, timeframe, t0, t1)
    report.rules_line = store_market_rules(exchange, exchange_id, symbol, store, retrier)
    for kind in kinds:
        if kind == "mark" and not has_mark_candles(exchange):
            report.kinds.append(KindReport(kind, store.path(exchange_id, symbol, timeframe, kind),
                                           notes=[f"{exchange_id} has no mark-price candles in ccxt; skipped"]))
            continue
        limit = page_limit(exchange_id, kind, page_size)
        if kind == "funding":
            limit = max(limit, min(MIN_FUNDING_PAGE, page_limit(exchange_id, kind)))
        job = _KindDownload(exchange, store, exchange_id, symbol, timeframe, kind, limit, flush_pages, policy,
                            progress)
        job.say = say
        try:
            report.kinds.append(job.run(t0, t1))
        except DownloadError as exc:
            done = [k.kind for k in report.kinds]
            tail = f"; {', '.join(done)} complete" if done else ""
            raise DownloadError(f"{exc}{tail}") from exc.__cause__
    return report


def store_market_rules(exchange: ccxt.Exchange, exchange_id: str, symbol: str, store: Store,
                       retrier: Retrier | None = None) -> str:
    """Write the market's rules next to its data (``market.json``, atomic) and say what was stored, one line.

    From ``load_markets()`` (already loaded) and, where the exchange serves them without keys
    (``has['fetchMarketLeverageTiers'] is True``, e.g. Bybit), its leverage tiers. Binance's tier endpoint is
    private (signed requests only): the tiers are noted as unavailable and runs fall back to the shipped
    snapshot's or the default tiers (or a ``--market-rules`` file).
    """
    retrier = retrier or Retrier()
    market = exchange.markets[symbol]
    tiers, note = None, ""
    try:
        if exchange.has.get("fetchMarketLeverageTiers") is True:
            tiers = retrier.call(lambda: exchange.fetch_market_leverage_tiers(symbol), exchange)
        else:  # a private endpoint (Binance): not called, so API keys never reach a request lstmbt logs
            note = f"leverage tiers unavailable: {exchange_id} serves them only to signed (API key) requests"
    except (GiveUp, ccxt.BaseError) as exc:
        note = f"leverage tiers unavailable: {describe_error(exc) if not isinstance(exc, GiveUp) else exc}"
    fetched = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    rules = rules_from_ccxt(exchange_id, market, tiers, fetched=fetched, tiers_note=note,
                            tick_size_mode=exchange.precisionMode == TICK_SIZE)
    path = write_rules(rules, rules_path(store.root, exchange_id, symbol))
    tiers_text = f"{len(rules.tiers)} leverage tiers" if rules.tiers else note
    return (f"market rules: qty step {rules.qty_step:g}, min qty {rules.min_qty:g}, min notional "
            f"{rules.min_notional:g}, {tiers_text} -> {path}")


def _print_retry(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def retry_reporter(what: str, policy: RetryPolicy | None, say: Callable[[str], None]
                   ) -> Callable[[BaseException, float], None]:
    """A :class:`Retrier` ``on_retry`` callback that says each retry as one line: what failed, why, which retry
    of how many and how long it waits: ``binanceusdm markets: RequestTimeout: ...; retry 2 of 7 in 3.1 s``."""
    retries = (policy or RetryPolicy()).max_attempts - 1
    count = [0]

    def report(error: BaseException, wait: float) -> None:
        count[0] += 1
        say(f"{what}: {describe_error(error)}; retry {count[0]} of {retries} in {wait:.1f} s")
    return report


class _KindDownload:
    """Fetches one kind (candles, mark or funding) of one symbol; see the module docstring for the rules."""

    def __init__(self, exchange, store: Store, exchange_id: str, symbol: str, timeframe: str, kind: str,
                 limit: int, flush_pages: int, policy: RetryPolicy | None, progress: bool | None):
        self.exchange, self.store = exchange, store
        self.ids = (exchange_id, symbol, timeframe, kind)
        self.kind, self.timeframe, self.limit = kind, timeframe, limit
        self.funding = kind == "funding"
        self.step = None if self.funding else timeframe_seconds(timeframe) * 1000
        self.origin = 4 * 86_400_000 if timeframe == "1w" else 0  # weekly bars open on Mondays (1970-01-05)
        self.flush_pages, self.progress_enabled = flush_pages, progress
        self.report = KindReport(kind, store.path(*self.ids))
        self.retrier = Retrier(policy, on_retry=self._on_retry)
        self.say: Callable[[str], None] = _print_retry
        self.max_retries = (policy or RetryPolicy()).max_attempts - 1
        self.pending: list[list] = []
        self.pending_pages = 0
        self.fetched: list[Window] = []
        self.confirmed_missing: list[np.ndarray] = []
        self.fetched_ts: list[np.ndarray] = []
        self.bar: Progress | None = None
        self._current: Window | None = None

    @property
    def what(self) -> str:
        return " ".join(self.ids if not self.funding else (*self.ids[:2], self.kind))

    # ------------------------------------------------------------------ plan and run

    def run(self, t0: pd.Timestamp, t1: pd.Timestamp) -> KindReport:
        lo, hi = self._requested_ms(t0, t1)
        stored = self.store.read(*self.ids)
        # (start, end, mode, edge): mode "forward", "anchored" (stored data just before) or "backward" (stored data
        # just after); edge: the stored timestamp next to the span, None when nothing is stored
        spans: list[tuple[int, int, str, int | None]] = []
        if lo <= hi:
            if stored is None or stored.empty:
                spans.append((lo, hi, "forward", None))
            else:
                ms = stored.index.as_unit("ms").asi8
                nudge = 1 if self.funding else self.step
                if lo < ms[0]:
                    spans.append((lo, ms[0] - nudge, "backward", int(ms[0])))
                if hi > ms[-1]:
                    spans.append((ms[-1] + nudge, hi, "anchored", int(ms[-1])))
        else:
            self.report.notes.append("the span holds no closed bar yet")
        plans = [(self._windows(a, b, mode), mode, edge) for a, b, mode, edge in spans]
        self.bar = Progress(self.what, sum(len(w) for w, _, _ in plans), enabled=self.progress_enabled)
        try:
            for windows, mode, edge in plans:
                self._fetch_windows(windows, mode, edge)
            self._flush()
            self._fill_holes(lo, hi)
        except (GiveUp, DownloadError, ccxt.BaseError) as exc:
            self._flush()
            reason = describe_error(exc) if isinstance(exc, ccxt.BaseError) else str(exc)
            raise DownloadError(f"{self.what}: page {self._current}: {reason}; {self._saved()}; "
                                f"run the same command again to resume") from exc
        except BaseException:
            self._flush()  # Ctrl-C or an unexpected error: keep what was verified
            raise
        finally:
            self.bar.close()
        self._check_coverage()
        return self._summarise(t0, t1, hi)

    def _requested_ms(self, t0: pd.Timestamp, t1: pd.Timestamp) -> tuple[int, int]:
        """First and last timestamps (ms, inclusive) to fetch: closed bars only, settlements up to now."""
        a, b = t0.value // 1_000_000, t1.value // 1_000_000 - 1
        now = int(self.exchange.milliseconds())
        if self.funding:
            return a, min(b, now)
        step, o = self.step, self.origin
        first = -((o - a) // step) * step + o if (a - o) % step else a  # ceil to the grid
        last_closed = (now - o) // step * step + o - step
        return first, min((b - o) // step * step + o, last_closed)

    def _windows(self, a: int, b: int, mode: str) -> list[Window]:
        width = (self.limit - 1) * (HOUR_MS if self.funding else self.step)
        gap = 1 if self.funding else self.step
        out = []
        if mode == "backward":
            end = b
            while end >= a:
                out.append(Window(max(a, end - width + (1 if self.funding else 0)), end))
                end = out[-1].start - gap
        else:
            start = a
            while start <= b:
                out.append(Window(start, min(b, start + width - (1 if self.funding else 0))))
                start = out[-1].end + gap
        return out

    def _holes(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Holes ``(first, last, edge)`` (ms, inclusive; ``edge``: the stored row before) in the stored series that
        touch the requested ``[lo, hi]`` and that no window of this run fetched (so nobody confirmed them yet).

        They come from a writer that was not this one (two downloads at once, a killed run) or an old run; a hole
        is reported as an exchange gap only once this run has fetched it again and the exchange agreed."""
        stored = self.store.read(*self.ids)
        if stored is None or len(stored) < 2:
            return []
        ms = stored.index.as_unit("ms").asi8
        step = MAX_FUNDING_INTERVAL_MS if self.funding else self.step
        nudge = 1 if self.funding else self.step
        where = np.flatnonzero(np.diff(ms) > step)
        fetched = sorted((w.start, w.end) for w in self.fetched)
        out = []
        for i in where:
            a, b = int(ms[i]) + nudge, int(ms[i + 1]) - nudge
            if b < lo - step or a > hi + step:
                continue
            covered, cursor = False, a
            for start, end in fetched:  # is [a, b] inside the union of this run's windows?
                if start <= cursor <= end:
                    cursor = end + nudge
                if cursor > b:
                    covered = True
                    break
            if not covered:
                out.append((a, b, int(ms[i])))
        return out

    def _fill_holes(self, lo: int, hi: int, rounds: int = 3) -> None:
        """Fetch every unconfirmed hole (see :meth:`_holes`) again and merge what the exchange has; repeated in case
        a concurrent writer opened a new one meanwhile."""
        for _ in range(rounds):
            holes = self._holes(lo, hi)
            if not holes:
                return
            for a, b, edge in holes:
                log.info("%s: refetching %s .. %s, missing from the store", self.what, _ts(a), _ts(b))
                self._fetch_windows(self._windows(a, b, "forward"), "gap", edge)
            self._flush()

    def _fetch_windows(self, windows: list[Window], mode: str, edge: int | None) -> None:
        """Fetch ``windows`` in order; ``edge`` is the nearest known timestamp on the side already fetched.
        ``mode`` "gap": a hole inside stored data, where an empty page is a confirmed exchange gap, not a fault."""
        seen_data = mode == "anchored"
        backward = mode == "backward"
        for window in windows:
            self._current = window
            rows = self._page(window, empty_is_fault=seen_data and not backward and mode != "gap", edge=edge,
                              backward=backward)
            if rows:
                edge = rows[0][0] if backward else rows[-1][0]
            self.bar.page(len(rows))
            self.report.pages += 1
            self.report.fetched_rows += len(rows)
            self.fetched.append(window)
            self._keep(window, rows)
            if mode == "backward" and not rows:
                break  # the exchange confirmed an empty page: its data starts after this window
            seen_data = seen_data or bool(rows)
            if self.pending_pages >= self.flush_pages:
                self._flush()

    # ------------------------------------------------------------------ one page

    def _page(self, window: Window, *, empty_is_fault: bool, edge: int | None, backward: bool) -> list[list]:
        """The verified rows of ``window``; retried until complete or confirmed by two identical answers."""
        previous: list[list] | None = None
        exchange_id, symbol, timeframe, kind = self.ids

        def attempt() -> list[list]:
            nonlocal previous
            rows = fetch_page(self.exchange, symbol, kind, timeframe, window.start, window.end, self.limit)
            self._check_rows(rows, window)
            shortfall = self._shortfall(rows, window, edge, backward)
            if shortfall is None:
                return rows
            if not rows and empty_is_fault:
                raise PageFault("empty page inside the span although the exchange has data before it")
            if previous is not None and rows == previous:
                return rows  # the exchange gave the same answer twice: a real gap, not a fault
            previous = rows
            raise Unconfirmed(f"{shortfall}; fetching again to confirm")

        return self.retrier.call(attempt, self.exchange)

    def _check_rows(self, rows: list[list], window: Window) -> None:
        """Raise PageFault unless every row is numeric, in the window, on the grid, increasing and sane."""
        width = 2 if self.funding else 6
        for row in rows:
            if (not isinstance(row, (list, tuple)) or len(row) < width or not isinstance(row[0], int)
                    or not all(is_finite(v) for v in row[1:width])):
                raise PageFault(f"malformed row {str(row)[:80]}")
        if not rows:
            return
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if ts[0] < window.start or ts[-1] > window.end:
            raise PageFault(f"rows outside the requested window ({_ts(ts[0])} .. {_ts(ts[-1])})")
        if (np.diff(ts) <= 0).any():
            raise PageFault("timestamps not strictly increasing")
        if self.funding:
            return
        off = (ts - self.origin) % self.step != 0
        if off.any():
            raise PageFault(f"timestamp {_ts(ts[off][0])} is not on the {self.timeframe} grid")
        o, h, lo, c, v = np.array([r[1:6] for r in rows], dtype="float64").T
        bad = (lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo <= 0) | (v < 0)
        if bad.any():
            raise PageFault(f"candle at {_ts(ts[bad][0])} violates low <= open,close <= high, low > 0, volume >= 0")

    def _shortfall(self, rows: list[list], window: Window, edge: int | None, backward: bool) -> str | None:
        """Why the page looks incomplete, or None when it is complete.

        Candles: every bar of the window. Funding: no 8 h without a settlement from the known ``edge`` (the
        neighbouring settlement already fetched or stored) through the rows to the far end of the window.
        """
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows and not self.funding:
            return "empty page"
        if self.funding:
            if len(rows) >= self.limit:
                raise DownloadError(f"{len(rows)} settlements fill the page: funding more often than hourly is "
                                    "not supported")
            if backward:
                edges = np.concatenate([[window.start], ts, [window.end if edge is None else edge]])
            else:
                edges = np.concatenate([[window.start if edge is None else edge], ts, [window.end]])
            widest = int(np.diff(edges).max())
            if widest <= MAX_FUNDING_INTERVAL_MS:
                return None
            return "empty page" if not rows else f"{widest / HOUR_MS:.1f} h without a settlement"
        expected = (window.end - window.start) // self.step + 1
        return None if len(rows) == expected else f"{len(rows)} of {expected} candles"

    # ------------------------------------------------------------------ keeping and saving

    def _keep(self, window: Window, rows: list[list]) -> None:
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self.fetched_ts.append(ts)
        if not self.funding:
            grid = np.arange(window.start, window.end + 1, self.step, dtype=np.int64)
            self.confirmed_missing.append(np.setdiff1d(grid, ts, assume_unique=True))
        self.pending.extend(rows)
        self.pending_pages += 1

    def _flush(self) -> None:
        if self.pending:
            self.store.merge(self._frame(self.pending), *self.ids)
            log.info("%s: saved %d rows", self.what, len(self.pending))
        self.pending, self.pending_pages = [], 0

    def _frame(self, rows: list[list]) -> pd.DataFrame:
        width = 2 if self.funding else 6
        arr = np.array([r[:width] for r in rows], dtype="float64")
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if self.funding:
            ts = (ts + 30_000) // 60_000 * 60_000  # settlement times to the minute (08:00:00.005 -> 08:00)
        columns = FUNDING_COLUMNS if self.funding else CANDLE_COLUMNS
        index = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms", utc=True), name="timestamp").as_unit("ms")
        return pd.DataFrame(arr[:, 1:], index=index, columns=list(columns)).sort_index()

    def _saved(self) -> str:
        stored = self.store.read(*self.ids)
        if stored is None or stored.empty:
            return "nothing saved yet"
        return f"saved {_ts(stored.index[0])} .. {_ts(stored.index[-1])} ({len(stored)} rows) in {self.report.path}"

    def _on_retry(self, error: BaseException, wait: float) -> None:
        message = describe_error(error)
        if isinstance(error, Unconfirmed):
            self.report.confirmations += 1
        else:
            self.report.retries.append(message)
        log.info("%s: page %s: %s; retrying in %.1f s", self.what, self._current, message, wait)
        if self.bar is not None:
            self.bar.retry(message)
        if not isinstance(error, Unconfirmed):
            self.say(f"{self.what}: page {self._current}: {message}; retrying in {wait:.1f} s "
                     f"(up to {self.max_retries} retries per page)")

    # ------------------------------------------------------------------ after the download

    def _check_coverage(self) -> None:
        """Every fetched row is stored; every bar of the fetched windows is stored or confirmed missing."""
        if not self.fetched:
            return
        stored = self.store.read(*self.ids)
        have = np.array([], dtype=np.int64) if stored is None else stored.index.as_unit("ms").asi8
        fetched = np.concatenate(self.fetched_ts) if self.fetched_ts else np.array([], dtype=np.int64)
        if self.funding:
            fetched = (fetched + 30_000) // 60_000 * 60_000
            lost = np.setdiff1d(fetched, have)
        else:
            grids = [np.arange(w.start, w.end + 1, self.step, dtype=np.int64) for w in self.fetched]
            missing = np.concatenate(self.confirmed_missing) if self.confirmed_missing else np.array([], np.int64)
            lost = np.setdiff1d(np.setdiff1d(np.concatenate(grids), have), missing)
        if len(lost):
            raise DownloadError(f"{self.what}: coverage check failed: {len(lost)} row(s) from {_ts(lost[0])} are "
                                f"neither in {self.report.path} nor confirmed missing by the exchange")

    def _summarise(self, t0: pd.Timestamp, t1: pd.Timestamp, last_bar: int) -> KindReport:
        """Rows, span and gaps of the stored data inside ``[t0, t1)``; bars missing at either end as notes."""
        stored = self.store.read(*self.ids)
        report = self.report
        inside = None if stored is None else stored[(stored.index >= t0) & (stored.index < t1)]
        if inside is None or inside.empty:
            if stored is not None and not stored.empty:
                report.notes.append(f"stored data spans {_ts(stored.index[0])} .. {_ts(stored.index[-1])}, "
                                    "none of it in the span (the exchange has none there)")
            return report
        report.rows = len(inside)
        report.first, report.last = inside.index[0], inside.index[-1]
        if self.funding:
            report.gaps = _funding_gaps(inside.index)
            if (inside.index[0] - t0).value // 1_000_000 > MAX_FUNDING_INTERVAL_MS:
                report.notes.append(f"no data before {_ts(inside.index[0])} (the exchange has none)")
            return report
        report.gaps = find_gaps(inside.index, self.timeframe)
        ms = inside.index.as_unit("ms").asi8
        first_bar = last_bar - ((last_bar - (t0.value // 1_000_000)) // self.step) * self.step
        head, tail = (ms[0] - first_bar) // self.step, (last_bar - ms[-1]) // self.step
        if head > 0:
            report.notes.append(f"no data before {_ts(ms[0])} ({head} bar(s) of the span; the exchange has none)")
        if tail > 0:
            report.notes.append(f"no data after {_ts(ms[-1])} ({tail} bar(s) of the span)")
        return report


def _funding_gaps(index: pd.DatetimeIndex) -> pd.DataFrame:
    """Settlements more than 8 h apart: ``after``, ``before`` and ``missing`` (hours without a settlement)."""
    ms = index.as_unit("ms").asi8
    steps = np.diff(ms)
    where = np.flatnonzero(steps > MAX_FUNDING_INTERVAL_MS)
    return pd.DataFrame({"after": index[where], "before": index[where + 1],
                         "missing": (steps[where] // HOUR_MS).astype("int64")})


def _ts(value) -> str:
    """``2024-01-01 00:00`` for a Timestamp or epoch milliseconds."""
    ts = value if isinstance(value, pd.Timestamp) else pd.Timestamp(int(value), unit="ms", tz="UTC")
    return ts.strftime("%Y-%m-%d %H:%M")
