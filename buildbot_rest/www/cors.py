# -*- test-case-name: tests.www.test_cors -*-
"""CORS on ``/api/v2``: upstream's origin check (protocol.md 6.6), made correct
(COMPAT 35).

A request without ``Origin`` is not checked. One whose ``Origin`` is the server's own
(its scheme and ``Host``, see :func:`buildbot_rest.www.jsonrpc.origin_allowed`) or
``base_url``'s passes; so does one whose origin matches a configured
``allowed_origins`` pattern, and only such a one is told it may send credentials
(``Access-Control-Allow-Credentials: true``: the session cookie, or a bearer token in
``Authorization``). Any other is refused with upstream's 400 ``invalid origin``. Every
answer says ``Vary: Origin``, since what it carries depends on that header (upstream's
has none, so a cache could serve one origin's answer to another)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from twisted.web.iweb import IRequest

from buildbot_rest.www.encoding import JSON_TYPE
from buildbot_rest.www.headers import add_vary
from buildbot_rest.www.jsonrpc import configured_origin, origin_allowed

#: the methods a preflight may ask for (upstream's)
METHODS = (b"GET", b"HEAD", b"POST")
#: the request headers a cross-origin page may send: JSON-RPC's content type, and a
#: bearer token
ALLOW_HEADERS = b"Content-Type, Authorization"
#: how long a browser may keep a preflight's answer, in seconds (upstream's)
MAX_AGE = b"3600"


def handle(request: IRequest, *, allowed_origins: Sequence[str], base_url: str) -> bool:
    """Check the ``Origin`` of an ``/api/v2`` request; True when it is answered here
    (a preflight, or a refusal), False when the request goes on (its CORS headers set).

    ``allowed_origins`` are lowercased fnmatch patterns (the checked configuration,
    :class:`buildbot_rest.auth.settings.AuthSettings`), ``base_url`` the server's.
    Refusals are upstream's: 400 (labelled JSON, COMPAT 6), ``{"error": {"message":
    "invalid origin"}}`` for a POST (JSON-RPC callers read ``error.message``) and
    ``{"error": "invalid origin"}`` otherwise; a preflight for a method other than
    GET, HEAD or POST is ``invalid method``. A preflight is 200 with an empty body."""
    add_vary(request, b"Origin")
    origins = request.requestHeaders.getRawHeaders(b"origin")
    if origins is None:
        return False
    if not origin_allowed(origins, secure=request.isSecure(), host=request.getHeader(b"host"),
                          base_url=base_url, allowed_origins=allowed_origins):
        _refuse(request, "invalid origin")
        return True
    origin = origins[0].decode("ascii").strip().lower()
    preflight = request.method == b"OPTIONS"
    if preflight and request.getHeader(b"access-control-request-method") not in METHODS:
        _refuse(request, "invalid method")
        return True
    request.setHeader(b"access-control-allow-origin", origin.encode("ascii"))
    if configured_origin(origin, allowed_origins):
        request.setHeader(b"access-control-allow-credentials", b"true")
    if not preflight:
        return False
    request.setHeader(b"access-control-allow-methods", b", ".join(METHODS))
    request.setHeader(b"access-control-allow-headers", ALLOW_HEADERS)
    request.setHeader(b"access-control-max-age", MAX_AGE)
    request.setResponseCode(200)
    request.setHeader(b"content-length", b"0")
    request.finish()
    return True


def _refuse(request: IRequest, message: str) -> None:
    doc: object = {"error": {"message": message}} if request.method == b"POST" else {
        "error": message}
    body = json.dumps(doc).encode()
    request.setResponseCode(400)
    # (upstream labels it text/plain; every JSON body here is JSON, COMPAT 6)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"content-length", str(len(body)).encode())
    request.write(body)
    request.finish()
