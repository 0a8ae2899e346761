# -*- test-case-name: tests.auth.test_tokens -*-
"""Bearer tokens (beyond upstream): made, listed, revoked and checked.

A token reads ``bbrest_<id>_<secret>``: ``id`` names its row of ``bbrest_api_tokens``,
``secret`` is 32 random bytes (256 bits, :func:`secrets.token_urlsafe`, 43 characters).
Only the SHA-256 of the secret is stored, compared in constant time
(:func:`hmac.compare_digest`); the token is shown once, when made, and never logged.
A token acts as the user it was made for, with its own roles (or that user's roles from
the role matchers), and a scope: ``read`` (reads and subscriptions only) or ``control``.

A token that is malformed, unknown, wrong, revoked or expired is a 401 with
``WWW-Authenticate: Bearer ... error="invalid_token"`` (RFC 6750 3.1, COMPAT 33), never
an anonymous request, and counts as a failure of the client's address for the rate
limiter. The table is made at the first token (or by ``buildbot-rest token
create-tables``); until then every token is unknown."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from buildbot_rest.auth.service import SCOPES, Caller
from buildbot_rest.auth.tables import api_tokens, ensure_tables, user_key
from buildbot_rest.data.context import unavailable
from buildbot_rest.data.errors import NotFound, Unauthenticated
from buildbot_rest.db.pool import DatabaseUnavailable

log = Logger()

T = TypeVar("T")

#: what every token starts with (so that secret scanners and people can tell one)
PREFIX = "bbrest_"
#: random bytes in a token's secret (256 bits; RFC 6750 10.3 asks for at least 128)
SECRET_BYTES = 32
#: the most a token's id may be (a 32-bit INTEGER column on every database)
MAX_ID = 2**31 - 1
#: last use is written at most once per token in this many seconds
LAST_USED_EVERY = 60
#: the longest a token may live, in seconds (100 years: beyond, say "never")
MAX_LIFETIME = 100 * 365 * 86400
#: the longest description, in characters
MAX_DESCRIPTION = 1000

_TOKEN = re.compile(r"bbrest_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})")
#: compared with when the id is unknown, so that the time taken does not say whether
#: the id exists
_NO_DIGEST = "0" * 64
_DURATION = re.compile(r"([0-9]{1,12})\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def bearer_token(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme
    case-insensitive, RFC 9110 11.1); None for no header or another scheme. A Bearer
    header with nothing usable after the scheme gives ``""`` (a malformed token, not
    an anonymous request)."""
    if not header:
        return None
    # (any white space after the scheme: a tab after "Bearer" is still a token sent,
    # a malformed one, never an anonymous request)
    parts = header.strip().split(None, 1)
    if not parts or parts[0].lower() != b"bearer":
        return None
    return (parts[1] if len(parts) > 1 else b"").strip().decode("latin-1")


def digest_of(secret: str) -> str:
    """The stored form of a token's secret: its SHA-256, 64 hex digits."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_token(token: str) -> tuple[int, str] | None:
    """A token's ``(id, secret)``; None when it is not of our shape."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    token_id = int(match.group(1))
    return (token_id, match.group(2)) if token_id <= MAX_ID else None


def parse_duration(text: str | int) -> int | None:
    """A lifetime in seconds from ``"30d"``, ``"12h"``, ``"90m"``, ``"3600s"``, ``"2w"``,
    a bare number of seconds (text or int), or ``"never"`` (None). ValueError (saying
    what is accepted) for anything else, zero, or more than :data:`MAX_LIFETIME`."""
    if isinstance(text, bool):
        raise ValueError("a lifetime is a number of seconds, a text such as \"30d\", or "
                         "\"never\"")
    if isinstance(text, int):
        seconds = text
    else:
        value = text.strip().lower()
        if value == "never":
            return None
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"invalid lifetime {text!r}: give a number with a unit s, m, "
                             "h, d or w (\"30d\", \"12h\"), seconds, or \"never\"")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"invalid lifetime {text!r}: it must be more than 0 seconds")
    if seconds > MAX_LIFETIME:
        raise ValueError(f"invalid lifetime {text!r}: at most 100 years (or \"never\")")
    return seconds


def iso(when: int | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2026-12-01T09:30:00Z``); None stays None."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TokenInfo:
    """A token's row, never with its secret or digest.

    ``user`` the user info it acts as; ``roles`` its own roles, or None for the roles
    its user gets from the role matchers when it is used; times in epoch seconds."""

    id: int
    user: Mapping[str, Any]
    roles: tuple[str, ...] | None
    scope: str
    #: whether ``roles`` hold only while its user has them (a token a user made)
    within_user: bool
    description: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None

    @property
    def name(self) -> str:
        """Who the token acts as, for people: the username, else the email."""
        return str(self.user.get("username") or self.user.get("email") or "?")

    def state(self, now: float) -> str:
        """``"active"``, ``"revoked"`` or ``"expired"``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def as_json(self) -> dict[str, Any]:
        """The JSON shape of the API and of ``token list --json``: the fields above,
        ``user`` as its user info and ``username`` as :attr:`name`."""
        return {"id": self.id, "username": self.name, "user": dict(self.user),
                "roles": list(self.roles) if self.roles is not None else None,
                "scope": self.scope, "description": self.description,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "last_used_at": self.last_used_at, "revoked_at": self.revoked_at}

    @classmethod
    def from_row(cls, row: Any) -> TokenInfo:
        roles = json.loads(row.roles) if row.roles is not None else None
        return cls(id=row.id, user=json.loads(row.user_info),
                   roles=tuple(roles) if roles is not None else None, scope=row.scope,
                   within_user=bool(row.within_user),
                   description=row.description, created_at=row.created_at,
                   expires_at=row.expires_at, last_used_at=row.last_used_at,
                   revoked_at=row.revoked_at)


class Limiter(Protocol):
    """What counts bad tokens (:class:`buildbot_rest.auth.ratelimit.RateLimiter`)."""

    def failed(self, address: str, what: str) -> None: ...


class TokenStore:
    """The bearer tokens of a database (:class:`buildbot_rest.db.Database`; its
    ``pool`` runs the work off the reactor thread). ``clock`` gives epoch seconds.

    The ``*_sync`` methods run in the calling thread (for the command line); the others
    return on the reactor thread. A database that cannot answer raises
    :class:`~buildbot_rest.data.errors.ServiceUnavailable` (503) from the latter and
    :class:`~buildbot_rest.db.DatabaseUnavailable` from the former."""

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        #: when this process last wrote each token's last use (epoch seconds)
        self._recorded: dict[int, float] = {}
        #: writes of last use still running (see :meth:`settle`)
        self._writes: set[defer.Deferred[Any]] = set()

    # -- making, listing, revoking ------------------------------------------------------

    def create_sync(self, user: Mapping[str, Any], roles: Sequence[str] | None = None,
                    scope: str = "read", expires_in: int | None = None,
                    description: str = "", *,
                    within_user: bool = False) -> tuple[str, TokenInfo]:
        """Make a token for ``user`` (user info with a ``username`` or an ``email``),
        creating the table if missing: ``(token, its row)``. The token is not kept
        anywhere: it is the caller's to show, once. ``roles``: the token's own (None:
        the user's, from the role matchers, when used; ``within_user``: held only while
        the user still has them); ``expires_in``: seconds from now (None: never).
        ValueError for a bad argument."""
        values = self._values(user, roles, scope, expires_in, description, within_user)
        return self.db.pool.run_in_transaction_sync(_create_in, values)

    async def create(self, user: Mapping[str, Any], roles: Sequence[str] | None = None,
                     scope: str = "read", expires_in: int | None = None,
                     description: str = "", *,
                     within_user: bool = False) -> tuple[str, TokenInfo]:
        """:meth:`create_sync` off the reactor thread."""
        values = self._values(user, roles, scope, expires_in, description, within_user)
        return await self._run(True, _create_in, values)

    def list_sync(self, user: Mapping[str, Any] | None = None) -> list[TokenInfo]:
        """Every token (or ``user``'s), oldest first, revoked and expired ones
        included; none before the table exists."""
        return self.db.pool.run_sync(_list_in, _key_or_none(user))

    async def list(self, user: Mapping[str, Any] | None = None) -> list[TokenInfo]:
        """:meth:`list_sync` off the reactor thread."""
        return await self._run(False, _list_in, _key_or_none(user))

    def get_sync(self, token_id: int,
                 user: Mapping[str, Any] | None = None) -> TokenInfo:
        """Token ``token_id`` (when ``user`` is given: only if it is theirs);
        :class:`~buildbot_rest.data.errors.NotFound` otherwise (also for another user's
        token: whether it exists is not told)."""
        return self.db.pool.run_sync(_get_in, token_id, _key_or_none(user))

    async def get(self, token_id: int, user: Mapping[str, Any] | None = None) -> TokenInfo:
        """:meth:`get_sync` off the reactor thread."""
        return await self._run(False, _get_in, token_id, _key_or_none(user))

    def revoke_sync(self, token_id: int,
                    user: Mapping[str, Any] | None = None) -> tuple[TokenInfo, bool]:
        """Revoke token ``token_id`` (when ``user`` is given: only if it is theirs):
        ``(its row, whether it was revoked now)`` (False: it already was). NotFound as
        :meth:`get_sync`. A revoked token is refused from the next request on."""
        return self.db.pool.run_in_transaction_sync(
            _revoke_in, token_id, _key_or_none(user), int(self.clock()))

    async def revoke(self, token_id: int,
                     user: Mapping[str, Any] | None = None) -> tuple[TokenInfo, bool]:
        """:meth:`revoke_sync` off the reactor thread."""
        return await self._run(True, _revoke_in, token_id, _key_or_none(user),
                               int(self.clock()))

    def _values(self, user: Mapping[str, Any], roles: Sequence[str] | None, scope: str,
                expires_in: int | None, description: str,
                within_user: bool = False) -> dict[str, Any]:
        key = user_key(user)
        if key is None or user.get("anonymous"):
            raise ValueError("a token's user needs a username or an email")
        if scope not in SCOPES:
            raise ValueError(f"invalid scope {scope!r}: \"read\" or \"control\"")
        if roles is not None and not all(isinstance(r, str) and r for r in roles):
            raise ValueError("roles must be non-empty strings")
        if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME:
            raise ValueError("a token's lifetime is more than 0 seconds and at most "
                             "100 years")
        if len(description) > MAX_DESCRIPTION:
            raise ValueError(f"a description has at most {MAX_DESCRIPTION} characters")
        now = int(self.clock())
        return {"user_key": key, "user_info": json.dumps(dict(user), sort_keys=True),
                "roles": json.dumps(sorted(set(roles))) if roles is not None else None,
                "scope": scope, "description": description, "created_at": now,
                "within_user": within_user,
                "expires_at": now + expires_in if expires_in is not None else None}

    async def _run(self, write: bool, fn: Callable[..., T], *args: Any) -> T:
        pool = self.db.pool
        try:
            if write:
                return await pool.do_in_transaction(fn, *args)
            return await pool.do(fn, *args)
        except DatabaseUnavailable as e:
            raise unavailable(e) from e

    # -- checking ---------------------------------------------------------------------

    async def caller(self, token: str, *, address: str, limiter: Limiter,
                     roles_for: Callable[[Mapping[str, Any]], frozenset[str]]) -> Caller:
        """The :class:`~buildbot_rest.auth.service.Caller` a bearer token stands for.

        :class:`~buildbot_rest.data.errors.Unauthenticated` (401, RFC 6750 3.1
        ``invalid_token``) for a token that is malformed, unknown, wrong, revoked or
        expired, after counting a failure of ``address`` with ``limiter`` (the token's
        id named, never its secret); ServiceUnavailable (503) when the database cannot
        answer. Its last use is recorded (at most once a minute, without waiting)."""
        parsed = parse_token(token)
        if parsed is None:
            limiter.failed(address, "bearer token (malformed)")
            raise invalid_token("malformed bearer token")
        token_id, secret = parsed
        row = await self._run(False, _load_in, token_id)
        stored = row.digest if row is not None else _NO_DIGEST
        matches = hmac.compare_digest(digest_of(secret).encode(), stored.encode())
        if row is None or not matches:
            limiter.failed(address, f"bearer token #{token_id}")
            raise invalid_token("invalid bearer token")
        now = self.clock()
        info = TokenInfo.from_row(row)
        if info.revoked_at is not None:
            limiter.failed(address, f"bearer token #{token_id} (revoked)")
            raise invalid_token(f"bearer token #{token_id} was revoked at "
                                f"{iso(info.revoked_at)}")
        if info.expires_at is not None and now >= info.expires_at:
            limiter.failed(address, f"bearer token #{token_id} (expired)")
            raise invalid_token(f"bearer token #{token_id} expired at "
                                f"{iso(info.expires_at)}")
        self._record_use(token_id, info.last_used_at, now)
        if info.roles is None:
            roles = frozenset(roles_for(info.user))
        elif info.within_user:  # (a user taken out of a role loses it on this token)
            roles = frozenset(info.roles) & frozenset(roles_for(info.user))
        else:
            roles = frozenset(info.roles)
        return Caller(user=info.user, roles=roles, scope=info.scope, token_id=token_id,
                      expires=info.expires_at)

    async def active(self, token_id: int) -> bool:
        """Whether token ``token_id`` may still be used: it exists, is not revoked and
        has not expired; ServiceUnavailable (503) when the database cannot answer."""
        row = await self._run(False, _load_in, token_id)
        if row is None:
            return False
        info = TokenInfo.from_row(row)
        return info.revoked_at is None and (info.expires_at is None
                                            or self.clock() < info.expires_at)

    def _record_use(self, token_id: int, last_used: int | None, now: float) -> None:
        recent = max(last_used or 0, self._recorded.get(token_id, 0))
        if now - recent < LAST_USED_EVERY:
            return
        self._recorded[token_id] = now
        d = self.db.pool.do_in_transaction(_touch_in, token_id, int(now))
        self._writes.add(d)

        def done(result: object) -> None:
            self._writes.discard(d)
            if isinstance(result, Failure):
                self._recorded.pop(token_id, None)  # tried again at the next use
                log.warn("cannot record the last use of bearer token #{id}: "  # noqa: G010
                         "{error}", id=token_id, error=result.getErrorMessage())
        d.addBoth(done)

    async def settle(self) -> None:
        """Wait for the writes of last use still running (tests; a stop)."""
        while self._writes:
            await defer.DeferredList(list(self._writes), consumeErrors=True)


def invalid_token(description: str) -> Unauthenticated:
    """The 401 of a token that cannot be used (RFC 6750 3.1; ``description`` is plain
    ASCII without quotes)."""
    return Unauthenticated(description, challenge=(
        f'Bearer realm="buildbot", error="invalid_token", '
        f'error_description="{description}"'))


def _key_or_none(user: Mapping[str, Any] | None) -> str | None:
    if user is None:
        return None
    key = user_key(user)
    if key is None:
        raise NotFound("no such token")  # anonymous: has none
    return key


# -- on a database thread ---------------------------------------------------------------


def _has_table(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(api_tokens.name)


def _create_in(conn: sa.Connection, values: dict[str, Any]) -> tuple[str, TokenInfo]:
    ensure_tables(conn)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    result = conn.execute(api_tokens.insert().values(digest=digest_of(secret), **values))
    primary = result.inserted_primary_key
    assert primary is not None
    token_id = int(primary[0])
    if token_id > MAX_ID:  # (2**31 tokens: not a case anyone meets)
        raise ValueError("the token table is full")
    row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).one()
    return f"{PREFIX}{token_id}_{secret}", TokenInfo.from_row(row)


def _load_in(conn: sa.Connection, token_id: int) -> Any:
    # The table is looked for only when the query fails: a check before each query
    # would cost a round trip on every request.
    try:
        return conn.execute(sa.select(api_tokens)
                            .where(api_tokens.c.id == token_id)).one_or_none()
    except sa.exc.DBAPIError:
        conn.rollback()  # (PostgreSQL refuses anything more in a failed transaction)
        if not _has_table(conn):
            return None
        raise


def _list_in(conn: sa.Connection, key: str | None) -> list[TokenInfo]:
    if not _has_table(conn):
        return []
    query = sa.select(api_tokens).order_by(api_tokens.c.id)
    if key is not None:
        query = query.where(api_tokens.c.user_key == key)
    return [TokenInfo.from_row(row) for row in conn.execute(query)]


def _get_in(conn: sa.Connection, token_id: int, key: str | None) -> TokenInfo:
    row = None
    if 0 < token_id <= MAX_ID and _has_table(conn):
        row = conn.execute(sa.select(api_tokens)
                           .where(api_tokens.c.id == token_id)).one_or_none()
    if row is None or (key is not None and row.user_key != key):
        raise NotFound(f"no such token: #{token_id}")
    return TokenInfo.from_row(row)


def _revoke_in(conn: sa.Connection, token_id: int, key: str | None,
               now: int) -> tuple[TokenInfo, bool]:
    info = _get_in(conn, token_id, key)
    changed = conn.execute(api_tokens.update()
                           .where(api_tokens.c.id == token_id,
                                  api_tokens.c.revoked_at.is_(None))
                           .values(revoked_at=now)).rowcount
    if changed:
        info = _get_in(conn, token_id, None)
    return info, bool(changed)


def _touch_in(conn: sa.Connection, token_id: int, now: int) -> None:
    column = api_tokens.c.last_used_at
    conn.execute(api_tokens.update()
                 .where(api_tokens.c.id == token_id,
                        sa.or_(column.is_(None), column <= now - LAST_USED_EVERY))
                 .values(last_used_at=now))
