# -*- test-case-name: tests.www.test_edges -*-
"""The headers every answer of the server carries, and the policy of its downloads."""

from __future__ import annotations

from twisted.web.iweb import IRequest

#: The ``Server`` header of every answer: the product without its version, which would
#: only tell an attacker which advisories apply (RFC 9110 10.2.4 allows any detail and
#: warns against revealing it). Twisted's own is ``TwistedWeb/<version>``.
SERVER = b"buildbot_rest"

#: The policy of a download (``/raw``, ``/raw_inline``): a log may be HTML written by a
#: build, and ``sandbox`` (CSP Level 3) makes it a unique origin with scripts, forms and
#: plugins disabled, so that it cannot act on the API's origin.
DOWNLOAD_POLICY = b"sandbox"


def set_common_headers(request: IRequest) -> None:
    """Set ``Server`` (:data:`SERVER`) and ``X-Content-Type-Options: nosniff``, the
    Fetch standard's guard that stops a browser from reading a JSON or text body as HTML
    or script. Call it before the first byte of the answer is written."""
    request.setHeader(b"server", SERVER)
    request.setHeader(b"x-content-type-options", b"nosniff")


def add_vary(request: IRequest, name: bytes) -> None:
    """Add ``name`` to the answer's ``Vary`` (RFC 9110 12.5.5), keeping what is there
    (``Origin`` from CORS, ``Accept-Encoding`` from compression)."""
    present = request.responseHeaders.getRawHeaders(b"vary") or []
    names = [n.strip() for line in present for n in line.split(b",") if n.strip()]
    if name.lower() not in (n.lower() for n in names):
        names.append(name)
    request.setHeader(b"vary", b", ".join(names))


#: reason phrases Twisted does not know (it writes "Unknown Status")
REASONS = {426: b"Upgrade Required", 429: b"Too Many Requests",
           431: b"Request Header Fields Too Large"}


def set_status(request: IRequest, code: int) -> None:
    """Set the answer's status, with its reason phrase (RFC 9110 15, RFC 6585) where
    Twisted has none."""
    request.setResponseCode(code, REASONS.get(code))
