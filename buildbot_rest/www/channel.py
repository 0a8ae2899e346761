# -*- test-case-name: tests.www.test_http_edges -*-
"""The HTTP/1.1 connection of the standalone server.

Twisted's :class:`~twisted.web.http.HTTPChannel` with bounded limits and timeouts: what
it refuses is answered in JSON with the status that says why (Twisted writes a bare
``400``, or nothing at all for a line over 16 KB), a request must arrive whole and an
answer be taken within ``client_timeout`` seconds, and a stop can ask a connection to
close once its answer is sent (:class:`Connections`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request, datetimeToString

from buildbot_rest.www.encoding import JSON_TYPE
from buildbot_rest.www.headers import SERVER

log = Logger()

#: the longest request line (method, target and version), in bytes: more is a 414
MAX_REQUEST_LINE = 16384
#: the most bytes of a request's head (its request line and header fields): more is a 431
MAX_HEAD = 16384
#: the most header fields in a request: more is a 431
MAX_FIELDS = 100
#: the largest request body, in bytes: more is a 413 (the API reads; bodies are small)
MAX_BODY = 1 << 20
#: how long a connection being closed may take to send what it has (or, after a refusal,
#: for its client to stop sending) before it is cut
ABORT_AFTER = 5.0

#: the reason phrases of RFC 9110 for the statuses of a refusal
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    505: b"HTTP Version Not Supported",
}
_VERSION = re.compile(rb"HTTP/\d\.\d")
_ABSOLUTE = re.compile(rb"(?i)https?://([^/?#]*)(.*)", re.DOTALL)


def origin_form(target: bytes) -> tuple[bytes, bytes] | None:
    """``(authority, origin-form target)`` of an absolute-form request target
    (``http://host/api/v2?x`` -> ``(b"host", b"/api/v2?x")``), which RFC 9112 3.2.2 says
    a server MUST accept; None for any other form."""
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        return None
    authority, rest = match.groups()
    authority = authority.rpartition(b"@")[2]  # (a deprecated userinfo is no host)
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    return authority, rest


class ApiChannel(HTTPChannel):
    """One client connection of the standalone server (HTTP/1.1 and 1.0).

    - A request line over :data:`MAX_REQUEST_LINE` bytes is a 414; a head over
      :data:`MAX_HEAD` bytes or :data:`MAX_FIELDS` fields a 431; a body over
      :data:`MAX_BODY` bytes a 413; an HTTP version other than 1.0 and 1.1 a 505; any
      other malformed request a 400. Each is answered ``{"error": ...}`` in JSON, then
      the connection closes.
    - ``timeOut`` (the site's ``client_timeout``) bounds each wait for the client: a
      request must arrive whole within it of its first byte (else a 408), an idle
      connection is closed after it, and an answer the client takes nothing of for that
      long (the transport keeps it paused) is cut, freeing what it held (a database
      stream).
    """

    MAX_LENGTH = MAX_HEAD  # (LineReceiver) a longer line goes to lineLengthExceeded
    totalHeadersSize = MAX_HEAD
    maxHeaders = MAX_FIELDS

    #: the site's open connections, which this one joins (set by the site)
    connections: Connections | None = None

    _limit: float | None = None
    _refused = False
    _closing = False
    _head_bytes = 0
    _head_fields = 0
    _body_bytes = 0
    _last_uri: bytes | None = None
    _deadline: IDelayedCall | None = None
    _stall: IDelayedCall | None = None
    _cut: IDelayedCall | None = None

    # -- the connection --------------------------------------------------------------

    def connectionMade(self) -> None:
        # timeOut is the site's client_timeout now; Twisted clears it while it answers.
        self._limit = self.timeOut
        super().connectionMade()
        if self.connections is not None:
            self.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for name in ("_deadline", "_stall", "_cut"):
            self._cancel(name)
        super().connectionLost(reason)
        if self.connections is not None:
            self.connections.discard(self)

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        setattr(self, name, None)
        if call is not None and call.active():
            call.cancel()

    def _later(self, name: str, seconds: float, fn: Any) -> None:
        if getattr(self, name) is None:
            setattr(self, name, self.callLater(seconds, fn))

    def _close(self) -> None:
        """Close once what is written is sent; cut after :data:`ABORT_AFTER` seconds."""
        self.loseConnection()
        self._later("_cut", ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        self._cut = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    # -- receiving a request ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refused or (self._closing and not self._handlingRequest):
            return  # (what a refused client still sends is read and dropped)
        if data and not self._handlingRequest and self._limit:
            # the first bytes of a request: all of it must come within the limit
            self._later("_deadline", self._limit, self._too_slow)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:  # (the rest of a packet that held the refused line)
            return
        if not self.requests:  # a request line (the channel has no request yet)
            if line:
                self._head_bytes, self._head_fields = len(line), 0
                if len(line) > MAX_REQUEST_LINE:
                    return self._refuse(414, f"request line too long: more than "
                                             f"{MAX_REQUEST_LINE} bytes")
                parts = line.split(b" ")
                version = parts[-1]
                if (len(parts) == 3 and _VERSION.fullmatch(version)
                        and version not in (b"HTTP/1.0", b"HTTP/1.1")):
                    return self._refuse(505, f"HTTP version not supported: "
                                             f"{version.decode()} (HTTP/1.1 is)")
        elif line:
            self._head_bytes += len(line)
            if line[:1] not in (b" ", b"\t"):
                self._head_fields += 1
            if self._head_bytes > MAX_HEAD:
                return self._refuse(431, f"request header fields too large: more than "
                                         f"{MAX_HEAD} bytes")
            if self._head_fields > MAX_FIELDS:
                return self._refuse(431, f"too many request header fields: more than "
                                         f"{MAX_FIELDS}")
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self.requests:
            self._refuse(431, f"request header fields too large: a line of more than "
                              f"{MAX_HEAD} bytes")
        else:
            self._refuse(414, f"request line too long: more than {MAX_REQUEST_LINE} bytes")

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        if (name.lower() == b"content-length" and value.isdigit()
                and int(value) > MAX_BODY):
            self._refuse(413, f"request body too large: more than {MAX_BODY} bytes")
            return False
        ok: bool = super().headerReceived(line)
        return ok

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._handlingRequest:  # a request body (chunked, or with its length)
            self._body_bytes += len(data)
            if self._body_bytes > MAX_BODY + MAX_HEAD:  # (room for the chunks' framing)
                return self._refuse(413, f"request body too large: more than "
                                         f"{MAX_BODY} bytes")
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._cancel("_deadline")
        self._head_bytes = self._head_fields = self._body_bytes = 0
        super().allContentReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's one way out for a malformed request (a bare 400 without a body).
        self._refuse(400, "malformed HTTP request")

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._handlingRequest:
            self._refuse(408, f"the request did not arrive whole within {self._limit:g}s")

    def timeoutConnection(self) -> None:
        # (TimeoutMixin) nothing came for client_timeout seconds
        if self._deadline is not None:  # in the middle of a request
            self._refuse(408, f"the request did not arrive whole within {self._limit:g}s")
        else:  # idle between requests: a normal end, not worth a line
            self._close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"error": message}`` and close the connection."""
        transport: Any = self.transport
        if self._refused or transport is None or transport.disconnecting:
            return
        self._refused = True
        self._cancel("_deadline")
        self.setTimeout(None)
        body = json.dumps({"error": message}).encode()
        transport.write(b"\r\n".join([
            b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"Date: " + datetimeToString(),
            b"Server: " + SERVER,
            b"X-Content-Type-Options: nosniff",
            b"Content-Type: " + JSON_TYPE,
            b"Content-Length: %d" % len(body),
            b"Connection: close",
            b"", body]))
        # Close our side once the answer is sent, and go on reading (and dropping) what
        # the client still sends: closing with unread bytes would reset the connection,
        # and the client might lose the answer (a "lingering close").
        self._networkProducer.unregisterProducer()  # type: ignore[attr-defined]
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:
            transport.resumeProducing()
            lose_write()
        else:
            transport.loseConnection()
        self._later("_cut", ABORT_AFTER, self._abort)

    # -- sending an answer -----------------------------------------------------------

    def pauseProducing(self) -> None:
        # The transport's buffer is full: the client does not take what is sent.
        super().pauseProducing()
        if self._limit:
            self._later("_stall", self._limit, self._stalled)

    def resumeProducing(self) -> None:
        self._cancel("_stall")
        super().resumeProducing()

    def _stalled(self) -> None:
        self._stall = None
        log.info("cut the answer to {uri} for {peer}: its client took none of it for "
                 "{t:g}s", uri=self.answer() or "-", peer=self.getPeer(),
                 t=self._limit)
        self._abort()

    def requestDone(self, request: Request) -> None:
        self._last_uri = request.uri
        super().requestDone(request)

    # -- stopping --------------------------------------------------------------------

    def answering(self) -> bool:
        """Whether an answer is being made (its request received whole)."""
        return bool(self._handlingRequest and self.requests)

    def answer(self) -> str | None:
        """The URI of the answer being made, or of the last one made (whose end may still
        be on its way); None if the connection has answered nothing."""
        uri = self.requests[0].uri if self.answering() else self._last_uri
        return uri.decode("ascii", "replace") if uri is not None else None

    def close_when_done(self) -> None:
        """Take no further request: close now when idle, else once the answer is sent
        (``Connection: close`` when its headers are not written yet)."""
        self._closing = True
        self.persistent = False  # (Twisted closes the connection once the answer is done)
        if self.answering():
            request = self.requests[0]
            if not request.startedWriting:
                request.setHeader(b"connection", b"close")
        else:
            self._cancel("_deadline")
            self.setTimeout(None)
            self.loseConnection()  # what was written is sent first


T = TypeVar("T")


class Drain(Generic[T]):
    """A set of things in progress, and a way to wait until there are none."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._items: set[T] = set()
        self._waiters: list[defer.Deferred[bool]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def add(self, item: T) -> None:
        self._items.add(item)

    def discard(self, item: T) -> None:
        self._items.discard(item)
        if not self._items:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(True)

    def drained(self, timeout: float) -> defer.Deferred[bool]:
        """Fires with True once there are none, or False after ``timeout``."""
        if not self._items:
            return defer.succeed(True)
        waiter: defer.Deferred[bool] = defer.Deferred()
        self._waiters.append(waiter)

        def expire() -> None:
            if not waiter.called:
                waiter.callback(False)
        call = self._reactor.callLater(timeout, expire)
        waiter.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return waiter


class Connections(Drain[ApiChannel]):
    """The open connections of a site: a stop closes each once its answer is sent, and
    cuts those still open after its timeout."""

    def answering(self) -> int:
        """How many connections are making an answer."""
        return sum(1 for channel in self if channel.answering())

    def close_when_done(self) -> None:
        for channel in self:
            channel.close_when_done()

    def abort(self) -> list[str]:
        """Cut every connection at once; the URIs of the answers that were being sent."""
        cut = []
        for channel in self:
            answer = channel.answer()
            if answer is not None:
                cut.append(answer)
            transport: Any = channel.transport
            if transport is not None:
                transport.abortConnection()
        return cut
