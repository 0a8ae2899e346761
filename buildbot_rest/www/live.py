# -*- test-case-name: tests.www.test_live -*-
"""What /ws and /sse share: the resource's parts (the live events, who calls and what
they may receive), subscription paths, and a bounded queue of what a connection has yet
to send."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from zope.interface import implementer

from buildbot_rest.auth.service import ANONYMOUS_CALLER, AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.mq.base import KeyFilter
from buildbot_rest.mq.live import LiveEvents

log = Logger()

#: the most paths one /ws connection or /sse stream may subscribe to at once (each costs
#: the server memory and a little work per event)
MAX_SUBSCRIPTIONS = 1000
#: the bytes a :class:`Backlog` gathers before it writes them without waiting for the
#: end of the reactor turn (a transport's own buffer holds 64 KiB before it pauses)
FLUSH_AT = 64 * 1024


#: seconds between two checks that a live connection's credentials still hold (a
#: revoked token, a logout); an expiry ends it at once
RECHECK_EVERY = 60.0
#: /ws's close code when the credentials no longer hold (RFC 6455 7.4.1)
POLICY_VIOLATION = 1008


class LiveResource(Resource):
    """The base of ``/ws`` and ``/sse``: ``live`` (the live events; None on a server
    without a message queue), ``auth`` (who calls: None is everyone anonymous, allowed
    everything), ``config`` (``ping_interval``, ``live_buffer``...) and a
    :class:`Flusher` that writes the connections' events of a reactor turn together."""

    isLeaf = True

    def __init__(self, live: LiveEvents | None, *, auth: AuthService | None,
                 config: Config, reactor: Any) -> None:
        super().__init__()
        self.live = live
        self.auth = auth
        self.config = config
        self.reactor = reactor
        self.flusher = Flusher(reactor)

    #: seconds between checks that a connection's credentials still hold
    recheck_every = RECHECK_EVERY

    async def caller(self, request: IRequest) -> Caller:
        """Who makes ``request`` (anonymous without an auth service); raises the
        ``Unauthenticated`` (401) of a bad bearer token, ``TooManyRequests`` (429)."""
        if self.auth is None:
            return ANONYMOUS_CALLER
        return await self.auth.caller(request)

    def may_subscribe(self, caller: Caller, wanted: KeyFilter) -> bool:
        """Whether ``caller`` may receive the events of ``wanted`` (COMPAT 19 and 20:
        the auth service decides; without one, everyone may)."""
        return self.auth is None or self.auth.may_subscribe(caller, wanted)

    def event_filter(self, caller: Caller) -> Callable[[Sequence[str], Mapping[str, Any]],
                                                       bool] | None:
        """The test of each event ``caller`` may receive (view rules), or None: all."""
        return None if self.auth is None else self.auth.event_filter(caller)


class CredentialsWatch:
    """Ends a live connection (``close(code, reason)``: its ``close_live``) when the
    credentials its caller was found by stop holding: at the token's or cookie's
    expiry, and at the first check (every ``resource.recheck_every`` seconds) after
    the token is revoked or the user logs out. A caller with nothing to lose (anonymous,
    a proxy's user) is not watched."""

    def __init__(self, resource: LiveResource, caller: Caller,
                 close: Callable[[int, str], None]) -> None:
        self._resource = resource
        self._caller = caller
        self._close = close
        self._loop: task.LoopingCall | None = None
        self._expiry: Any = None

    def start(self) -> None:
        auth = self._resource.auth
        if auth is None or not auth.revocable(self._caller):
            return
        reactor = self._resource.reactor
        if self._caller.expires is not None:
            wait = max(0.0, self._caller.expires - auth.clock())
            self._expiry = reactor.callLater(wait, self._end, "expired")
        self._loop = task.LoopingCall(self._check)
        self._loop.clock = reactor
        self._loop.start(self._resource.recheck_every, now=False).addErrback(
            lambda f: log.failure("checking the credentials of a live connection", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    async def _still_valid(self) -> bool:
        auth = self._resource.auth
        return auth is None or await auth.still_valid(self._caller)

    def _check(self) -> defer.Deferred[None]:
        d = defer.ensureDeferred(self._still_valid())

        def decide(valid: bool) -> None:
            if not valid:
                self._end("no longer valid (revoked, or logged out)")
        return d.addCallback(decide)

    def _end(self, why: str) -> None:
        self._expiry = None
        self.stop()
        what = "bearer token" if self._caller.token_id is not None else "session"
        self._close(POLICY_VIOLATION, f"the {what} of this connection is {why}")


def key_filter(path: str | Sequence[str]) -> KeyFilter:
    """The routing key filter of a subscription path, as upstream reads one
    (protocol.md 8.2): the elements between ``/`` (or the elements given, which /sse
    has percent-decoded: one may hold a ``/``), each ``*`` matching any one element
    (``builds/*/*`` -> ``("builds", None, None)``). There is no wildcard for several
    elements: a filter only matches keys of its own length."""
    elements = path.split("/") if isinstance(path, str) else path
    return tuple(None if part == "*" else part for part in elements)


class Flusher:
    """Writes what many :class:`Backlog`\\ s gathered, once per reactor turn.

    An event goes to every client subscribed to it, and a write to a transport costs far
    more than gathering bytes: so a backlog does not write at once, it asks its flusher,
    which writes each backlog's bytes of the turn in one piece at the start of the next
    turn. When the server is busy, several events share a write, so the cost per event
    falls as the load rises."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._dirty: dict[Backlog, None] = {}
        self._call: Any = None

    def mark(self, backlog: Backlog) -> None:
        """``backlog`` has bytes to write: write them in the next turn."""
        self._dirty[backlog] = None
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Write what every marked backlog gathered (now)."""
        self._call = None
        dirty, self._dirty = self._dirty, {}
        for backlog in dirty:
            backlog.flush()


@implementer(IPushProducer)
class Backlog:
    """What one connection has to send, bounded in bytes.

    It is the push producer of the connection's transport: while the transport's buffer
    is full (the client reads slower than it is sent to), data waits here; once more
    than ``limit`` bytes wait, ``overflow(waiting)`` is called once (it is to close the
    connection) and nothing more is kept. So a client that does not keep up costs at most
    ``limit`` bytes plus the transport's own buffer, and never stalls anyone else.

    ``send(data)`` sends bytes (whole frames or records, in order): with a ``flusher``
    in the flusher's next write of this backlog (the bytes of one turn joined, one
    ``write(data)``), else at once."""

    def __init__(self, write: Callable[[bytes], None], limit: int,
                 overflow: Callable[[int], None], flusher: Flusher | None = None) -> None:
        self._write = write
        self.limit = limit
        self._overflow = overflow
        self._flusher = flusher
        #: the bytes of this turn, for the flusher's write
        self._batch: list[bytes] = []
        self._batched = 0
        #: what waits for the transport to take more
        self._waiting: deque[bytes] = deque()
        #: bytes waiting here for the transport
        self.size = 0
        self.paused = False
        #: whether the limit was passed (or the connection went away): nothing is sent
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.paused and not self._waiting:
            if self._flusher is None:
                self._write(data)
                return
            # (gathered for the next write: not behind, so not counted as waiting; but
            # past FLUSH_AT bytes written at once, so that the transport says whether
            # the client keeps up before more is gathered)
            if not self._batch:
                self._flusher.mark(self)
            self._batch.append(data)
            self._batched += len(data)
            if self._batched >= FLUSH_AT:
                self.flush()
            return
        self._waiting.append(data)
        self._waited(len(data))

    def _waited(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            waiting = self.size
            self.close()
            self._overflow(waiting)

    def flush(self) -> None:
        """Write the bytes gathered so far (the flusher's call, or before a close)."""
        if self.closed or not self._batch:
            return
        data = b"".join(self._batch)
        self._batch, self._batched = [], 0
        self._write(data)

    def close(self) -> None:
        """Drop what waits and send nothing more."""
        self.closed = True
        self._batch.clear()
        self._batched = 0
        self._waiting.clear()
        self.size = 0

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True
        if self._batch:
            # what was gathered comes before anything sent from now on: it waits first
            # (counted, and checked against the limit at the next send)
            data = b"".join(self._batch)
            self._batch, self._batched = [], 0
            self._waiting.appendleft(data)
            self.size += len(data)

    def resumeProducing(self) -> None:
        self.paused = False
        # (a write may fill the transport's buffer again: it pauses this in the middle)
        while self._waiting and not self.paused and not self.closed:
            data = self._waiting.popleft()
            self.size -= len(data)
            self._write(data)

    def stopProducing(self) -> None:
        self.close()
