# -*- test-case-name: tests.auth.test_settings -*-
"""The auth part of the configuration, checked and compiled: ``[auth]`` (by
:func:`buildbot_rest.auth.backends.parse_auth`), ``[authz]`` (by
:func:`buildbot_rest.auth.authz.parse_authz`) and ``allowed_origins``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from buildbot_rest.auth.authz import Authz
    from buildbot_rest.auth.backends import AuthConfig


@dataclass(frozen=True)
class AuthSettings:
    """``auth``: backend, users, role matchers, cookie and rate limits; ``authz``: the
    allow rules; ``allowed_origins``: lowercased fnmatch patterns of origins whose pages
    may call the API with credentials (CORS)."""

    auth: AuthConfig
    authz: Authz
    allowed_origins: tuple[str, ...]


def parse(config: Any) -> AuthSettings:
    """The auth settings of a :class:`~buildbot_rest.config.Config`; ConfigError (one
    line naming the key) for anything unusable."""
    from buildbot_rest.auth.authz import parse_authz
    from buildbot_rest.auth.backends import parse_auth
    from buildbot_rest.config import ConfigError
    origins = []
    for i, origin in enumerate(config.allowed_origins):
        if not isinstance(origin, str) or not origin.strip():
            raise ConfigError(f"allowed_origins[{i}] must be an origin such as "
                              f"\"https://ci.example.org\" (fnmatch patterns allowed), "
                              f"not {origin!r}")
        origins.append(origin.strip().lower().rstrip("/"))
    return AuthSettings(auth=parse_auth(config.auth),
                        authz=parse_authz(config.authz),
                        allowed_origins=tuple(origins))
