"""The retry rules on their own: backoff with jitter, Retry-After, bounded attempts and time, what is retried."""

from __future__ import annotations

import email.utils
import random

import ccxt
import pytest

from data_feeds.retry import GiveUp, PageFault, Retrier, RetryPolicy, describe_error, retry_after_seconds


class Clock:
    """Virtual time: ``sleep`` advances it, so tests check waits without waiting."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def failing(errors, result="ok"):
    """A request that raises each of ``errors`` in turn, then returns ``result``; counts its calls."""
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    fn.calls = calls
    return fn


def test_waits_double_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_attempts=8, max_elapsed=10_000, base_delay=1.0, max_delay=10.0, jitter=0.5)
    clock = Clock()
    fn = failing([ccxt.RequestTimeout("t")] * 7)
    assert Retrier(policy, sleep=clock.sleep, clock=clock, rng=random.Random(1)).call(fn) == "ok"
    caps = [1, 2, 4, 8, 10, 10, 10]
    assert len(clock.sleeps) == 7
    assert all(cap * 0.5 <= wait <= cap for wait, cap in zip(clock.sleeps, caps))
    assert len(set(clock.sleeps)) == 7  # jittered, not a fixed schedule


@pytest.mark.parametrize("error", [ccxt.DDoSProtection("429"), ccxt.RateLimitExceeded("r"),
                                   ccxt.ExchangeNotAvailable("503"), ccxt.RequestTimeout("t"),
                                   ccxt.NetworkError("reset"), ccxt.BadResponse("junk"), PageFault("empty page")])
def test_transient_errors_and_page_faults_are_retried(error):
    clock = Clock()
    fn = failing([error, error])
    assert Retrier(RetryPolicy(base_delay=0.1), sleep=clock.sleep, clock=clock).call(fn) == "ok"
    assert len(fn.calls) == 3


@pytest.mark.parametrize("error", [ccxt.BadSymbol("no such market"), ccxt.AuthenticationError("bad key"),
                                   ccxt.ExchangeError("rejected")])
def test_other_errors_are_raised_at_once(error):
    fn = failing([error])
    with pytest.raises(type(error)):
        Retrier(RetryPolicy(), sleep=Clock().sleep).call(fn)
    assert len(fn.calls) == 1


def test_gives_up_after_the_last_attempt_naming_the_last_error():
    clock = Clock()
    fn = failing([ccxt.ExchangeNotAvailable("binanceusdm GET /fapi/v1/klines 503\n<html>...</html>")] * 10)
    with pytest.raises(GiveUp, match=r"gave up after 4 attempt\(s\) .* ExchangeNotAvailable: binanceusdm GET "
                                     r"/fapi/v1/klines 503$"):
        Retrier(RetryPolicy(max_attempts=4, base_delay=0.1), sleep=clock.sleep, clock=clock).call(fn)
    assert len(fn.calls) == 4


def test_gives_up_when_the_next_wait_would_pass_the_time_budget():
    clock = Clock()
    fn = failing([ccxt.RequestTimeout("t")] * 100)
    policy = RetryPolicy(max_attempts=100, max_elapsed=30.0, base_delay=4.0, max_delay=60.0, jitter=0.0)
    with pytest.raises(GiveUp, match=r"retry budget 30 s"):
        Retrier(policy, sleep=clock.sleep, clock=clock).call(fn)
    assert clock.sleeps == [4.0, 8.0, 16.0]  # a 4th wait of 32 s would end at 60 s
    assert len(fn.calls) == 4


def test_retry_after_header_sets_the_minimum_wait():
    class Exchange:
        last_response_headers = None

    exchange = Exchange()

    def rate_limited():
        if not rate_limited.done:
            rate_limited.done = True
            exchange.last_response_headers = {"Retry-After": "7"}
            raise ccxt.DDoSProtection("binanceusdm 429 Too Many Requests")
        return "ok"

    rate_limited.done = False
    clock = Clock()
    assert Retrier(RetryPolicy(base_delay=0.1), sleep=clock.sleep, clock=clock).call(rate_limited, exchange) == "ok"
    assert clock.sleeps == [7.0]


def test_stale_retry_after_from_an_earlier_answer_is_ignored():
    class Exchange:
        last_response_headers = {"Retry-After": "500"}  # left over from a previous request

    clock = Clock()
    fn = failing([ccxt.RequestTimeout("no answer at all")])
    Retrier(RetryPolicy(base_delay=0.1), sleep=clock.sleep, clock=clock).call(fn, Exchange())
    assert clock.sleeps[0] <= 0.1


@pytest.mark.parametrize("headers, seconds", [({"Retry-After": "120"}, 120.0), ({"retry-after": " 2.5 "}, 2.5),
                                              ({"Retry-After": "soon"}, None), ({}, None), (None, None)])
def test_retry_after_reads_delta_seconds(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_retry_after_reads_an_http_date():
    header = {"Retry-After": email.utils.formatdate(1_700_000_090, usegmt=True)}
    assert retry_after_seconds(header, now=1_700_000_000) == 90.0


def test_error_descriptions_are_one_short_line():
    text = describe_error(ccxt.ExchangeError("x" * 500 + "\nsecond line"))
    assert text.startswith("ExchangeError: xxx") and len(text) < 180 and "\n" not in text
