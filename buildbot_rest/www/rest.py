# -*- test-case-name: tests.www.test_core -*-
"""``/api/v2``: REST reads (GET, HEAD) and JSON-RPC control (POST) over the data API.

This module turns requests into data API reads and answers into bytes: it knows nothing
of SQL, connections or database threads. What streams, and how, the data connector
decides (:meth:`buildbot_rest.data.connector.DataConnector.read`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from buildbot_rest.auth.service import ANONYMOUS_CALLER, AuthService, Caller
from buildbot_rest.data.base import Kind
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import (
    ApiError,
    BadRequest,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.reads import Collection, CollectionStream
from buildbot_rest.data.resultspec import ResultSpec, group, parse_query_string
from buildbot_rest.www import cors, encoding, jsonrpc
from buildbot_rest.www.headers import DOWNLOAD_POLICY, add_vary, set_status

log = Logger()

#: the most bytes of an answer written at once: more waits until the transport has taken
#: what it has (the size of Twisted's buffer of a connection)
SLICE = 1 << 16

class Responder:
    """Writes one response: headers, optional compression, HEAD without a body."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.head = request.method == b"HEAD"
        self._encoder: Any = None
        #: bytes a HEAD response would have had, when their length was not known upfront
        self._head_length: int | None = None
        self._on_gone: list[Callable[[], None]] = []
        self._lost = False
        self._finished = False
        request.notifyFinish().addErrback(self._gone)

    @property
    def disconnected(self) -> bool:
        """Whether the connection was lost before the response was done. Known at once
        from the request and its transport: the request's notice (:meth:`_gone`) may
        come only after other callbacks of the same loss have run (the transport stops
        its producer first), some of which go on to this response."""
        if self._lost or self._finished:
            return self._lost
        channel = getattr(self.request, "channel", None)
        return channel is None or bool(getattr(channel.transport, "disconnected", False))

    def _gone(self, _failure: Any) -> None:
        self._lost = True
        hooks, self._on_gone = self._on_gone, []
        for hook in hooks:
            hook()

    def on_disconnect(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (once) if the client goes away before the response is done."""
        if self.disconnected:
            hook()
        else:
            self._on_gone.append(hook)

    def start(self, status: int, content_type: bytes, *, compress: bool = True,
              length: int | None = None, headers: dict[bytes, bytes] | None = None) -> None:
        req = self.request
        set_status(req, status)
        req.setHeader(b"content-type", content_type)
        for name, value in (headers or {}).items():
            req.setHeader(name, value)
        chosen = None
        if compress:
            add_vary(req, b"Accept-Encoding")
            # HEAD says what GET would: the same coding, and the length of the coded
            # body when GET sends one (RFC 9110 9.3.2).
            # Several Accept-Encoding lines make one list (RFC 9110 5.3).
            lines = req.requestHeaders.getRawHeaders(b"accept-encoding") or []
            chosen = encoding.choose_encoding(b",".join(lines))
        if chosen is not None:
            coding, self._encoder = chosen
            req.setHeader(b"content-encoding", coding.encode())
        elif length is not None:
            req.setHeader(b"content-length", str(length).encode())
        elif self.head:
            # A streamed body: count what GET would send, and say so at the end.
            self._head_length = 0

    def write(self, data: bytes) -> None:
        if self._head_length is not None:
            self._head_length += len(data)
        if self.head or self.disconnected or not data:
            return
        if self._encoder is not None:
            data = self._encoder.compress(data)
            if not data:
                return
        self.request.write(data)

    def finish(self) -> None:
        if self.disconnected:
            return
        if self._head_length is not None and not self.request.startedWriting:
            self.request.setHeader(b"content-length", str(self._head_length).encode())
        if self._encoder is not None and not self.head:
            tail = self._encoder.flush()
            if tail:
                self.request.write(tail)
        self._finished = True
        self.request.finish()

    def send(self, status: int, body: bytes, content_type: bytes = encoding.JSON_TYPE,
             headers: dict[bytes, bytes] | None = None) -> None:
        self.start(status, content_type, length=len(body), headers=headers)
        if self.disconnected:
            return
        if self._encoder is not None:
            # A whole body is compressed at once and sent with its length, not chunked.
            body = self._encoder.compress(body) + self._encoder.flush()
            self._encoder = None
            self.request.setHeader(b"content-length", str(len(body)).encode())
        if self.head or len(body) <= SLICE:
            self.write(body)
            self.finish()
            return
        # A slice at a time, as the transport takes them: what waits for a slow client
        # stays here, and one that takes nothing keeps the transport paused (which the
        # standalone server's connection cuts after its client_timeout).
        self._finished = True
        _Slices(self.request, body).start()


def answer_async(request: Request, handle: Callable[[Responder], Coroutine[Any, Any, None]], *,
                 rpc: bool = False) -> int:
    """Answer ``request`` with the coroutine ``handle(responder)``; returns
    ``NOT_DONE_YET`` for a resource's ``render``. An unexpected failure is logged and
    answered with a JSON 500 (a JSON-RPC envelope for a POST when ``rpc``), or, once the
    answer has started, by cutting the connection so that the client sees it is
    incomplete."""
    responder = Responder(request)
    d = defer.ensureDeferred(handle(responder))
    d.addErrback(_internal_error, request, responder, rpc)
    return NOT_DONE_YET


def _internal_error(failure: Any, request: Request, responder: Responder, rpc: bool) -> None:
    log.failure("internal error answering {uri}", failure, uri=request.uri)
    if responder.disconnected:
        return
    if request.startedWriting:
        if request.channel is not None:
            request.channel.loseConnection()
        return
    if rpc and request.method == b"POST":
        responder.send(500, jsonrpc.failure(ApiError("internal error - see logs"), None))
        return
    responder.send(500, error_body("internal error - see logs"))


def error_headers(error: ApiError) -> dict[bytes, bytes] | None:
    """The headers an error answer carries: ``Retry-After`` for a 503 that knows when
    to try again and for a 429 (RFC 9110 10.2.3, RFC 6585 4); ``WWW-Authenticate`` for
    a 401 (RFC 9110 11.6.1)."""
    if isinstance(error, ServiceUnavailable | TooManyRequests) and \
            error.retry_after is not None:
        return {b"retry-after": str(error.retry_after).encode()}
    if isinstance(error, Unauthenticated):
        return {b"www-authenticate": error.challenge.encode()}
    return None


def error_body(message: str) -> bytes:
    """An error as upstream writes it, ``{"error": "..."}`` with its separators, whatever
    the Accept header."""
    return json.dumps({"error": message}).encode()


#: what a path shown in an error keeps as sent: RFC 3986's ``pchar`` and ``/``, and ``%``
#: so that the client's escapes stay as they were; raw bytes and controls are escaped.
_SHOWN_SAFE = "/%!$&'()*+,;=:@"


def sent_path(request: IRequest) -> str:
    """The request's path (without the query) as the client sent it, printable."""
    path: bytes = request.path
    return quote(path, safe=_SHOWN_SAFE)


def decode_path(request: IRequest, segments: Sequence[bytes]) -> tuple[str, ...]:
    """Percent-decoded path segments as text. A segment that is not UTF-8 (the encoding
    of URIs, RFC 3986 2.5 and RFC 3987 3.1) is a 400 naming the path as sent: any other
    reading would make one URL name two resources."""
    try:
        return tuple(segment.decode("utf-8") for segment in segments)
    except UnicodeDecodeError:
        raise BadRequest(f"path is not UTF-8: {sent_path(request)}") from None


class RestResource(Resource):
    """The data API over HTTP. Mounted at ``/api/v2`` and ``/api/latest``.

    ``auth`` tells who makes each request and what they may do (without it everyone is
    anonymous and may do everything)."""

    isLeaf = True

    def __init__(self, connector: DataConnector, *, auth: AuthService | None = None) -> None:
        super().__init__()
        self.connector = connector
        self.auth = auth

    def render(self, request: Request) -> Any:
        allowed = self.auth.settings.allowed_origins if self.auth is not None else ()
        if cors.handle(request, allowed_origins=allowed, base_url=self.connector.base_url):
            return NOT_DONE_YET  # (a preflight, or an origin refused: answered)
        return answer_async(request, lambda responder: self._handle(request, responder),
                            rpc=True)

    async def _handle(self, request: Request, responder: Responder) -> None:
        compact = encoding.wants_compact(request.getHeader(b"accept"))
        try:
            if request.method in (b"GET", b"HEAD"):
                await self._read(request, responder, compact)
            elif request.method == b"POST":
                await self._control(request, responder)
            else:
                raise BadRequest("invalid HTTP method")
        except ApiError as e:
            if responder.disconnected:
                return
            if request.startedWriting:
                if e.status != 503:
                    raise
                # The database failed in the middle of an answer (the outage itself is
                # logged once by the database layer): cut the response so that the
                # client sees it is incomplete.
                log.warn(  # noqa: G010 - twisted.logger has no warning()
                    "answer to {uri} cut short: {message}", uri=request.uri,
                    message=e.message)
                if request.channel is not None:
                    request.channel.loseConnection()
                return
            responder.send(e.status, error_body(e.message), headers=error_headers(e))

    async def _control(self, request: Request, responder: Responder) -> None:
        """A JSON-RPC call (protocol.md 4): errors are answered with JSON-RPC envelopes."""
        # (protocol.md 4.1 check 1, the Origin, is made for every method: cors.handle)
        call = None
        try:
            body = request.content.read() if request.content is not None else b""
            jsonrpc.check_coding(request.requestHeaders.getRawHeaders(b"content-encoding"))
            caller = await self._caller(request)  # (a bad token: 401 before all else)
            call = jsonrpc.parse(request.getHeader(b"content-type"), body)
            path = self.path_of(request)
            endpoint, kwargs = self.connector.match(path)
            if self.auth is not None:
                # (the path is resolved first: an unknown one is a 404, COMPAT 9)
                await self.auth.authorize_control(caller, endpoint, kwargs, call.method,
                                                  call.params)
            ctx = self.connector.context(endpoint, kwargs, user=caller.user)
            params = dict(call.params)
            params["owner"] = jsonrpc.owner(ctx.user)
            result = await self.connector.control(ctx, endpoint, call.method, params,
                                                  kwargs)
        except ApiError as e:
            if responder.disconnected:
                return
            responder.send(e.status, jsonrpc.failure(e, call), headers=error_headers(e))
            return
        if not responder.disconnected:
            responder.send(200, jsonrpc.success(call.id, result))

    async def _caller(self, request: Request) -> Caller:
        """Who makes ``request``; the 401 of a bad bearer token, the 429 of an address
        that failed too often."""
        if self.auth is None:
            return ANONYMOUS_CALLER
        return await self.auth.caller(request)

    def path_of(self, request: Request) -> tuple[str, ...]:
        """The path below ``/api/v2`` as text segments; 400 when it is not UTF-8."""
        return decode_path(request, request.postpath or ())

    async def _read(self, request: Request, responder: Responder, compact: bool) -> None:
        caller = await self._caller(request)  # (a bad token: 401 before all else)
        path = self.path_of(request)
        endpoint, kwargs = self.connector.match(path)
        query = request.uri.partition(b"?")[2]
        args = group(parse_query_string(query))
        spec = self.connector.parse_spec(endpoint, args)
        if self.auth is not None:
            # (HEAD is a read like GET, COMPAT 7; the path is resolved first, COMPAT 9)
            spec = await self.auth.authorize_read(caller, endpoint, kwargs, spec)
        ctx = self.connector.context(endpoint, kwargs, user=caller.user)
        answer = await self.connector.read(ctx, endpoint, spec, kwargs)
        plural = endpoint.rtype.plural
        if isinstance(answer, RawData):
            await self._send_raw(responder, endpoint.kind is Kind.RAW, answer)
        elif isinstance(answer, CollectionStream):
            await self._send_stream(responder, plural, answer, compact)
        elif isinstance(answer, Collection):
            meta: dict[str, Any] = {"total": answer.total}
            headers: dict[bytes, bytes] = {}
            if spec.paged:
                links = self._page_links(path, args, spec, answer.total)
                meta["links"] = links
                if links:
                    headers[b"link"] = ", ".join(
                        f'<{url}>; rel="{rel}"' for rel, url in links.items()).encode()
            body = encoding.dumps({plural: answer.items, "meta": meta}, compact)
            responder.send(200, body, headers=headers)
        else:
            body = encoding.dumps({plural: [answer.entity], "meta": {}}, compact)
            responder.send(200, body)

    # -- pagination links -------------------------------------------------------------

    def _page_links(self, path: tuple[str, ...], args: dict[str, list[str]],
                    spec: ResultSpec, total: int) -> dict[str, str]:
        base = self.connector.base_url + "api/v2"
        if path:
            base += "/" + "/".join(quote(p, safe="") for p in path)
        kept = [(k, v) for k, vs in args.items() if k != "offset" for v in vs]

        def url(offset: int) -> str:
            return base + "?" + urlencode([*kept, ("offset", str(offset))])

        return {rel: url(offset)
                for rel, offset in page_offsets(spec.limit, spec.offset or 0, total).items()}

    # -- streamed answers -------------------------------------------------------------

    async def _send_stream(self, responder: Responder, plural: str,
                           answer: CollectionStream, compact: bool) -> None:
        """Write a collection batch by batch, byte for byte as the whole document."""
        writer = encoding.CollectionWriter(plural, compact)
        count = 0

        def start() -> None:
            responder.start(200, encoding.JSON_TYPE)
            responder.write(writer.opening(answer.total))

        def items(batch: list[dict[str, Any]]) -> bytes:
            nonlocal count
            count += len(batch)
            return writer.items(batch)

        await _send_pieces(responder, answer.producer, answer, start, items,
                           lambda: writer.closing(None if answer.total is not None else count))

    async def _send_raw(self, responder: Responder, download: bool, raw: RawData) -> None:
        headers = {b"content-security-policy": DOWNLOAD_POLICY}
        if download and raw.filename:
            headers[b"content-disposition"] = raw.content_disposition()
        if raw.stream is None:
            responder.send(200, raw.body or b"", raw.content_type, headers=headers)
            return
        await _send_pieces(responder, raw.stream, raw.stream,
                           lambda: responder.start(200, raw.content_type, headers=headers),
                           lambda piece: piece, lambda: b"")


def page_offsets(limit: int | None, offset: int, total: int) -> dict[str, int]:
    """The offsets of the pages next to the page ``[offset, offset + limit)`` of a
    collection of ``total`` items, by link relation (RFC 8288; the relations of the
    IANA registry). Neither is ever ``offset`` itself, so that a client following them
    always moves, and following ``next`` from 0 visits every item once and stops:

    - ``next`` (``offset + limit``) when this page ends before ``total``;
    - ``prev`` when ``offset > 0``: the ``limit`` items before this page (or before the
      end, for an offset past it), or the start when there is no limit.

    A page of ``limit=0`` asks for the total alone: it has no neighbours."""
    if limit == 0:
        return {}
    links = {}
    if limit is not None and offset + limit < total:
        links["next"] = offset + limit
    if offset > 0:
        links["prev"] = max(0, min(offset, total) - limit) if limit is not None else 0
    return links


class _Pieces(Protocol):
    """What a streamed answer comes from (a ThreadStream, or a CollectionStream)."""

    @property
    def cancelled(self) -> bool: ...

    def next(self) -> Any: ...

    def consumed(self) -> None: ...

    def cancel(self) -> None: ...

    async def close(self) -> None: ...


async def _send_pieces(responder: Responder, producer: IPushProducer, source: _Pieces,
                       start: Callable[[], None], encode: Callable[[Any], bytes],
                       closing: Callable[[], bytes]) -> None:
    """Write ``source``'s pieces as they come, under the transport's flow control: a
    piece is written once the transport has taken the ones before. A client that goes
    away cancels the source. The response is finished only when the source came to its
    own end, and ``source`` is closed in every case.

    A connection lost meanwhile (the client went away, or a stop cut it) is the normal
    end of a long answer: it is said in one info line, without a traceback."""
    if responder.disconnected:
        await source.close()
        return
    flow = _FlowControl(producer)
    _register(responder, flow)

    def gone() -> None:
        source.cancel()
        flow.release()
    responder.on_disconnect(gone)
    try:
        start()
        while (piece := await source.next()) is not None:
            data = encode(piece)
            for at in range(0, len(data), SLICE):
                if responder.disconnected:
                    break
                responder.write(data[at:at + SLICE])
                await flow.taken()
            source.consumed()
        if responder.disconnected or source.cancelled:
            # (the transport stops its producer before the request hears of the loss)
            _ended_early(responder)
            return
        responder.write(closing())
    finally:
        _unregister(responder)
        await source.close()
    responder.finish()


@implementer(IPullProducer)
class _Slices:
    """Writes a whole body a :data:`SLICE` at a time, each when the transport asks for
    more (Twisted's pull producers), then finishes the request."""

    def __init__(self, request: Request, body: bytes) -> None:
        self._request: Request | None = request
        self._body = memoryview(body)

    def start(self) -> None:
        assert self._request is not None
        self._request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        request = self._request
        if request is None:
            return
        piece, self._body = self._body[:SLICE], self._body[SLICE:]
        request.write(piece.tobytes())
        if not self._body:
            self._request = None
            request.unregisterProducer()
            request.finish()

    def stopProducing(self) -> None:
        # (the connection was lost: the request is not finished)
        self._request = None
        self._body = memoryview(b"")


@implementer(IPushProducer)
class _FlowControl:
    """The producer a streamed answer registers on its request: it pauses and resumes
    the source as the transport asks, and lets the writer wait until the transport has
    taken what it has. What a slow client has not taken then stays in the source's
    window, and a client that takes nothing keeps the transport paused (which the
    standalone server's connection cuts after its ``client_timeout``)."""

    def __init__(self, source: IPushProducer) -> None:
        self._source = source
        self._paused = False
        self._waiting: defer.Deferred[None] | None = None

    def taken(self) -> defer.Deferred[None]:
        """Fires once the transport is not paused (at once if it is not)."""
        if not self._paused:
            return defer.succeed(None)
        if self._waiting is None:
            self._waiting = defer.Deferred()
        return self._waiting

    def release(self) -> None:
        """Let a writer waiting in :meth:`taken` go on."""
        d, self._waiting = self._waiting, None
        if d is not None:
            d.callback(None)

    def pauseProducing(self) -> None:
        self._paused = True
        self._source.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._source.resumeProducing()
        self.release()

    def stopProducing(self) -> None:
        self._source.stopProducing()
        self.release()


def _ended_early(responder: Responder) -> None:
    request = responder.request
    uri = request.uri.decode("ascii", "replace")
    if responder.disconnected:
        log.info("connection lost during the answer to {uri}: its reading stopped", uri=uri)
        return
    # The read was cancelled under a connected client (the database is stopping): cut
    # the response, so that the client sees it is incomplete.
    log.warn("answer to {uri} cut short: its read was cancelled", uri=uri)  # noqa: G010
    request.loseConnection()


def _register(responder: Responder, producer: IPushProducer) -> None:
    """Let the transport's flow control pause ``producer`` (a connected request only)."""
    responder.request.registerProducer(producer, True)


def _unregister(responder: Responder) -> None:
    # A request whose client has gone has no channel left to unregister from.
    if getattr(responder.request, "channel", None) is not None:
        responder.request.unregisterProducer()
