"""Retrying a request: exponential backoff with jitter, Retry-After honoured, bounded in attempts and time.

Retried: ccxt's transient errors (``NetworkError`` and its subclasses ``DDoSProtection`` (Binance's HTTP 429),
``RateLimitExceeded``, ``ExchangeNotAvailable`` (5xx), ``RequestTimeout``; and ``BadResponse``), and
:class:`PageFault`, a page that arrived but cannot be trusted yet. Anything else (a bad symbol, a
rejected request) is raised at once. ccxt never honours ``Retry-After``; :class:`Retrier` reads it from
``exchange.last_response_headers`` after a 429/5xx and waits at least that long.

With the default policy the waits are about 1, 2, 4, 8, 16, 32, 60 s (each scaled by a random factor in
[0.5, 1]), and a request is given up after 8 attempts or 300 s, whichever comes first.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import ccxt

T = TypeVar("T")

TRANSIENT = (ccxt.NetworkError, ccxt.BadResponse)
_ASKS_TO_WAIT = (ccxt.DDoSProtection, ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable)


class PageFault(Exception):
    """A page that came back but is wrong or not yet confirmed (empty mid-span, off-grid, missing values)."""


class GiveUp(Exception):
    """Retries exhausted; ``str()`` says how many attempts, how long and the last error."""

    def __init__(self, message: str, last_error: BaseException | None = None):
        super().__init__(message)
        self.last_error = last_error


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry one request.

    ``max_attempts`` tries in all, within ``max_elapsed`` seconds from the first try (waits included).
    The n-th wait (n = 0, 1, ...) is ``min(max_delay, base_delay * 2**n)`` times a random factor in
    ``[1 - jitter, 1]``, but never shorter than the exchange's Retry-After.
    """

    max_attempts: int = 8
    max_elapsed: float = 300.0
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        raw = min(self.max_delay, self.base_delay * 2.0 ** retry)
        return raw * (1.0 - self.jitter * rng.random())


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or an HTTP date), or None when absent/unreadable."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error(exc: BaseException) -> str:
    """``ClassName: first line of the message`` cut to 160 characters (ccxt messages can hold a whole page)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class Retrier:
    """Runs a request under a :class:`RetryPolicy`; ``on_retry(error, wait_seconds)`` hears about each retry."""

    def __init__(self, policy: RetryPolicy | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 on_retry: Callable[[BaseException, float], None] | None = None):
        self.policy = policy or RetryPolicy()
        self.sleep, self.clock = sleep, clock
        self.rng = rng or random.Random()
        self.on_retry = on_retry

    def call(self, fn: Callable[[], T], exchange: ccxt.Exchange | None = None) -> T:
        """``fn()``, retried on transient errors and :class:`PageFault`; raises :class:`GiveUp` when exhausted."""
        policy = self.policy
        started = self.clock()
        for attempt in range(policy.max_attempts):
            if exchange is not None:
                exchange.last_response_headers = None  # so a stale header is never mistaken for this answer's
            try:
                return fn()
            except (*TRANSIENT, PageFault) as exc:
                error = exc
            elapsed = self.clock() - started
            if attempt + 1 >= policy.max_attempts:
                break
            wait = policy.delay(attempt, self.rng)
            asked = None
            if exchange is not None and isinstance(error, _ASKS_TO_WAIT):
                asked = retry_after_seconds(exchange.last_response_headers)
            if asked is not None:
                if elapsed + asked > policy.max_elapsed:
                    raise GiveUp(f"the exchange asked to wait {asked:.0f} s (Retry-After), beyond the "
                                 f"{policy.max_elapsed:.0f} s retry budget; last error {describe_error(error)}",
                                 error)
                wait = max(wait, asked)
            if elapsed + wait > policy.max_elapsed:
                raise GiveUp(f"gave up after {attempt + 1} attempt(s) in {elapsed:.0f} s (retry budget "
                             f"{policy.max_elapsed:.0f} s); last error {describe_error(error)}", error)
            if self.on_retry is not None:
                self.on_retry(error, wait)
            self.sleep(wait)
        elapsed = self.clock() - started
        raise GiveUp(f"gave up after {policy.max_attempts} attempt(s) in {elapsed:.0f} s; "
                     f"last error {describe_error(error)}", error)
