# -*- test-case-name: tests.auth.test_ratelimit -*-
"""Failed logins and bad tokens per client address. (SKELETON: helper A fills it.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    failures: int = 10
    period: float = 60.0


class RateLimiter:
    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock

    def check(self, address: str) -> None:
        """TooManyRequests (429 with Retry-After) when ``address`` failed too often."""

    def failed(self, address: str, what: str) -> None:
        """Count a failure of ``address`` (``what``: "login for 'alice'", "bearer token
        #12": never the secret), and log it."""
