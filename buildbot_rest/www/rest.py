# -*- test-case-name: tests.www.test_rest -*-
"""``/api/v2``: REST reads (GET, HEAD) over the data API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.data import engine
from buildbot_rest.data.base import Endpoint, Kind
from buildbot_rest.data.context import Context
from buildbot_rest.data.errors import ApiError, BadRequest
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.resultspec import ResultSpec, group, parse_query_string
from buildbot_rest.www import encoding
from buildbot_rest.www.stream import ThreadStream

log = Logger()

#: bytes written per ``request.write`` when streaming
WRITE_SIZE = 64 * 1024
#: rows per batch of a streamed collection; an unpaged collection shorter than one batch
#: is answered in one piece, with a Content-Length
STREAM_BATCH = 2000


class _Whole:
    """The first and only batch of a collection: answered whole, not streamed."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items


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
            name, self._encoder = chosen
            req.setHeader(b"content-encoding", name.encode())
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


def error_body(message: str, compact: bool = True) -> bytes:
    """An error as upstream writes it, ``{"error": "..."}`` with its separators, whatever
    the Accept header (``compact`` is kept for callers; it changes nothing)."""
    return json.dumps({"error": message}).encode()


class RestResource(Resource):
    """The data API over HTTP. Mounted at ``/api/v2`` and ``/api/latest``."""

    isLeaf = True

    def __init__(self, connector: Any, *, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.connector = connector
        self.reactor = reactor

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
            request.channel.loseConnection() if request.channel else None
            return
        compact = encoding.wants_compact(request.getHeader(b"accept"))
        responder.send(500, error_body("internal error - see logs", compact))

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
            responder.send(e.status, error_body(e.message, compact))

    def path_of(self, request: Request) -> tuple[str, ...]:
        return tuple(p.decode("utf-8", "replace") for p in request.postpath)

    async def _read(self, request: Request, responder: Responder, compact: bool) -> None:
        path = self.path_of(request)
        endpoint, kwargs = self.connector.match(path)
        query = request.uri.partition(b"?")[2]
        args = group(parse_query_string(query))
        spec = self.connector.parse_spec(endpoint, args)
        ctx = Context(self.connector, endpoint=endpoint, kwargs=kwargs)
        if endpoint.kind in (Kind.RAW, Kind.RAW_INLINE):
            raw = await endpoint.get(ctx, spec, kwargs)
            if raw is None:
                raise ctx.not_found()
            await self._send_raw(responder, endpoint, raw)
            return
        if endpoint.kind is Kind.COLLECTION and self._streamable(endpoint, spec):
            result = await self._stream_collection(ctx, endpoint, spec, kwargs, responder,
                                                   compact)
            if result is None:
                return  # streamed
        else:
            result = await endpoint.get(ctx, spec, kwargs)
        plural = endpoint.rtype.plural
        if endpoint.kind is Kind.COLLECTION:
            if result is None:
                raise ctx.not_found()
            items, total = result
            meta: dict[str, Any] = {"total": total}
            headers: dict[bytes, bytes] = {}
            if spec.paged:
                links = self._page_links(request, path, args, spec, total)
                meta["links"] = links
                if links:
                    headers[b"link"] = ", ".join(
                        f'<{url}>; rel="{rel}"' for rel, url in links.items()).encode()
            body = encoding.dumps({plural: items, "meta": meta}, compact)
            responder.send(200, body, headers=headers)
        else:
            if result is None:
                raise ctx.not_found()
            body = encoding.dumps({plural: [result], "meta": {}}, compact)
            responder.send(200, body)

    # -- pagination links -------------------------------------------------------------

    def _page_links(self, request: Request, path: tuple[str, ...], args: dict[str, list[str]],
                    spec: ResultSpec, total: int) -> dict[str, str]:
        offset = spec.offset or 0
        links: dict[str, str] = {}
        base = self.connector.base_url + "api/v2/" + "/".join(quote(p, safe="") for p in path)

        def url(new_offset: int) -> str:
            params = [(k, v) for k, vs in args.items() if k != "offset" for v in vs]
            params.append(("offset", str(new_offset)))
            return base + "?" + urlencode(params)

        if spec.limit is not None and offset + spec.limit < total:
            links["next"] = url(offset + spec.limit)
        if offset > 0:
            step = spec.limit if spec.limit else offset
            links["prev"] = url(max(0, min(offset, total) - step))
        return links

    # -- streaming collections --------------------------------------------------------

    @staticmethod
    def _streamable(endpoint: Endpoint, spec: ResultSpec) -> bool:
        # Only endpoints served by the generic engine, unpaged, and SQL-only.
        return (type(endpoint).get is Endpoint.get and not spec.paged
                and engine.streamable(endpoint.rtype, spec))

    async def _stream_collection(self, ctx: Context, endpoint: Endpoint, spec: ResultSpec,
                                 kwargs: dict[str, Any], responder: Responder,
                                 compact: bool) -> tuple[list[Any], int] | None:
        """Stream an unpaged collection from a DB thread. One that fits in the first batch
        (most do) is returned as ``(items, total)`` for a plain response instead."""
        rtype = endpoint.rtype
        # Keys are sorted: a plural after "meta" needs the total before the items.
        total_first = rtype.plural > "meta"

        def generate(conn: Any) -> Iterator[Any]:
            where = endpoint.where(ctx.resolve_in(conn, kwargs, endpoint.unchecked))
            batches = engine.iter_batches(conn, ctx, rtype, spec, where, batch=STREAM_BATCH)
            first = next(batches, [])
            if len(first) < STREAM_BATCH:
                yield _Whole(first)
                return
            # The count runs on the stream's own connection, once the first rows are read.
            if total_first:
                yield engine.count_rows(conn, rtype, spec, where)
            yield first
            yield from batches

        writer = encoding.CollectionWriter(rtype.plural, compact)
        stream = ThreadStream(self.reactor)
        request = responder.request
        request.registerProducer(stream, True)
        responder.on_disconnect(stream.cancel)
        running = ctx.db.pool.do(stream.run, generate)
        try:
            piece = await stream.next()
            if isinstance(piece, _Whole):
                return piece.items, len(piece.items)
            total = piece if total_first else None
            if responder.disconnected:
                return None
            responder.start(200, encoding.JSON_TYPE)
            responder.write(writer.opening(total))
            count = 0
            batch = await stream.next() if total_first else piece
            while batch is not None:
                count += len(batch)
                responder.write(writer.items(batch))
                stream.consumed()
                batch = await stream.next()
            if responder.disconnected:
                return None
            responder.write(writer.closing(None if total_first else count))
        finally:
            stream.cancel()
            request.unregisterProducer()
            await running
        responder.finish()
        return None

    # -- raw downloads ----------------------------------------------------------------

    async def _send_raw(self, responder: Responder, endpoint: Endpoint, raw: RawData) -> None:
        headers: dict[bytes, bytes] = {}
        if endpoint.kind is Kind.RAW and raw.filename:
            headers[b"content-disposition"] = raw.content_disposition()
        if raw.body is not None:
            responder.send(200, raw.body, raw.content_type, headers=headers)
            return
        stream = ThreadStream(self.reactor)
        request = responder.request
        request.registerProducer(stream, True)
        assert raw.generate is not None
        responder.on_disconnect(stream.cancel)
        running = self.connector.db.pool.do(stream.run, raw.generate)
        try:
            responder.start(200, raw.content_type, headers=headers)
            while True:
                piece = await stream.next()
                if piece is None:
                    break
                responder.write(piece)
                stream.consumed()
            if responder.disconnected:
                return
        finally:
            stream.cancel()
            request.unregisterProducer()
            await running
        responder.finish()
