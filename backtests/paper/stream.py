"""Closed candles from ccxt's websocket client (``ccxt.pro``, shipped inside ccxt), with REST as the safety net.

``lstmbt paper --feed ws``. A background thread keeps one ``watch_ohlcv`` subscription open and turns the
exchange's kline updates into closed candles: a candle is closed once the stream has moved on to a later bar on
the same connection (the exchange sends a bar's final values before the next bar's first update, so by the
exchange's own clock that bar's end has passed). The bar that was forming when a socket dropped is discarded (its final
update may have been lost); duplicate and late klines (a bar at or before the newest one seen) are dropped and
counted. The socket reconnects with backoff.

Everything else still comes from REST (:class:`~backtests.paper.source.LiveSource`): the history before the
start, funding and mark prices, and every bar the stream did not confirm: bars missed while the socket was down
are backfilled from REST before the next decision, and if the stream stays silent for a quarter bar past a bar's
end the bar is fetched from REST instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from data_feeds.exchange import check_exchange_config, check_exchange_id
from data_feeds.retry import RetryPolicy, describe_error
from backtests.paper.source import FUNDING_COLUMNS, LiveSource, Polled, _frame, empty_candles

FEEDS = ("rest", "ws")
DEFAULT_FEED = "rest"


def make_stream_exchange(exchange_id: str, config: Mapping | None = None):
    """The ``ccxt.pro`` client of ``exchange_id`` (public market data only: no keys), with the user's options
    (urls, timeout...). Refused with a clear message where ccxt has no kline stream for that exchange."""
    import ccxt.pro

    check_exchange_id(exchange_id)
    user = dict(config or {})
    check_exchange_config(user)
    options = {"fetchMarkets": {"types": ["linear"]}, **(user.pop("options", {}) or {})}
    cls = getattr(ccxt.pro, exchange_id, None)
    client = cls({"enableRateLimit": True, **user, "options": options}) if cls is not None else None
    if client is None or not client.has.get("watchOHLCV"):
        raise ValueError(f"ccxt has no websocket kline stream for {exchange_id}; use --feed rest")
    return client


class StreamSource(LiveSource):
    """:class:`LiveSource` whose new candles come from ``stream`` (a ``ccxt.pro`` exchange) as they close.

    ``reconnect`` paces the socket's reconnections; ``progress`` hears about drops; ``grace_ms`` (default a quarter
    bar) is how long past a bar's end the stream may stay silent before REST is asked instead; the exchange's
    clock offset is measured again every ``resync_seconds`` (one light request).
    """

    def __init__(self, exchange, stream, symbol: str, timeframe: str, *, policy: RetryPolicy | None = None,
                 on_retry=None, reconnect: RetryPolicy | None = None,
                 progress: Callable[[str], None] | None = None, grace_ms: int | None = None,
                 resync_seconds: float = 5.0):
        super().__init__(exchange, symbol, timeframe, policy=policy, on_retry=on_retry)
        self.stream = stream
        self.reconnect = reconnect or RetryPolicy(max_attempts=1_000_000, max_elapsed=float("inf"), base_delay=1.0,
                                                  max_delay=60.0)
        self.progress = progress or (lambda line: None)
        self.grace_ms = self.step_ms // 4 if grace_ms is None else grace_ms
        self.drops = 0              # sockets that closed under us
        self.backfilled = 0         # bars taken from REST because the stream did not confirm them
        self.streamed = 0           # bars taken from the stream
        self._lock = threading.Lock()
        self._closed: dict[int, list] = {}   # open ms -> [ms, o, h, l, c, v], confirmed closed by the stream
        self._forming: list | None = None    # newest bar seen on the current connection
        self._ignored = 0
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self.resync_seconds = resync_seconds
        self._synced = float("-inf")

    # ------------------------------------------------------------------ life cycle

    def connect(self) -> None:
        super().connect()
        self.stream.set_markets(self.exchange.markets)
        if self._thread is None:
            started = threading.Event()
            self._thread = threading.Thread(target=self._main, args=(started,), name="paper-stream", daemon=True)
            self._thread.start()
            started.wait(10)

    def sync_clock(self) -> None:
        super().sync_clock()
        self._synced = time.monotonic()

    def close(self) -> None:
        """Cancel the subscription and close the socket (waits for the stream thread)."""
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._task = self._loop.create_task(self._watch())
            started.set()
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.run_until_complete(self.stream.close())
            self._loop.close()

    async def _watch(self) -> None:
        failures = 0
        while True:
            try:
                candles = await self.stream.watch_ohlcv(self.symbol, self.timeframe)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (ccxt raises NetworkError and friends on a closed socket)
                with self._lock:
                    if self._connected or failures == 0:
                        self.drops += 1
                    self._connected, self._forming = False, None
                wait = self.reconnect.delay(failures, np.random.default_rng(failures))
                failures += 1
                self.progress(f"paper: websocket down ({describe_error(exc)}); reconnecting in {wait:.1f} s")
                await asyncio.sleep(wait)
                continue
            failures = 0
            self._receive(candles)

    def _receive(self, candles: list[list]) -> None:
        """Kline updates of the current connection, oldest first: a bar is closed once a later bar has begun."""
        with self._lock:
            self._connected = True
            for row in sorted(candles, key=lambda r: r[0]):
                t = int(row[0])
                forming = self._forming
                if forming is None or t == forming[0]:
                    self._forming = [t, *map(float, row[1:6])]
                elif t > forming[0]:
                    self._closed[forming[0]] = forming
                    self._forming = [t, *map(float, row[1:6])]
                else:
                    self._ignored += 1   # a duplicate or late kline of a bar already closed

    # ------------------------------------------------------------------ polling

    def poll(self, after: pd.Timestamp | None, since: pd.Timestamp) -> Polled:
        """As :meth:`LiveSource.poll`; the history (``after`` None) comes from REST, new bars from the stream, bars
        the stream missed from REST. Makes no request while no bar has closed."""
        if after is None:
            return super().poll(after, since)
        held = int(after.value // 1_000_000)
        if time.monotonic() - self._synced >= self.resync_seconds:
            self.sync_clock()
        now = self.now_ms()
        last_closed = self.last_closed_open_ms(now)
        with self._lock:
            confirmed = {t: row for t, row in self._closed.items() if t > held}
            for t in [t for t in self._closed if t <= held]:
                del self._closed[t]
            ignored, self._ignored = self._ignored, 0
        first = held + self.step_ms
        if not confirmed:
            if last_closed >= first and now >= first + self.step_ms + self.grace_ms:  # the stream is silent
                polled = super().poll(after, since)
                self.backfilled += len(polled.candles)
                polled.ignored += ignored
                return polled
            nothing = _frame(np.empty((0, 2)), FUNDING_COLUMNS)
            return Polled(empty_candles(), nothing, None, ignored, pd.Timestamp(now, unit="ms", tz="UTC"))
        newest = max(confirmed)
        missing = [t for t in range(first, newest + 1, self.step_ms) if t not in confirmed]
        rows = list(confirmed.values())
        if missing:  # the socket was down: those bars come from REST, before any decision
            fetched = self._rows("candles", missing[0], missing[-1])
            fetched = fetched[np.isin(fetched[:, 0], missing)] if len(fetched) else fetched
            rows.extend(fetched.tolist())
            self.backfilled += len(fetched)
            self.progress(f"paper: {len(fetched)} bar(s) the stream missed fetched from REST")
        self.streamed += len(confirmed)
        table = np.array(sorted(rows, key=lambda r: r[0]), dtype="float64").reshape(-1, 6)
        polled = self._polled(table, after, first, max(now, newest + self.step_ms), newest)
        polled.ignored += ignored
        return polled
