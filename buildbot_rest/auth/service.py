# -*- test-case-name: tests.auth.test_service -*-
"""The auth service: who makes each request (a session cookie, a bearer token, a
trusted proxy's header, or nobody), and what they may read, control and receive.

The parts, one module each: :mod:`~buildbot_rest.auth.session` (upstream's JWT cookie),
:mod:`~buildbot_rest.auth.backends` (passwords and the proxy header),
:mod:`~buildbot_rest.auth.roles` (upstream's role matchers),
:mod:`~buildbot_rest.auth.tokens` (bearer tokens in our own ``bbrest_`` table),
:mod:`~buildbot_rest.auth.authz` (upstream's allow rules, with COMPAT's fixes) and
:mod:`~buildbot_rest.auth.ratelimit` (failed logins and bad tokens per address).

Without configuration every request is anonymous (upstream's ``{"anonymous": true}``)
and every caller may read and control everything (upstream's default ``Authz()``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from buildbot_rest.auth.settings import parse
from buildbot_rest.data.context import ANONYMOUS
from buildbot_rest.data.errors import ServiceUnavailable, TooManyRequests, Unauthenticated

if TYPE_CHECKING:
    from buildbot_rest.config import Config
    from buildbot_rest.data.endpoint import Endpoint
    from buildbot_rest.data.resultspec import ResultSpec
    from buildbot_rest.db import Database

log = Logger()

#: token scopes: ``read`` may only read (and subscribe); ``control`` may also run
#: control actions (JSON-RPC), as a session does
SCOPES = ("read", "control")

#: the attribute of a request where its :class:`Caller` is kept once known
_CALLER = "_bbrest_caller"


@dataclass(frozen=True)
class Caller:
    """Who makes a request.

    ``user`` is the user info upstream keeps in its session (``{"username", "email",
    ...}``, or ``{"anonymous": true}``), as ``/config`` shows it; ``roles`` the roles the
    role matchers give it (the owner role excepted: it depends on the thing acted on),
    or a token's own roles; ``scope`` ``"control"`` or, for a read-only token, ``"read"``;
    ``token_id`` the id of the bearer token used, if any; ``issued`` when its session
    cookie was issued; ``expires`` when its token or cookie expires (epoch seconds;
    None: never, or not known). A long connection (/ws, /sse) asks
    :meth:`AuthService.still_valid` from time to time."""

    user: Mapping[str, Any] = field(default_factory=lambda: ANONYMOUS)
    roles: frozenset[str] = frozenset()
    scope: str = "control"
    token_id: int | None = None
    issued: float | None = None
    expires: float | None = None

    @property
    def anonymous(self) -> bool:
        return bool(self.user.get("anonymous"))


#: the caller of a request that presents no credentials
ANONYMOUS_CALLER = Caller()


class AuthService(Service):
    """The server's authentication and authorization, as a service (started before the
    web site). ``config`` (default: no auth, no rules) and ``db`` (the database of the
    session secret, logouts and tokens; None: sessions and tokens are off, as in a
    program that only reads) are fixed at construction; ``clock`` gives epoch
    seconds."""

    name = "auth"

    def __init__(self, config: Config | None = None, db: Database | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        from buildbot_rest.auth.ratelimit import RateLimiter
        from buildbot_rest.auth.session import Sessions
        from buildbot_rest.auth.tokens import TokenStore
        from buildbot_rest.config import Config as ConfigClass
        self.config = config if config is not None else ConfigClass()
        self.settings = parse(self.config)
        self.db = db
        self.clock = clock
        #: the session cookie (its secret is read by :meth:`prepare_sync`)
        self.sessions = Sessions(self.settings.auth, db, clock=clock)
        #: bearer tokens (None without a database)
        self.tokens = TokenStore(db, clock=clock) if db is not None else None
        #: failed logins and bad tokens, per client address
        self.limiter = RateLimiter(self.settings.auth.rate_limit, clock=clock)

    @property
    def backend(self) -> Any:
        """The configured backend (:mod:`buildbot_rest.auth.backends`)."""
        return self.settings.auth.backend

    @property
    def authz(self) -> Any:
        """The allow rules (:class:`buildbot_rest.auth.authz.Authz`)."""
        return self.settings.authz

    def stopService(self) -> defer.Deferred[None]:
        """Stop, once the pending last-used writes of tokens are done (the database
        stops after this service)."""
        super().stopService()
        if self.tokens is None:
            return defer.succeed(None)
        return defer.ensureDeferred(self.tokens.settle())

    def prepare_sync(self) -> None:
        """Read the session secret from the database, creating it as upstream does when
        missing (blocking: called while the server prepares, before it serves)."""
        if self.db is not None:
            self.sessions.prepare_sync()

    # -- who calls ---------------------------------------------------------------------

    async def caller(self, request: IRequest) -> Caller:
        """The caller of ``request`` (found once, then kept on the request).

        In this order: an ``Authorization: Bearer`` token (a bad, expired or revoked
        one raises :class:`~buildbot_rest.data.errors.Unauthenticated`, 401, COMPAT
        33; too many bad ones from the address raise
        :class:`~buildbot_rest.data.errors.TooManyRequests`, 429); the header of a
        trusted proxy (``remote_user`` backend); the session cookie (invalid, expired or
        logged out: anonymous, COMPAT 17 and 36); else anonymous. Other
        ``Authorization`` schemes are ignored (upstream reads none on the API)."""
        known = getattr(request, _CALLER, None)
        if known is not None:
            return known
        caller = await self._find_caller(request)
        setattr(request, _CALLER, caller)
        return caller

    async def _find_caller(self, request: IRequest) -> Caller:
        from buildbot_rest.auth.tokens import bearer_token
        headers = request.requestHeaders.getRawHeaders(b"authorization") or []
        tokens = [t for t in map(bearer_token, headers) if t is not None]
        if tokens and len(headers) > 1:
            # (which one would count? none: a client that sends a token learns why)
            raise Unauthenticated("send one Authorization header, not several",
                                  challenge='Bearer realm="buildbot", '
                                            'error="invalid_request"')
        if tokens:
            return await self._token_caller(tokens[0], client_address(request))
        user = self.backend.user_from_proxy(request)
        if user is not None:
            return Caller(user=user, roles=self.roles_for(user))
        session = await self.sessions.session(request)
        if session is None:
            return ANONYMOUS_CALLER
        user, issued, expires = session
        return Caller(user=user, roles=self.roles_for(user), issued=issued, expires=expires)

    def revocable(self, caller: Caller) -> bool:
        """Whether ``caller``'s credentials can stop being valid (a token, a session
        cookie: they expire, are revoked, logged out); a proxy's user and an anonymous
        caller cannot."""
        return (caller.token_id is not None or caller.issued is not None
                or caller.expires is not None)

    async def still_valid(self, caller: Caller) -> bool:
        """Whether the credentials ``caller`` was found by still hold: not expired, the
        token not revoked, the session not ended by a logout (for /ws and /sse, whose
        caller is found once). A database that cannot answer keeps them valid."""
        if caller.expires is not None and self.clock() >= caller.expires:
            return False
        try:
            if caller.token_id is not None and self.tokens is not None:
                return await self.tokens.active(caller.token_id)
            if caller.issued is not None:
                return not await self.sessions.logged_out(caller.user, caller.issued)
        except ServiceUnavailable:
            return True
        return True

    async def _token_caller(self, token: str, address: str) -> Caller:
        """The caller of a bearer token. A good token is served whatever its address
        did: a 256-bit secret cannot be guessed, so the limit only slows down those who
        send bad tokens (429 instead of 401 once the address failed too often), and
        another client behind the same proxy cannot lock a script out."""
        try:
            self.limiter.check(address)
            limited = None
        except TooManyRequests as e:
            limited = e
        self.limiter.begin(address)  # (tokens sent together count before they end)
        try:
            if self.tokens is None:
                raise Unauthenticated("bearer tokens are not available on this server")
            return await self.tokens.caller(token, address=address, limiter=self.limiter,
                                            roles_for=self.roles_for)
        except Unauthenticated:
            if limited is not None:
                raise limited from None
            raise
        finally:
            self.limiter.end(address)

    def roles_for(self, user: Mapping[str, Any]) -> frozenset[str]:
        """The roles of ``user`` from the role matchers (owner excepted)."""
        return frozenset(self.settings.auth.roles.roles_for(user))

    def user_for(self, request: IRequest) -> Mapping[str, Any]:
        """The user info of a request whose :meth:`caller` is known (anonymous
        otherwise)."""
        known = getattr(request, _CALLER, None)
        return known.user if known is not None else ANONYMOUS

    # -- what they may do --------------------------------------------------------------

    async def authorize_read(self, caller: Caller, endpoint: Endpoint,
                             kwargs: Mapping[str, Any], spec: ResultSpec) -> ResultSpec:
        """Authorize a read (GET or HEAD, COMPAT 7) of a resolved path (COMPAT 9):
        :class:`~buildbot_rest.data.errors.Forbidden` (403) if the caller may not see
        it; the spec to answer with (a collection may be narrowed to what the caller
        may see, by view rules)."""
        return await self.authz.authorize_read(self, caller, endpoint, kwargs, spec)

    async def authorize_control(self, caller: Caller, endpoint: Endpoint,
                                kwargs: Mapping[str, Any], method: str,
                                params: Mapping[str, Any]) -> None:
        """Authorize a control action ``method`` (as sent, case-sensitive, COMPAT 8) on
        a resolved path, with the params as sent (before the owner is injected):
        :class:`~buildbot_rest.data.errors.Forbidden` (403) when refused, also for a
        read-only token."""
        from buildbot_rest.data.errors import Forbidden
        if caller.scope != "control":
            raise Forbidden("this token may only read (scope \"read\")")
        await self.authz.authorize_control(self, caller, endpoint, kwargs, method, params)

    def may_control(self, caller: Caller) -> bool:
        """Whether ``caller`` may use some control action at all (a read token may
        not; the rules decide for the others)."""
        return caller.scope == "control" and self.authz.may_control_something(self,
                                                                                caller)

    def may_subscribe(self, caller: Caller, key_filter: Sequence[str | None]) -> bool:
        """Whether ``caller`` may receive the events of ``key_filter`` on /ws or /sse.

        The keys of control messages (``control/...``, which tell a master to stop a
        build or a worker) are for callers who may control (COMPAT 20: upstream lets
        anyone subscribe to them); others as the rules say (view rules)."""
        if key_filter[:1] in (("control",), (None,)) and not self.may_control(caller):
            return False
        return bool(self.authz.may_subscribe(self, caller, key_filter))

    def event_filter(self, caller: Caller) -> Callable[[Sequence[str], Mapping[str, Any]],
                                                       bool] | None:
        """For a /ws or /sse client: a test of each event (routing key, message) it may
        receive, or None when it may receive all (no view rule hides anything from
        it)."""
        return self.authz.event_filter(self, caller)

    def frontend_auth(self) -> dict[str, Any]:
        """``auth`` in ``/config``: upstream's ``{"name": "<class name>"}``."""
        return dict(self.backend.frontend_auth())


def client_address(request: IRequest) -> str:
    """The address of the peer that sent ``request`` (the proxy's, behind one)."""
    peer = request.getClientAddress()
    return str(getattr(peer, "host", "") or "")
