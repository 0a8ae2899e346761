# -*- test-case-name: tests.data.test_connector -*-
"""What a read through the data connector answers: a whole collection, a collection in
batches, an entity, or a download (:class:`~buildbot_rest.data.rawdata.RawData`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data.base import ResourceType
from buildbot_rest.data.context import Context, unavailable
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.errors import ServiceUnavailable
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db.pool import DatabaseUnavailable
from buildbot_rest.db.stream import ThreadStream

#: why a read that the stop of the database cut short fails
CUT_SHORT = "the read was cut short: the database has stopped"
#: rows per batch of a streamed collection; an unpaged collection shorter than one batch
#: is answered whole
STREAM_BATCH = 2000


@dataclass(frozen=True)
class Collection:
    """A collection answered whole: one page of ``items`` and the ``total`` before
    paging."""

    items: list[dict[str, Any]]
    total: int


@dataclass(frozen=True)
class Single:
    """One entity."""

    entity: dict[str, Any]


class CollectionStream:
    """An unpaged collection in batches of items, read in a database thread while the
    caller writes what it has.

    ``total`` is known before the first item when the answer's document needs it there
    (its keys are sorted, so ``meta`` comes first when the plural sorts after it), else
    None: count the items. :attr:`producer` is the flow control to register on the
    transport; :meth:`close` must be awaited at the end, whatever happened."""

    def __init__(self, stream: ThreadStream, total: int | None,
                 first: list[dict[str, Any]]) -> None:
        self.total = total
        self.producer = stream
        self._stream = stream
        self._first: list[dict[str, Any]] | None = first

    async def next(self) -> list[dict[str, Any]] | None:
        """The next batch (never empty), or None at the end."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            batch: list[dict[str, Any]] | None = await self._stream.next()
        except DatabaseUnavailable as e:
            raise unavailable(e) from e
        return batch

    async def read_all(self) -> list[dict[str, Any]]:
        """Every item left, at once (the stream is then closed); ServiceUnavailable
        when the database stopped before the end."""
        first, self._first = self._first or [], None
        return first + [item for batch in await drain(self._stream) for item in batch]

    def consumed(self) -> None:
        """A batch has been written out: the reader may go on."""
        self._stream.consumed()

    @property
    def cancelled(self) -> bool:
        """Whether reading was stopped before the end (see :meth:`cancel`)."""
        return self._stream.cancelled

    def cancel(self) -> None:
        """Stop reading (the client has gone)."""
        self._stream.cancel()

    async def close(self) -> None:
        """Stop reading and wait until the database connection is free."""
        await self._stream.close()


class _Whole:
    """The first and only batch of a collection: answered whole, not streamed."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items


def total_first(rtype: ResourceType) -> bool:
    """Whether a collection document of ``rtype`` puts ``meta`` (the total) before its
    items: the keys are sorted, as upstream writes them."""
    return rtype.plural > "meta"


def collection_pieces(conn: sa.Connection, ctx: Context, endpoint: Endpoint,
                      spec: ResultSpec, kwargs: dict[str, Any]) -> Iterator[Any]:
    """The pieces of a streamed collection, in a database thread: one :class:`_Whole`
    when the first batch holds it all; else the total (if needed first), then the
    batches."""
    batches = endpoint.batches_in(conn, ctx, spec, kwargs, STREAM_BATCH)
    pieces = iter(batches)
    first = next(pieces, [])
    if len(first) < STREAM_BATCH:
        yield _Whole(first)
        return
    # The count runs on the stream's own connection, once the first rows are read.
    if total_first(endpoint.rtype):
        yield batches.total()
    yield first
    yield from pieces


async def open_collection(stream: ThreadStream, rtype: ResourceType
                          ) -> Collection | CollectionStream:
    """Take the first pieces of :func:`collection_pieces` and decide: a whole answer (the
    stream then ends) or a stream of batches."""
    try:
        piece = await stream.next()
        if isinstance(piece, _Whole):
            await stream.close()
            return Collection(piece.items, len(piece.items))
        if total_first(rtype) and piece is not None:
            total: int | None = piece
            first = await stream.next()
        else:
            total, first = None, piece
        if first is None:  # cancelled (the database stopped) before the first batch
            raise ServiceUnavailable(CUT_SHORT)
    except BaseException:
        await stream.close()
        raise
    return CollectionStream(stream, total, first)


async def drain(stream: ThreadStream) -> list[Any]:
    """Every piece a stream has left, for a caller that wants them all at once; the
    stream is closed. ServiceUnavailable when it was cut short."""
    pieces: list[Any] = []
    try:
        while (piece := await stream.next()) is not None:
            pieces.append(piece)
            stream.consumed()
    except DatabaseUnavailable as e:
        raise unavailable(e) from e
    finally:
        await stream.close()
    if stream.cancelled:
        raise ServiceUnavailable(CUT_SHORT)
    return pieces
