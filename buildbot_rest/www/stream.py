# -*- test-case-name: tests.www.test_stream -*-
"""Streaming from a database thread to an HTTP response with flow control.

A generator runs in a pool thread (holding its connection) and hands each piece to the
reactor. It may run only a few pieces ahead of what the client has taken: the reactor
gives a permit back once a piece is written and the transport is not paused, so memory
stays flat whatever the size of the response.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

_DONE = object()


class Cancelled(Exception):
    """The consumer went away; the generator is stopped."""


@implementer(IPushProducer)
class ThreadStream:
    """Pieces produced by ``generator(conn)`` in a DB thread, consumed with :meth:`next`."""

    def __init__(self, reactor: Any, window: int = 4) -> None:
        self._reactor = reactor
        self._permits = threading.Semaphore(window)
        self._pending: collections.deque[Any] = collections.deque()
        self._waiting: defer.Deferred[Any] | None = None
        self._cancelled = False
        self._paused = False
        self._owed = 0

    # -- the producing side (a DB thread) ----------------------------------------------

    def run(self, conn: Any, generator: Callable[[Any], Iterator[Any]]) -> None:
        """Drive ``generator(conn)`` to the end, or until :meth:`cancel` (call this in a
        pool thread). The generator is closed before this returns, so its cursor is."""
        pieces = generator(conn)
        end: Any = _DONE
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
        self._reactor.callFromThread(self._deliver, end)

    # -- the consuming side (the reactor) ------------------------------------------------

    def _deliver(self, piece: Any) -> None:
        if self._cancelled:
            return
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(piece)
        else:
            self._pending.append(piece)

    def next(self) -> defer.Deferred[Any]:
        """The next piece; ``None`` at the end. A failure in the generator is raised."""
        if self._cancelled:
            d = defer.succeed(_DONE)
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

    def consumed(self) -> None:
        """One piece has been written; let the producer go on unless the client is slow."""
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

    # IPushProducer, registered on the request: the transport's own flow control.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._owed:
            self._owed -= 1
            self._permits.release()

    def stopProducing(self) -> None:
        self.cancel()
