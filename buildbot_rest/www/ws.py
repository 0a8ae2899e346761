# -*- test-case-name: tests.www.test_ws -*-
"""The WebSocket of live events, ``/ws`` (autobahn): upstream's protocol (protocol.md 8.2)
with COMPAT 20's fixes, resumable with ``since``, kept alive with pings, and bounded in
memory per connection.

A client sends JSON text frames, ``{"cmd": "startConsuming", "path": "builds/*/*",
"_id": 1}``, and gets replies ``{"msg": "OK", "code": 200, "_id": 1}`` (errors
``{"error": ..., "code": ..., "_id": ...}``) and events ``{"k": "builds/5/finished",
"m": {...}, "s": 1732950000000123}``; what differs from upstream is listed in
``docs/compatibility.rst``."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.auth.service import AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.data.errors import ApiError
from buildbot_rest.mq.live import Event, LiveEvents, Subscription, TooOld
from buildbot_rest.www.encoding import JSON_TYPE
from buildbot_rest.www.headers import SERVER, set_status
from buildbot_rest.www.jsonrpc import origin_allowed
from buildbot_rest.www.live import (
    MAX_SUBSCRIPTIONS,
    POLICY_VIOLATION,
    Backlog,
    CredentialsWatch,
    LiveResource,
    key_filter,
)
from buildbot_rest.www.rest import error_body, error_headers

log = Logger()

#: close codes (RFC 6455 7.4.1): the server stops; a client breaks the rules (here: it
#: reads its events too slowly)
GOING_AWAY = 1001
#: seconds a close handshake may take (the client answering our close frame) before the
#: connection is cut
CLOSE_TIMEOUT = 5.0
#: the bounds of the wait for a keepalive's answer (seconds): the ping interval, but no
#: less (a busy server or a slow link answers late) and no more (a dead peer goes soon)
PONG_WAIT = (2.0, 30.0)
#: the largest frame and message a client may send (commands are small), in bytes; a
#: larger one closes the connection (autobahn: close code 1009)
MAX_FRAME = 1 << 16

#: each command's arguments (required, optional): any other key of a frame but ``cmd``
#: and ``type`` is an "Invalid method argument" (upstream: the keyword arguments of its
#: ``cmd_<name>`` methods)
_ARGUMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ping": (("_id",), ()),
    "startConsuming": (("path", "_id"), ("since",)),
    "stopConsuming": (("path", "_id"), ()),
}


class WsResource(LiveResource):
    """``/ws``: takes the connection of a WebSocket upgrade over from Twisted Web and
    speaks the live events protocol on it (:class:`_Connection`).

    A request that is no WebSocket upgrade is answered ``{"error": ...}`` in JSON:
    405 for a method other than GET, 426 without ``Upgrade: websocket`` (or with a
    WebSocket version other than 13), 400 for another faulty handshake, 403 from a page
    of another site (its ``Origin``); 404 when the server has no live events (``live``
    is None: no message queue). The caller (``auth.caller``: a bearer token or the
    session cookie) is found once, at the upgrade: a bad token is a 401. ``config``
    gives ``ping_interval`` (seconds, 0: no pings) and ``live_buffer`` (bytes a client
    may leave unread)."""

    def __init__(self, live: LiveEvents | None, *, auth: AuthService | None,
                 config: Config, reactor: Any) -> None:
        super().__init__(live, auth=auth, config=config, reactor=reactor)
        self.factory = WebSocketServerFactory(server=SERVER.decode(), reactor=reactor)
        interval = config.ping_interval
        self.factory.setProtocolOptions(
            webStatus=False, versions=[13], failByDrop=False, autoPingInterval=interval,
            autoPingTimeout=min(max(interval, PONG_WAIT[0]), PONG_WAIT[1]) if interval else 0,
            closeHandshakeTimeout=CLOSE_TIMEOUT, maxFramePayloadSize=MAX_FRAME,
            maxMessagePayloadSize=MAX_FRAME)

    def render(self, request: Request) -> bytes | int:
        channel: Any = request.channel
        transport: Any = channel.transport if channel is not None else None
        refused: tuple[int, str, dict[bytes, bytes]] | None
        if self.live is None:
            refused = (404, "no live events here: this server has no message queue", {})
        elif (refusal := _refusal(request)) is not None:
            refused = refusal
        elif not self._origin_allowed(request):
            refused = (403, "a page of another site may not open this WebSocket (its "
                            "Origin is not this server's)", {})
            # (the web UI reached by a name other than base_url's lands here: say so)
            log.info("refused a /ws connection from origin {origin} (not base_url's "
                     "origin {base}: set base_url to the address users open)",
                     origin=(request.getHeader(b"origin") or b"").decode("latin-1"),
                     base=self.config.base_url)
        elif transport is None:  # (an HTTP/2 stream)
            refused = (426, "a WebSocket needs an HTTP/1.1 connection", {})
        else:
            refused = None
        if refused is not None:
            return _refuse(request, *refused)
        d = defer.ensureDeferred(self._upgrade(request, channel, transport))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _upgrade(self, request: Request, channel: Any, transport: Any) -> None:
        """Find the caller (its token or cookie), then hand the connection over: the
        client waits for the handshake's answer, so nothing arrives meanwhile (RFC
        6455 4.1)."""
        try:
            caller = await self.caller(request)
        except ApiError as e:
            if not request._disconnected and channel.transport is not None:
                request.write(_refuse(request, e.status, e.message,
                                      error_headers(e) or {}))
                request.finish()
            return
        if request._disconnected or channel.transport is None:
            return
        connection = _Connection(self, caller)
        connection.factory = self.factory
        self._take_over(request, channel, transport, connection)

    @staticmethod
    def _failed(failure: Any, request: Request) -> None:
        log.failure("upgrading {uri} to a WebSocket", failure, uri=request.uri)
        if not request._disconnected and not request.finished:
            request.write(_refuse(request, 500, "internal error - see logs", {}))
            request.finish()

    def _origin_allowed(self, request: Request) -> bool:
        """A browser sends ``Origin``; a WebSocket is not bound by the same-origin
        policy, so a page of another site could otherwise read the events with the
        user's cookie. The origins allowed are JSON-RPC's (protocol.md 4.1)."""
        origins = request.requestHeaders.getRawHeaders(b"origin")
        allowed = self.auth.settings.allowed_origins if self.auth is not None else ()
        return origins is None or origin_allowed(
            origins, secure=request.isSecure(), host=request.getHeader(b"host"),
            base_url=self.config.base_url or "", allowed_origins=allowed)

    def _take_over(self, request: Request, channel: Any, transport: Any,
                   connection: _Connection) -> None:
        """Give the HTTP connection to ``connection``, which redoes the handshake (as
        autobahn's WebSocketResource) and then owns it; the HTTP channel lets it go."""
        # The channel no longer counts it: no client_timeout on an idle WebSocket, and a
        # stop's wait for open HTTP connections does not wait for it (it is closed
        # through the live events).
        channel.setTimeout(None)
        connections = getattr(channel, "connections", None)
        if connections is not None:
            connections.discard(channel)
        channel.transport = None
        # (the channel is the producer of its transport, which it stopped reading while
        # it answers: as autobahn's WebSocketResource)
        network = getattr(channel, "_networkProducer", transport)
        network.unregisterProducer()
        if isinstance(transport, ProtocolWrapper):  # TLS
            transport.wrappedProtocol = connection
        elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
            transport.protocol.wrappedProtocol = connection
        else:
            transport.protocol = connection
        connection.makeConnection(transport)
        network.resumeProducing()
        head = [b"%s %s HTTP/1.1" % (request.method, request.uri)]
        head += [name + b": " + b",".join(values)
                 for name, values in request.requestHeaders.getAllRawHeaders()]
        connection.dataReceived(b"\r\n".join(head) + b"\r\n\r\n")
        # The request never finishes as HTTP: its access log line is written now, with
        # the status of the handshake autobahn answered.
        site = getattr(channel, "factory", None)
        if site is not None and connection.state == connection.STATE_OPEN:
            request.setResponseCode(101)
            site.log(request)


def _refuse(request: Request, code: int, message: str,
            headers: Mapping[bytes, bytes]) -> bytes:
    """Answer a request that does not become a WebSocket: ``{"error": message}``."""
    set_status(request, code)
    request.setHeader(b"content-type", JSON_TYPE)
    for name, value in headers.items():
        request.setHeader(name, value)
    body = error_body(message)
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _tokens(request: Request, name: bytes) -> set[bytes]:
    values = request.requestHeaders.getRawHeaders(name) or []
    return {token.strip().lower() for value in values for token in value.split(b",")}


def _refusal(request: Request) -> tuple[int, str, dict[bytes, bytes]] | None:
    """Why ``request`` is no WebSocket handshake (RFC 6455 4.2.1), as (status, message,
    headers); None if it is one."""
    if request.method != b"GET":
        return 405, "/ws is a WebSocket: open it with a GET upgrade", {b"allow": b"GET"}
    upgrade = {b"upgrade": b"websocket", b"connection": b"Upgrade"}
    if b"websocket" not in _tokens(request, b"upgrade"):
        return 426, ("/ws is a WebSocket: connect with a WebSocket client "
                     "('Upgrade: websocket')"), upgrade
    if request.clientproto != b"HTTP/1.1":
        return 400, "a WebSocket handshake must be HTTP/1.1", {}
    if not request.requestHeaders.getRawHeaders(b"host"):
        return 400, "a WebSocket handshake needs a Host header", {}
    if b"upgrade" not in _tokens(request, b"connection"):
        return 400, "a WebSocket handshake needs 'Connection: Upgrade'", {}
    if request.requestHeaders.getRawHeaders(b"sec-websocket-version") != [b"13"]:
        return 426, "the WebSocket version must be 13", {
            **upgrade, b"sec-websocket-version": b"13"}
    keys = request.requestHeaders.getRawHeaders(b"sec-websocket-key") or []
    try:
        valid = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return 400, "a WebSocket handshake needs one Sec-WebSocket-Key (16 bytes, base64)", {}
    return None


class _Connection(WebSocketServerProtocol):
    """One client of ``/ws``: its commands, its subscriptions (by path string, as
    upstream), and its queue of frames to send (a :class:`Backlog`, bounded by
    ``live_buffer``, through which replies and events go in order)."""

    def __init__(self, resource: WsResource, caller: Caller) -> None:
        super().__init__()
        self._resource = resource
        self._live: LiveEvents = resource.live  # type: ignore[assignment]
        #: who opened the connection (taken once, at the upgrade)
        self.caller = caller
        #: which events it may receive (view rules), None: all
        self.accept = resource.event_filter(caller)
        self._subscriptions: dict[str, Subscription] = {}
        self._backlog: Backlog | None = None
        #: ends the connection when its token or session stops being valid
        self._watch = CredentialsWatch(resource, caller, self.close_live)

    # -- the connection -------------------------------------------------------------

    def onOpen(self) -> None:
        self._backlog = Backlog(self._write, self._resource.config.live_buffer,
                                self._overflow, self._resource.flusher)
        transport: Any = self.transport
        transport.registerProducer(self._backlog, True)
        self._live.register(self)
        self._watch.start()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop()
        self._live.unregister(self)
        super().connectionLost(reason)

    def _stop(self) -> None:
        """Send nothing more: end every subscription and drop what waits."""
        self._watch.stop()
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription.stop()
        if self._backlog is not None:
            self._backlog.close()

    def close_live(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason`` (a server stop: 1001 "server stopping");
        a client that does not answer within :data:`CLOSE_TIMEOUT` seconds is cut."""
        self._stop()
        if self.state == self.STATE_OPEN:
            # (autobahn's sendClose only takes 1000 and 3000-4999)
            self.sendCloseFrame(code, reason.encode()[:123], isReply=False)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None,
                       isReply: bool = False) -> None:
        # The replies gathered for this turn go before the close (a client's close or a
        # protocol error read with its last commands); after close_live there are none.
        if self._backlog is not None:
            self._backlog.flush()
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def _overflow(self, unread: int) -> None:
        log.info("closed the WebSocket of {peer}: too slow, {n} bytes of events unread",
                 peer=self.peer, n=unread)
        self.close_live(POLICY_VIOLATION, f"too slow: {unread} bytes of events unread")

    # -- sending ----------------------------------------------------------------------

    def _write(self, frames: bytes) -> None:
        # (whole text frames, framed once by autobahn: no compression is negotiated, and
        # a server does not mask)
        if self.state == self.STATE_OPEN and self.transport is not None:
            self.transport.write(frames)

    def _frame(self, payload: bytes) -> bytes:
        """``payload`` as a whole text frame."""
        frame: bytes = self.factory.prepareMessage(payload).payloadHybi
        return frame

    def _reply(self, _id: Any, **body: Any) -> None:
        try:
            data = json.dumps({**body, "_id": _id}, separators=(",", ":"),
                              allow_nan=False).encode()
        except (RecursionError, ValueError):  # (an _id nested too deep to echo)
            data = json.dumps({**body, "_id": None}, separators=(",", ":")).encode()
        if self._backlog is not None:
            self._backlog.send(self._frame(data))

    def _error(self, _id: Any, code: int, message: str) -> None:
        self._reply(_id, error=message, code=code)

    def _event(self, event: Event) -> None:
        if self._backlog is not None:
            self._backlog.send(event.encoded("ws-framed", self._framed))

    def _framed(self, event: Event) -> bytes:
        # (the same bytes for every client: made once per event)
        return self._frame(event.ws_frame())

    # -- receiving --------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return self._error(None, 400, "a binary frame: commands are JSON text frames")
        try:
            frame = json.loads(payload, parse_constant=_no_constant, parse_float=_finite)
        except ValueError as e:
            return self._error(None, 400, f"a frame that is not JSON: {e}")
        except RecursionError:
            return self._error(None, 400, "a frame that is not JSON: nested too deeply")
        if not isinstance(frame, dict):
            return self._error(None, 400, "a frame that is not a JSON object")
        # upstream's checks, in its order
        _id = frame.get("_id")
        if frame.pop("type", None) is None and _id is None:
            return self._error(None, 400, "no '_id' or 'type' in websocket frame")
        cmd = frame.pop("cmd", None)
        if cmd is None:
            return self._error(None, 400, "no 'cmd' in websocket frame")
        if not isinstance(cmd, str) or cmd not in _ARGUMENTS:
            return self._error(_id, 404, f"no such command type '{cmd!s}'")
        required, optional = _ARGUMENTS[cmd]
        missing = [name for name in required if name not in frame]
        unexpected = [name for name in frame if name not in required + optional]
        if missing or unexpected:
            problems = [f"{what} {', '.join(names)}" for what, names in
                        (("missing", missing), ("unexpected", unexpected)) if names]
            return self._error(_id, 400, f"Invalid method argument '{cmd}: "
                                         f"{'; '.join(problems)}'")
        try:
            getattr(self, "_cmd_" + cmd)(**frame)
        except Exception as e:  # noqa: BLE001 - the client is told, the connection stays
            log.failure("the WebSocket command {cmd} failed", cmd=cmd)
            self._error(_id, 500, f"Internal Error '{e!s}'")
        return None

    def _cmd_ping(self, _id: Any) -> None:
        self._reply(_id, msg="pong", code=200)

    def _cmd_startConsuming(self, path: Any, _id: Any, since: Any = None) -> None:
        if not isinstance(path, str):
            return self._error(_id, 400, f"invalid path format '{path!s}'")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
            return self._error(_id, 400, f"invalid since '{since!s}': the sequence "
                                         f"number ('s') of an event is expected")
        keys = key_filter(path)
        if not self._resource.may_subscribe(self.caller, keys):
            return self._error(_id, 403, f"not allowed to consume '{path}'")
        if path not in self._subscriptions and len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            return self._error(_id, 400, f"too many paths consumed: at most "
                                         f"{MAX_SUBSCRIPTIONS} at once")
        try:
            # (read before subscribing, in the same turn: no event comes in between)
            missed = (list(self._live.missed(keys, since, accept=self.accept))
                      if since is not None else [])
        except TooOld as e:
            return self._error(_id, 410, str(e))
        if path not in self._subscriptions:
            self._subscriptions[path] = self._live.subscribe(self._event, keys,
                                                             accept=self.accept)
        self._reply(_id, msg="OK", code=200)
        for event in missed:
            self._event(event)
        return None

    def _cmd_stopConsuming(self, path: Any, _id: Any) -> None:
        if not isinstance(path, str):
            return self._error(_id, 400, f"invalid path format '{path!s}'")
        subscription = self._subscriptions.pop(path, None)
        if subscription is None:
            return self._error(_id, 400, f"path was not consumed '{path!s}'")
        subscription.stop()
        self._reply(_id, msg="OK", code=200)
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    # (1e999 would be read as infinity, which no JSON reply can hold)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value
