# -*- test-case-name: tests.db.test_stream -*-
"""Streaming the pieces of a generator that runs in a database thread, with flow control.

A generator runs in a pool thread (holding its connection) and hands each piece to the
reactor. It may run only a few pieces ahead of what the consumer has taken: the consumer
gives a permit back once a piece is used (:meth:`ThreadStream.consumed`) and the stream
is not paused, so memory stays flat whatever the size of the whole.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer, IReactorFromThreads
from twisted.python.failure import Failure
from zope.interface import implementer

_DONE = object()


@implementer(IPushProducer)
class ThreadStream:
    """Pieces produced by ``generator(conn)`` in a DB thread, consumed with :meth:`next`.

    Made by :meth:`buildbot_rest.db.pool.DBThreadPool.stream`, which sets
    :attr:`running`. It is an ``IPushProducer``: registered on a transport, the
    transport's own flow control pauses it."""

    def __init__(self, reactor: IReactorFromThreads, window: int = 4) -> None:
        self._reactor = reactor
        self._permits = threading.Semaphore(window)
        self._pending: collections.deque[Any] = collections.deque()
        self._waiting: defer.Deferred[Any] | None = None
        self._cancelled = False
        self._paused = False
        self._owed = 0
        #: whether the generator's own end has come (before any cancel)
        self._ended = False
        #: fires once the producing thread has let go of its connection
        self.running: defer.Deferred[None] = defer.succeed(None)

    # -- the producing side (a DB thread) ----------------------------------------------

    def run(self, conn: Any, generator: Callable[[Any], Iterator[Any]]) -> None:
        """Drive ``generator(conn)`` to the end, or until :meth:`cancel` (call this in a
        pool thread). The generator is closed before this returns, so its cursor is."""
        end: Any = _DONE
        try:
            pieces = generator(conn)
        except Exception:  # noqa: BLE001 - handed to the reactor, which raises it
            self.end_with(Failure())
            return
        try:
            for piece in pieces:
                while not self._permits.acquire(timeout=1.0):
                    if self._cancelled:
                        break
                if self._cancelled:
                    break
                self._reactor.callFromThread(self._deliver, piece)
        except Exception:  # noqa: BLE001 - handed to the reactor, which raises it
            end = Failure()
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        self.end_with(end)

    def end_with(self, end: Any) -> None:
        """End the stream from the producing thread: with a Failure, or normally."""
        self._reactor.callFromThread(self._deliver, _DONE if end is None else end)

    # -- the consuming side (the reactor) ------------------------------------------------

    def _deliver(self, piece: Any) -> None:
        if self._cancelled:
            return
        if piece is _DONE:
            self._ended = True
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(piece)
        else:
            self._pending.append(piece)

    async def first(self) -> None:
        """Wait for the first piece without taking it (:meth:`next` gives it): a stream
        that fails before its first piece raises here, before anything is written."""
        piece = await self.next()
        if not self._cancelled:
            self._pending.appendleft(_DONE if piece is None else piece)

    def next(self) -> defer.Deferred[Any]:
        """The next piece; ``None`` at the end. A failure in the generator is raised."""
        if self._cancelled:
            d: defer.Deferred[Any] = defer.succeed(_DONE)
        elif self._pending:
            d = defer.succeed(self._pending.popleft())
        else:
            self._waiting = defer.Deferred()
            d = self._waiting
        return d.addCallback(self._unwrap)

    @staticmethod
    def _unwrap(piece: Any) -> Any:
        if piece is _DONE:
            return None
        if isinstance(piece, Failure):
            piece.raiseException()
        return piece

    @property
    def cancelled(self) -> bool:
        """Whether the stream was cancelled before the generator's own end came, so that
        the consumer has not seen all of it."""
        return self._cancelled and not self._ended

    def consumed(self) -> None:
        """One piece has been used; let the producer go on unless the stream is paused."""
        if self._paused:
            self._owed += 1
        else:
            self._permits.release()

    def cancel(self) -> None:
        """Stop the producer; a pending :meth:`next` gets the end (None). Reactor only."""
        self._cancelled = True
        self._permits.release()
        self._pending.clear()
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(_DONE)

    async def close(self) -> None:
        """Cancel, and wait until the producing thread has let go of its connection."""
        self.cancel()
        await self.running

    # IPushProducer
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._owed:
            self._owed -= 1
            self._permits.release()

    def stopProducing(self) -> None:
        self.cancel()
