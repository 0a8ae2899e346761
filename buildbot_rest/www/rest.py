# -*- test-case-name: tests.www.test_core -*-
"""``/api/v2``: REST reads (GET, HEAD) over the data API.

This module turns requests into data API reads and answers into bytes: it knows nothing
of SQL, connections or database threads. What streams, and how, the data connector
decides (:meth:`buildbot_rest.data.connector.DataConnector.read`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.data.base import Kind
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import ApiError, BadRequest
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.reads import Collection, CollectionStream
from buildbot_rest.data.resultspec import ResultSpec, group, parse_query_string
from buildbot_rest.www import encoding
from buildbot_rest.www.headers import DOWNLOAD_POLICY

log = Logger()

class Responder:
    """Writes one response: headers, optional compression, HEAD without a body."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.head = request.method == b"HEAD"
        self._encoder: Any = None
        #: bytes a HEAD response would have had, when their length was not known upfront
        self._head_length: int | None = None
        self._on_gone: list[Callable[[], None]] = []
        self.disconnected = False
        request.notifyFinish().addErrback(self._gone)

    def _gone(self, _failure: Any) -> None:
        self.disconnected = True
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
        req.setResponseCode(status)
        req.setHeader(b"content-type", content_type)
        for name, value in (headers or {}).items():
            req.setHeader(name, value)
        chosen = None
        if compress:
            req.setHeader(b"vary", b"Accept-Encoding")
        if compress and not self.head:
            # (A HEAD response has no body to compress: it says the body's length.)
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
        self.request.finish()

    def send(self, status: int, body: bytes, content_type: bytes = encoding.JSON_TYPE,
             headers: dict[bytes, bytes] | None = None) -> None:
        self.start(status, content_type, length=len(body), headers=headers)
        if self._encoder is not None and not self.disconnected:
            # A whole body is compressed at once and sent with its length, not chunked.
            data = self._encoder.compress(body) + self._encoder.flush()
            self._encoder = None
            self.request.setHeader(b"content-length", str(len(data)).encode())
            self.request.write(data)
            self.request.finish()
            return
        self.write(body)
        self.finish()


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


class UserSource(Protocol):
    """Who makes a request (the auth layer)."""

    def user_for(self, request: IRequest) -> Mapping[str, Any]: ...


class RestResource(Resource):
    """The data API over HTTP. Mounted at ``/api/v2`` and ``/api/latest``.

    ``auth`` tells who makes each request (everyone is anonymous without it)."""

    isLeaf = True

    def __init__(self, connector: DataConnector, *, auth: UserSource | None = None) -> None:
        super().__init__()
        self.connector = connector
        self.auth = auth

    def render(self, request: Request) -> Any:
        responder = Responder(request)
        d = defer.ensureDeferred(self._handle(request, responder))
        d.addErrback(self._internal_error, request, responder)
        return NOT_DONE_YET

    def _internal_error(self, failure: Any, request: Request, responder: Responder) -> None:
        log.failure("internal error answering {uri}", failure, uri=request.uri)
        if responder.disconnected:
            return
        if request.startedWriting:
            # Too late for a status: cut the response so the client sees it is incomplete.
            if request.channel is not None:
                request.channel.loseConnection()
            return
        responder.send(500, error_body("internal error - see logs"))

    async def _handle(self, request: Request, responder: Responder) -> None:
        compact = encoding.wants_compact(request.getHeader(b"accept"))
        try:
            if request.method in (b"GET", b"HEAD"):
                await self._read(request, responder, compact)
            else:
                raise BadRequest("invalid HTTP method")
        except ApiError as e:
            if responder.disconnected:
                return
            if request.startedWriting:
                raise
            responder.send(e.status, error_body(e.message))

    def path_of(self, request: Request) -> tuple[str, ...]:
        """The path below ``/api/v2`` as text segments; 400 when it is not UTF-8."""
        return decode_path(request, request.postpath or ())

    async def _read(self, request: Request, responder: Responder, compact: bool) -> None:
        path = self.path_of(request)
        endpoint, kwargs = self.connector.match(path)
        query = request.uri.partition(b"?")[2]
        args = group(parse_query_string(query))
        spec = self.connector.parse_spec(endpoint, args)
        user = self.auth.user_for(request) if self.auth is not None else None
        ctx = self.connector.context(endpoint, kwargs, user=user)
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
    """Write ``source``'s pieces as they come, under the transport's flow control; a
    client that goes away cancels the source. The response is finished only when the
    source came to its own end, and ``source`` is closed in every case."""
    if responder.disconnected:
        await source.close()
        return
    _register(responder, producer)
    responder.on_disconnect(source.cancel)
    try:
        start()
        while (piece := await source.next()) is not None:
            responder.write(encode(piece))
            source.consumed()
        if responder.disconnected or source.cancelled:
            # (the transport stops its producer before the request hears of the loss)
            return
        responder.write(closing())
    finally:
        _unregister(responder)
        await source.close()
    responder.finish()


def _register(responder: Responder, producer: IPushProducer) -> None:
    """Let the transport's flow control pause ``producer`` (a connected request only)."""
    responder.request.registerProducer(producer, True)


def _unregister(responder: Responder) -> None:
    # A request whose client has gone has no channel left to unregister from.
    if responder.request.channel is not None:
        responder.request.unregisterProducer()
