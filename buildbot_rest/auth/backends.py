# -*- test-case-name: tests.auth.test_backends -*-
"""Authentication backends and the ``[auth]`` table. (SKELETON: helper A fills it.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.web.iweb import IRequest

from buildbot_rest.auth.ratelimit import RateLimit
from buildbot_rest.auth.roles import RoleMatchers

#: upstream's session lifetime (``cookie_expiration_time``): one week, in seconds
DEFAULT_COOKIE_EXPIRATION = 7 * 24 * 3600.0


class NoAuth:
    """No authentication: nobody logs in (``/auth/login`` is a 404, COMPAT 18)."""

    name = "none"
    supports_login = False

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "NoAuth"}

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None:
        return None

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True)
class AuthConfig:
    """The ``[auth]`` table, compiled."""

    backend: Any = field(default_factory=NoAuth)
    roles: RoleMatchers = field(default_factory=RoleMatchers)
    cookie_expiration: float = DEFAULT_COOKIE_EXPIRATION
    rate_limit: RateLimit = field(default_factory=RateLimit)
    realm: str = "buildbot"


def parse_auth(table: dict[str, Any]) -> AuthConfig:
    return AuthConfig()
