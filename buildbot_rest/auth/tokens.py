# -*- test-case-name: tests.auth.test_tokens -*-
"""Bearer tokens. (SKELETON: helper B fills it.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def bearer_token(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme
    case-insensitive, RFC 9110 11.1); None for no header or another scheme."""
    if not header:
        return None
    scheme, _, rest = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return rest.strip().decode("latin-1")


class TokenStore:
    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def caller(self, token: str, *, address: str, limiter: Any,
                     roles_for: Callable[..., Any]) -> Any:
        from buildbot_rest.data.errors import Unauthenticated
        raise Unauthenticated("invalid bearer token",
                              challenge='Bearer realm="buildbot", error="invalid_token"')
