"""The rate limiter of failed logins and bad tokens (buildbot_rest.auth.ratelimit): the
window, Retry-After, what counts, bounded memory and the log line."""

from __future__ import annotations

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from buildbot_rest.auth.ratelimit import RateLimit, RateLimiter, address_key
from buildbot_rest.data.errors import TooManyRequests


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limit_then_retry_after_until_the_oldest_failure_leaves() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(failures=3, period=60), clock=clock)
    for step in range(3):
        limiter.check("192.0.2.1")
        limiter.failed("192.0.2.1", "login of 'alice'")
        clock.now += 10 * (step < 2)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("192.0.2.1")
    assert refused.value.status == 429
    # the first failure was at t, now is t+20: it leaves the window in 40 s
    assert refused.value.retry_after == 40
    limiter.check("192.0.2.2")  # (another address is not affected)
    clock.now += 39.5
    with pytest.raises(TooManyRequests) as again:
        limiter.check("192.0.2.1")
    assert again.value.retry_after == 1  # (at least 1)
    clock.now += 0.5
    limiter.check("192.0.2.1")  # one failure left the window: allowed again


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert address_key("::ffff:192.0.2.9") == "192.0.2.9"
    assert address_key("unix") == "unix"
    limiter = RateLimiter(RateLimit(failures=2, period=60), clock=Clock())
    limiter.failed("2001:db8::1", "x")
    limiter.failed("2001:db8::2", "x")
    with pytest.raises(TooManyRequests):
        limiter.check("2001:db8::3")
    limiter.check("2001:db8:0:1::1")


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(failures=5, period=60), clock=clock, max_addresses=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", "x")
    assert len(limiter) == 100
    # the most recent are kept
    for _ in range(4):
        limiter.failed("10.0.3.231", "x")
    with pytest.raises(TooManyRequests):
        limiter.check("10.0.3.231")
    # entries that left the window go first
    clock.now += 61
    limiter.failed("192.0.2.1", "x")
    assert len(limiter) == 1


def test_failure_logged_without_secret() -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        RateLimiter(RateLimit()).failed("192.0.2.5", "login of 'alice'")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events]
    assert lines == ["failed login of 'alice' from 192.0.2.5 (1 of 10 allowed within 60 s)"]
