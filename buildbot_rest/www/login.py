# -*- test-case-name: tests.www.test_login -*-
"""``/auth/login`` and ``/auth/logout``: upstream's session pages, with COMPAT's fixes."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from buildbot_rest.auth.service import client_address
from buildbot_rest.data.errors import (
    ApiError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
)
from buildbot_rest.www.frontend import buildbot_url
from buildbot_rest.www.rest import Responder, answer_async, error_body, error_headers

if TYPE_CHECKING:
    from buildbot_rest.auth.service import AuthService

log = Logger()

#: the methods of each page: logout also by POST (a form); HEAD as GET, without a body
_METHODS = {b"login": (b"GET", b"HEAD"), b"logout": (b"GET", b"HEAD", b"POST")}

#: what a redirect keeps as is in the URL's fragment (RFC 3986 3.5), the rest escaped
_FRAGMENT_SAFE = "/?:@!$&'()*+,;=-._~"
#: how many layers of percent-encoding of a redirect are looked through
_DECODINGS = 4
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def safe_redirect(raw: bytes | None) -> str:
    """The ``redirect`` parameter (one percent-decoding done) if it stays inside the
    site, else ``"/"`` (COMPAT 18 and 36): a path that starts with ``/``, with no
    ``//`` at its start, no backslash, no scheme and no control character, also once
    its percent-escapes are decoded (up to a few layers); UTF-8 only."""
    if raw is None:
        return "/"
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "/"
    candidate = value
    for _ in range(_DECODINGS):
        if not _inside(candidate):
            return "/"
        decoded = unquote(candidate, errors="strict")
        if decoded == candidate:
            return value
        candidate = decoded
    return "/"


def _inside(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return False
    if _SCHEME.match(value):
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header (RFC 7617: base64 of
    UTF-8 ``user:password``); None when the request has no Basic credentials.
    :class:`ValueError` for Basic credentials that cannot be read (two headers, bad
    base64, not UTF-8, no ``:``, no user)."""
    headers = request.requestHeaders.getRawHeaders(b"authorization") or []
    basic = [h for h in headers if h.strip()[:6].lower() == b"basic "]
    if not basic:
        return None
    if len(headers) != 1:
        raise ValueError("several Authorization headers")
    encoded = basic[0].strip()[6:].strip()
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValueError("credentials that are not base64 of UTF-8 text") from None
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise ValueError("credentials without a user name")
    return user, password


class AuthPages(Resource):
    """``/auth/login`` and ``/auth/logout`` (``request.postpath`` ``[b"login"]`` or
    ``[b"logout"]``; the caller has set the common headers). ``base_url`` is the
    server's public URL, ending with ``/``: pages redirect to
    ``<base_url>#<redirect>`` as upstream (``redirect`` from the query, default ``/``);
    when ``config`` (the server's :class:`~buildbot_rest.config.Config`) derived it from
    the port, to the origin the request came to, as ``/config``'s ``buildbotURL``.

    - ``GET /auth/login`` with a password backend: Basic credentials (RFC 7617). Good:
      the session cookie, then 302. None: 401 with ``WWW-Authenticate: Basic
      realm=..., charset="UTF-8"``. Bad: the same, counted by the rate limiter (429 with
      ``Retry-After`` once over the limit). With ``remote_user``: from a trusted proxy
      with its header, the cookie and 302; else 403. Without a backend: 404 (COMPAT 18).
      Sessions off (no secret): 503.
    - ``GET`` or ``POST /auth/logout``: the user's cookies issued until now are refused
      from then on (COMPAT 36), the cookie is removed, then 302 (with every backend).

    Every error is JSON; other methods are 405 with ``Allow``."""

    isLeaf = True

    def __init__(self, auth: AuthService, base_url: str, config: Any = None) -> None:
        super().__init__()
        self.auth = auth
        self.base_url = base_url
        self.config = config

    def render(self, request: Request) -> Any:
        request.setHeader(b"cache-control", b"no-store")
        return answer_async(request, lambda responder: self._handle(request, responder))

    async def _handle(self, request: Request, responder: Responder) -> None:
        page = request.postpath[0] if request.postpath and len(request.postpath) == 1 \
            else None
        try:
            if page not in _METHODS:
                raise NotFound("Invalid path: /auth/" + b"/".join(
                    request.postpath or []).decode("utf-8", "replace"))
            allowed = _METHODS[page]
            if request.method not in allowed:
                responder.send(405, error_body(
                    f"method {request.method.decode('latin-1')!r} is not allowed here"),
                    headers={b"allow": b", ".join(allowed)})
                return
            if page == b"login":
                await self._login(request)
            else:
                await self._logout(request)
        except ApiError as e:
            if responder.disconnected:
                return
            responder.send(e.status, error_body(e.message), headers=error_headers(e))
            return
        if not responder.disconnected:
            self._redirect(request)

    def _redirect(self, request: Request) -> None:
        target = safe_redirect((request.args or {}).get(b"redirect", [None])[0])
        # (the UI's own address, as /config's buildbotURL: with a base_url derived from
        # the port, the origin the browser used, so that the cookie just set is sent)
        root = buildbot_url(self.config, self.base_url, request)
        location = root + "#" + quote(target, safe=_FRAGMENT_SAFE)
        request.setResponseCode(302)
        request.setHeader(b"location", location.encode("ascii"))
        request.setHeader(b"content-length", b"0")
        request.finish()

    async def _login(self, request: Request) -> None:
        auth = self.auth
        backend = auth.backend
        if backend.login is None:
            raise NotFound("no authentication is configured on this server ([auth] "
                           "backend = \"none\"): there is nothing to log in to")
        if not auth.sessions.available:
            raise ServiceUnavailable("sessions are off on this server: its database "
                                     "holds no session secret (see its log)")
        if backend.login == "proxy":
            user = backend.user_from_proxy(request)
            if user is None:
                raise Forbidden("this server takes its users from its reverse proxy: "
                                "/auth/login works only through the proxy, once it has "
                                "authenticated you")
            auth.sessions.set_cookie(request, user)
            return
        address = client_address(request)
        auth.limiter.check(address)
        challenge = f'Basic realm="{auth.settings.auth.realm}", charset="UTF-8"'
        try:
            credentials = basic_credentials(request)
        except ValueError as e:
            auth.limiter.failed(address, f"login (Basic {e})")
            raise Unauthenticated(f"unreadable Basic credentials: {e}",
                                  challenge=challenge) from None
        if credentials is None:
            raise Unauthenticated("log in with a user name and password (HTTP Basic "
                                  "authentication)", challenge=challenge)
        username, password = credentials
        auth.limiter.begin(address)  # (attempts sent together count before they end)
        try:
            user = await backend.check_password(username, password)
        finally:
            auth.limiter.end(address)
        if user is None:
            auth.limiter.failed(address, f"login of {username[:64]!r}")
            raise Unauthenticated("wrong user name or password", challenge=challenge)
        auth.sessions.set_cookie(request, user)

    async def _logout(self, request: Request) -> None:
        sessions = self.auth.sessions
        user = sessions.cookie_user(request)
        await sessions.logout(request, user)
