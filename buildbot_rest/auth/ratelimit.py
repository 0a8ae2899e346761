# -*- test-case-name: tests.auth.test_ratelimit -*-
"""Failed logins and bad tokens per client address: too many, and the address waits."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger

from buildbot_rest.data.errors import TooManyRequests

log = Logger()

#: the most client addresses whose failures are remembered; past it, the address that
#: failed least recently is forgotten (memory stays bounded under a spread attack)
MAX_ADDRESSES = 10_000


@dataclass(frozen=True)
class RateLimit:
    """``failures`` failed logins or bad tokens of one address within ``period``
    seconds, and the next attempt is refused (``[auth] login_failures`` and
    ``login_period``)."""

    failures: int = 10
    period: float = 60.0


def address_key(address: str) -> str:
    """The unit of rate limiting for a client address: the address itself, or, for an
    IPv6 one, its /64 network (a host usually holds a whole /64, and could otherwise
    rotate through its addresses). An IPv4-mapped IPv6 address counts as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """Counts failures per client address (see :func:`address_key`) within a sliding
    window; ``clock`` gives epoch seconds. Successes are not counted."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.time,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.limit = limit
        self.clock = clock
        self.max_addresses = max_addresses
        #: address key -> times of its last ``limit.failures`` failures, oldest first;
        #: the addresses in the order of their last failure
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        #: address key -> attempts being verified now (a password check takes time:
        #: attempts sent together must not all pass the check before any fails)
        self._pending: dict[str, int] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.limit.period:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, address: str) -> None:
        """Raise :class:`~buildbot_rest.data.errors.TooManyRequests` (429, RFC 6585 4)
        when ``address`` failed ``failures`` times within the last ``period`` seconds;
        ``retry_after`` is the whole seconds until the oldest of those failures leaves
        the window (at least 1)."""
        now = self.clock()
        key = address_key(address)
        times = self._recent(key, now)
        if len(times or ()) + self._pending.get(key, 0) < self.limit.failures:
            return
        # (attempts in flight only: they end within a second or so)
        wait = max(1, math.ceil(times[0] + self.limit.period - now)) if times else 1
        raise TooManyRequests(f"too many failed attempts from this address: try again in "
                              f"{wait} s", retry_after=wait)

    def begin(self, address: str) -> None:
        """An attempt of ``address`` is being verified: it counts against the limit
        until :meth:`end` (call :meth:`check` first)."""
        key = address_key(address)
        self._pending[key] = self._pending.get(key, 0) + 1

    def end(self, address: str) -> None:
        """The attempt :meth:`begin` counted is verified (call :meth:`failed` too if it
        failed)."""
        key = address_key(address)
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def failed(self, address: str, what: str) -> None:
        """Count a failure of ``address`` and log it. ``what`` says what failed
        ("login of 'alice'", "bearer token #12") and never holds the secret."""
        now = self.clock()
        key = address_key(address)
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit.failures)
        else:
            self._failures.move_to_end(key)
        times.append(now)
        self._prune(now)
        log.warn(  # noqa: G010 - twisted.logger has no warning()
            "failed {what} from {address} ({count} of {limit} allowed within {period:g} s)",
            what=what, address=address, count=len(times), limit=self.limit.failures,
            period=self.limit.period)

    def _prune(self, now: float) -> None:
        # Forget the addresses whose failures all left the window, then, if still too
        # many, those that failed least recently.
        # (the first address is the one whose last failure is the oldest)
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > now - self.limit.period and \
                    len(self._failures) <= self.max_addresses:
                break
            del self._failures[key]

    def __len__(self) -> int:
        """How many addresses are remembered."""
        return len(self._failures)
