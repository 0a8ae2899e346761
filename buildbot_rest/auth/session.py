# -*- test-case-name: tests.auth.test_session -*-
"""Upstream's session cookie: a JWT (HS256) signed with the secret its masters share."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, cast

import jwt
import sqlalchemy as sa
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from buildbot_rest.auth import tables
from buildbot_rest.db.pool import DatabaseUnavailable, first_line
from buildbot_rest.db.schema import object_state, objects

if TYPE_CHECKING:
    from buildbot_rest.auth.backends import AuthConfig
    from buildbot_rest.db import Database

log = Logger()

#: the cookie of a plain HTTP request and of a TLS one (upstream's names, taken from
#: Twisted's own sessions; a site mounted at the root adds no suffix)
COOKIE_NAME = b"TWISTED_SESSION"
SECURE_COOKIE_NAME = b"TWISTED_SECURE_SESSION"

#: the one signature algorithm upstream uses and accepts (``SESSION_SECRET_ALGORITHM``)
ALGORITHM = "HS256"
#: the bits of a new secret (upstream's ``SESSION_SECRET_LENGTH``)
SECRET_BITS = 128

#: where upstream keeps the secret: the ``objects`` row of its web service, and the
#: ``object_state`` name under it (the value is JSON: a string of hex digits)
SECRET_OBJECT = ("www", "buildbot.www.service.WWWService")
SECRET_STATE = "session_secret"

#: how many times a race with another creator of the secret is run again
_CREATE_TRIES = 3


def cookie_name(request: IRequest) -> bytes:
    """The session cookie's name for ``request``: :data:`SECURE_COOKIE_NAME` over TLS,
    else :data:`COOKIE_NAME` (upstream's ``build_cookie_name`` for a root site)."""
    return SECURE_COOKIE_NAME if request.isSecure() else COOKIE_NAME


class SessionsUnavailable(Exception):
    """Sessions are off: the database holds no session secret and cannot store one."""


class Sessions:
    """Session cookies as upstream makes them, so that a cookie of an upstream master
    sharing the database works here and the other way round.

    The cookie's value is a JWT signed with HS256 and the database's shared secret,
    holding ``{"user_info": {...}, "exp": <epoch seconds>}`` (upstream's claims) and
    ``iat`` (epoch seconds, to the millisecond: PyJWT accepts it) so that a logout can
    refuse the copies issued before it (COMPAT 36). ``auth`` gives the lifetime
    (``cookie_expiration`` seconds); ``db`` holds the secret and the logouts (None:
    sessions are off); ``clock`` gives epoch seconds."""

    def __init__(self, auth: AuthConfig, db: Database | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.auth = auth
        self.db = db
        self.clock = clock
        #: the shared secret (hex digits), once :meth:`prepare_sync` found or made it
        self.secret: str | None = None

    @property
    def available(self) -> bool:
        """Whether cookies can be made and read (the secret is known)."""
        return self.secret is not None

    # -- the secret --------------------------------------------------------------------

    def prepare_sync(self) -> None:
        """Read the shared secret, creating it as upstream's ``makeSessionSecret`` does
        when missing: the ``objects`` row (``www``, ``buildbot.www.service.WWWService``)
        and its ``object_state`` ``session_secret``, 128 random bits as a JSON string of
        hex digits. A concurrent creator (another master starting) wins: its row is read
        back. A database that cannot store a secret (read-only) leaves sessions off,
        with one error logged. Blocking: called before the server serves."""
        if self.db is None:
            return
        engine = self.db.engine
        for _ in range(_CREATE_TRIES):
            with engine.connect() as conn:
                found = _read_secret(conn)
            if found is not None:
                self.secret = _checked_secret(found)
                return
            try:
                with engine.connect() as conn:
                    conn.execution_options(write=True)
                    with conn.begin():
                        _create_secret(conn, os.urandom(SECRET_BITS // 8).hex())
            except sa.exc.IntegrityError:
                continue  # another master created it first: read theirs
            except sa.exc.DBAPIError as e:
                with engine.connect() as conn:
                    found = _read_secret(conn)
                if found is not None:
                    self.secret = _checked_secret(found)
                    return
                log.error("sessions are off: the database holds no session secret and "
                          "cannot store one ({cause}); /auth/login answers 503",
                          cause=first_line(e))
                return
        with engine.connect() as conn:
            found = _read_secret(conn)
        if found is None:
            log.error("sessions are off: the session secret could not be created")
            return
        self.secret = _checked_secret(found)

    # -- cookies -----------------------------------------------------------------------

    def encode(self, user_info: Mapping[str, Any]) -> str:
        """A cookie value for ``user_info`` (SessionsUnavailable without a secret)."""
        if self.secret is None:
            raise SessionsUnavailable("sessions are off (no session secret)")
        now = self.clock()
        claims = {"user_info": dict(user_info),
                  "exp": int(now + self.auth.cookie_expiration),
                  "iat": round(now, 3)}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> tuple[dict[str, Any], float] | None:
        """The user info of a valid cookie value and when it was issued (see
        :meth:`decode_times`), or None."""
        decoded = self.decode_times(token)
        return None if decoded is None else decoded[:2]

    def decode_times(self, token: str) -> tuple[dict[str, Any], float, float] | None:
        """The user info of a valid cookie value, when it was issued and when it expires
        (epoch seconds), or None for anything else: a bad signature, another algorithm
        (``none`` included), garbage, an expired token, one without ``user_info`` or
        whose ``user_info`` is not an object (COMPAT 17: anonymous; never an error).
        A token without ``iat`` (an upstream master's) was issued ``cookie_expiration``
        before it expires."""
        if self.secret is None or not token:
            return None
        try:
            # (the times are checked below, against this service's clock)
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM],
                                options={"verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False})
        except Exception:  # noqa: BLE001 - any undecodable cookie is no session
            return None
        now = self.clock()
        exp, not_before = _number(claims.get("exp")), _number(claims.get("nbf", now))
        if exp is None or now >= exp or not_before is None or not_before > now:
            return None
        user_info = claims.get("user_info")
        if not isinstance(user_info, dict):
            return None
        issued = _number(claims.get("iat"))
        if issued is None:
            issued = exp - self.auth.cookie_expiration
        return user_info, issued, exp

    async def user(self, request: IRequest) -> dict[str, Any] | None:
        """The user info of ``request``'s session cookie, or None (no cookie, an invalid
        or expired one, an anonymous one, or one issued at or before that user's last
        logout). The logout is read on a database thread; a database that cannot
        answer raises :class:`~buildbot_rest.data.errors.ServiceUnavailable` (503)."""
        session = await self.session(request)
        return None if session is None else session[0]

    async def session(self, request: IRequest) -> tuple[dict[str, Any], float, float] | None:
        """As :meth:`user`, with when the cookie was issued and when it expires (epoch
        seconds)."""
        decoded = self._cookie(request)
        if decoded is None:
            return None
        user_info, issued, _ = decoded
        if await self.logged_out(user_info, issued):
            return None
        return decoded

    async def logged_out(self, user_info: Mapping[str, Any], issued: float) -> bool:
        """Whether ``user_info``'s session issued at ``issued`` (epoch seconds) ended by
        a logout since (COMPAT 36); ServiceUnavailable (503) when the database cannot
        answer."""
        key = tables.user_key(user_info)
        if key is None or self.db is None:
            return False
        try:
            out = await self.db.pool.do(tables.logged_out_at, key)
        except DatabaseUnavailable as e:
            from buildbot_rest.data.context import unavailable
            raise unavailable(e) from e
        return out is not None and issued * 1000 <= out

    def cookie_user(self, request: IRequest) -> dict[str, Any] | None:
        """The user info of ``request``'s valid session cookie, not checked against
        logouts (for a logout), or None."""
        decoded = self._cookie(request)
        return decoded[0] if decoded is not None else None

    def _cookie(self, request: IRequest) -> tuple[dict[str, Any], float, float] | None:
        if self.secret is None:
            return None
        raw = request.getCookie(cookie_name(request))
        if not raw:
            return None
        try:
            token = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        decoded = self.decode_times(token)
        if decoded is None or decoded[0].get("anonymous"):
            return None
        return decoded

    def set_cookie(self, request: IRequest, user_info: Mapping[str, Any]) -> None:
        """Give ``request``'s client a session cookie of ``user_info``: ``Path=/``,
        ``HttpOnly``, ``SameSite=Lax`` (COMPAT 17), ``Secure`` over TLS, expiring with
        the token (``Max-Age`` and ``Expires``). SessionsUnavailable without a
        secret."""
        token = self.encode(user_info)
        lifetime = int(self.auth.cookie_expiration)
        self._add_cookie(request, token.encode("ascii"), lifetime)

    def clear_cookie(self, request: IRequest) -> None:
        """Remove the client's session cookie (an empty one that has expired)."""
        self._add_cookie(request, b"", 0)

    def _add_cookie(self, request: IRequest, value: bytes, lifetime: int) -> None:
        expires = formatdate(self.clock() + lifetime if lifetime else 0, usegmt=True)
        # (IRequest's addCookie lacks Twisted's httpOnly and sameSite)
        cast(Request, request).addCookie(
            cookie_name(request), value, path=b"/", httpOnly=True,
            sameSite="lax", secure=request.isSecure(), max_age=str(lifetime).encode(),
            expires=expires.encode())

    async def logout(self, request: IRequest, user_info: Mapping[str, Any] | None) -> None:
        """Log ``user_info`` (the session's user, or None) out: record the time (epoch
        ms) in ``bbrest_logouts`` so that every copy of its cookies issued until now is
        refused (COMPAT 36), then remove the client's cookie. A database that cannot
        record it is logged; the cookie is removed all the same."""
        key = tables.user_key(user_info) if user_info else None
        if key is not None and self.db is not None:
            when = math.ceil(self.clock() * 1000)
            try:
                await self.db.pool.do_in_transaction(tables.record_logout, key, when)
            except (DatabaseUnavailable, sa.exc.DBAPIError) as e:
                log.error("the logout of {user} could not be recorded: {cause}; copies "
                          "of its session cookie stay valid until they expire",
                          user=key, cause=first_line(e))
        self.clear_cookie(request)


def _number(value: Any) -> float | None:
    """A JWT NumericDate as a float; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value):
        return float(value)
    return None


def _read_secret(conn: sa.Connection) -> Any:
    """The decoded JSON of the stored secret, or None when there is none."""
    row = conn.execute(
        sa.select(object_state.c.value_json)
        .select_from(object_state.join(objects, objects.c.id == object_state.c.objectid))
        .where(objects.c.name == SECRET_OBJECT[0],
               objects.c.class_name == SECRET_OBJECT[1],
               object_state.c.name == SECRET_STATE)).first()
    if row is None:
        return None
    try:
        return json.loads(row.value_json)
    except ValueError:
        return row.value_json  # (refused by _checked_secret)


def _checked_secret(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    log.error("sessions are off: the stored session secret ({object} / {state}) is not "
              "a string", object=SECRET_OBJECT[0], state=SECRET_STATE)
    return None


def _create_secret(conn: sa.Connection, secret: str) -> None:
    """Insert the web service's ``objects`` row when missing and the secret under it,
    in the caller's transaction; IntegrityError when another creator came first."""
    objectid = conn.execute(
        sa.select(objects.c.id).where(objects.c.name == SECRET_OBJECT[0],
                                      objects.c.class_name == SECRET_OBJECT[1])).scalar()
    if objectid is None:
        inserted = conn.execute(objects.insert().values(
            name=SECRET_OBJECT[0], class_name=SECRET_OBJECT[1])).inserted_primary_key
        assert inserted is not None
        objectid = inserted[0]
    conn.execute(object_state.insert().values(objectid=objectid, name=SECRET_STATE,
                                              value_json=json.dumps(secret)))
