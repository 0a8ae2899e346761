# -*- test-case-name: tests.www.test_live -*-
"""What /ws and /sse share: subscription paths, and a bounded queue of what a connection
has yet to send."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from buildbot_rest.mq.base import KeyFilter

T = TypeVar("T")


def key_filter(path: str) -> KeyFilter:
    """The routing key filter of a subscription path, as upstream reads one
    (protocol.md 8.2): the elements between ``/``, each ``*`` matching any one element
    (``builds/*/*`` -> ``("builds", None, None)``). There is no wildcard for several
    elements: a filter only matches keys of its own length."""
    return tuple(None if part == "*" else part for part in path.split("/"))


@implementer(IPushProducer)
class Backlog(Generic[T]):
    """What one connection has to send, bounded in bytes.

    It is the push producer of the connection's transport: while the transport's buffer
    is full (the client reads slower than it is sent to), items wait here; once more
    than ``limit`` bytes wait, ``overflow(waiting)`` is called once (it is to close the
    connection) and nothing more is kept. So a client that does not keep up costs at most
    ``limit`` bytes plus the transport's own buffer, and never stalls anyone else.

    ``write(item)`` sends an item; ``send(item, size)`` sends it now or queues it."""

    def __init__(self, write: Callable[[T], None], limit: int,
                 overflow: Callable[[int], None]) -> None:
        self._write = write
        self.limit = limit
        self._overflow = overflow
        self._waiting: deque[tuple[T, int]] = deque()
        #: bytes waiting here
        self.size = 0
        self.paused = False
        #: whether the limit was passed (or the connection went away): nothing is sent
        self.closed = False

    def send(self, item: T, size: int) -> None:
        if self.closed:
            return
        if not self.paused and not self._waiting:
            self._write(item)
            return
        self._waiting.append((item, size))
        self.size += size
        if self.size > self.limit:
            waiting = self.size
            self.close()
            self._overflow(waiting)

    def close(self) -> None:
        """Drop what waits and send nothing more."""
        self.closed = True
        self._waiting.clear()
        self.size = 0

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        # (a write may fill the transport's buffer again: it pauses this in the middle)
        while self._waiting and not self.paused and not self.closed:
            item, size = self._waiting.popleft()
            self.size -= size
            self._write(item)

    def stopProducing(self) -> None:
        self.close()
