"""A client that goes away while an answer streams frees the database connection.

These tests serve a database with answers far longer than one streaming batch and than
the sockets' buffers (a collection of ~40,000 builds, ~30 MB of JSON, and a raw log of
~32 MB), from a pool of ONE connection: a streamed answer that is not cancelled when its
client goes away keeps that connection, and the next request is never answered. Every
wait is bounded (:func:`within`), so that such a hang fails the test instead of the suite.

The helpers here (the large database, :class:`Watch`, :class:`Client`, :func:`within`)
are also used by ``tests/www/test_stream.py`` and ``tests/test_service.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.data import reads
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.db.logchunks import RAW
from buildbot_rest.db.stream import ThreadStream
from buildbot_rest.www import WebApp
from tests.www.conftest import Api, serve_database

#: how long something that should be prompt may take before the test fails (only a hang
#: reaches it; on a loaded machine it takes a fraction of a second)
PROMPT = 10.0

#: builds in the large database: 20 batches of reads.STREAM_BATCH
BIG_BUILDS = 40_000
#: each build's state_string: makes a build ~750 bytes of JSON
STATE = "streaming " * 50
#: the large log: lines of 60 bytes (with their newline), 1,000 to a chunk, ~32 MB
LOG_LINES = 540_000
LINES_PER_CHUNK = 1000

#: how much a client that "reads a little" reads before it hangs up
A_LITTLE = 64 * 1024


# -- the large database -------------------------------------------------------------------

@dataclass
class BigData:
    """A database whose answers stream: ``builds`` (``BIG_BUILDS`` + 1 builds) and the
    raw text of log ``logid`` (``raw_length`` bytes whose sha256 is ``raw_sha256``)."""

    url: str
    logid: int
    builds: int
    raw_length: int
    raw_sha256: str

    @property
    def raw_path(self) -> str:
        return f"/api/v2/logs/{self.logid}/raw"


def _line(i: int) -> bytes:
    return b"%08d " % i + b"0123456789" * 5


def _fill(url: str) -> BigData:
    """Fill an empty database: demo rows for one build, then many builds and a large log,
    with plain SQLAlchemy."""
    db = Database(url, pool_size=1)
    db.prepare_sync()
    demo.populate(db.engine, builds=1, seed=1)
    digest = hashlib.sha256()
    length = 0
    with db.engine.begin() as conn:
        first = dict(conn.execute(sa.select(s.builds).where(s.builds.c.id == 1))
                     .mappings().one())
        # 1,000 builds, then copies of them made by the database (a row at a time is
        # slow on PostgreSQL)
        base = conn.execute(sa.select(sa.func.max(s.builds.c.id))).scalar() + 1
        conn.execute(s.builds.insert(), [
            dict(first, id=base + i, number=10_000 + i, state_string=f"{i} {STATE}")
            for i in range(1000)])
        b = s.builds
        made = 1000
        while made < BIG_BUILDS:
            step = min(made, BIG_BUILDS - made)
            columns = [c.name for c in b.columns]
            copies = sa.select(*(b.c.id + made if c == "id" else b.c.number + made
                                 if c == "number" else b.c[c] for c in columns)).where(
                b.c.id >= base, b.c.id < base + step)
            conn.execute(b.insert().from_select(columns, copies))
            made += step
        builds = conn.execute(sa.select(sa.func.count()).select_from(s.builds)).scalar()
        logid = conn.execute(sa.select(sa.func.max(s.logs.c.id))).scalar() + 1
        conn.execute(s.logs.insert().values(id=logid, name="huge", slug="huge", stepid=1,
                                            complete=1, num_lines=LOG_LINES, type="t"))
        chunks = []
        for first_line in range(0, LOG_LINES, LINES_PER_CHUNK):
            last_line = min(first_line + LINES_PER_CHUNK, LOG_LINES) - 1
            text = b"\n".join(_line(i) for i in range(first_line, last_line + 1))
            # the raw text: each chunk's lines, each with its newline
            digest.update(text + b"\n")
            length += len(text) + 1
            chunks.append({"logid": logid, "first_line": first_line,
                           "last_line": last_line, "content": text, "compressed": RAW})
            if len(chunks) == 100:
                conn.execute(s.logchunks.insert(), chunks)
                chunks = []
        if chunks:
            conn.execute(s.logchunks.insert(), chunks)
    db.engine.dispose()
    return BigData(url, logid, builds, length, digest.hexdigest())


#: built once a session per backend, whichever module's fixture asks first
_BUILT: dict[str, BigData] = {}


def big_database(backend: str, new_url: Callable[[], str]) -> BigData:
    if backend not in _BUILT:
        _BUILT[backend] = _fill(new_url())
    return _BUILT[backend]


@pytest.fixture(scope="session")
def big_sqlite(tmp_path_factory: pytest.TempPathFactory) -> BigData:
    return big_database(
        "sqlite", lambda: f"sqlite:///{tmp_path_factory.mktemp('big') / 'big.sqlite'}")


@pytest.fixture(scope="session")
def big_postgresql(pg_databases: Any) -> BigData:
    return big_database("postgresql", pg_databases.create)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def big_data(request: pytest.FixtureRequest) -> BigData:
    """The large database on each backend."""
    return request.getfixturevalue(f"big_{request.param}")  # type: ignore[no-any-return]


# -- watching the streams a server starts -------------------------------------------------

@dataclass
class Run:
    """One stream a server started, seen from outside: how far its generator went."""

    stream: ThreadStream | None = None
    #: pieces the generator yielded
    pieces: int = 0
    #: the generator ran to its end (the whole answer was read from the database)
    exhausted: bool = False
    #: the generator was closed (at its end or early)
    closed: bool = False
    #: fires the first time the transport pauses the stream (the client's buffers are full)
    paused: defer.Deferred[None] = field(default_factory=defer.Deferred)
    #: fires once the stream's thread has let go of its connection
    ended: defer.Deferred[None] = field(default_factory=defer.Deferred)


class Watch:
    """Wraps ``db.pool.stream`` (the real one runs) to see each stream a server starts:
    how far its generator went, when it is paused, when its connection is free."""

    def __init__(self, db: Database) -> None:
        #: when set, each stream's thread waits (holding its connection) until the gate
        #: opens, or until the stream is cancelled, before it reads anything
        self.gate: threading.Event | None = None
        self.runs: list[Run] = []
        self._started: list[defer.Deferred[Run]] = []
        self._stream = db.pool.stream
        db.pool.stream = self._start  # type: ignore[method-assign]

    def _start(self, generate: Callable[[Any], Iterator[Any]], window: int = 4
               ) -> ThreadStream:
        run = Run()

        def watched(conn: Any) -> Iterator[Any]:
            gate = self.gate
            if gate is not None:
                # (in the database thread) wait for the test, or for a cancel
                while not gate.wait(0.01):
                    if run.stream is not None and run.stream._cancelled:
                        run.closed = True
                        return
            pieces = generate(conn)
            try:
                for piece in pieces:
                    run.pieces += 1
                    yield piece
                run.exhausted = True
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
                run.closed = True

        stream = self._stream(watched, window)
        run.stream = stream
        pause = stream.pauseProducing

        def pause_producing() -> None:
            if not run.paused.called:
                run.paused.callback(None)
            pause()
        stream.pauseProducing = pause_producing  # type: ignore[method-assign]

        def ended(result: Any) -> Any:
            if not run.ended.called:
                run.ended.callback(None)
            return result  # the server awaits this Deferred too: pass its result on
        stream.running.addBoth(ended)
        self.runs.append(run)
        waiters, self._started = self._started, []
        for waiter in waiters:
            waiter.callback(run)
        return stream

    def started(self) -> defer.Deferred[Run]:
        """The first stream started (now, or once it is)."""
        if self.runs:
            return defer.succeed(self.runs[0])
        waiter: defer.Deferred[Run] = defer.Deferred()
        self._started.append(waiter)
        return waiter

    def only(self) -> Run:
        assert len(self.runs) == 1, f"{len(self.runs)} streams started, not one"
        return self.runs[0]

    def cancel_all(self) -> None:
        """Cancel the streams still running (after a test, so that stopping the pool
        cannot wait forever on one that a fault left stuck)."""
        for run in self.runs:
            if not run.ended.called and run.stream is not None:
                run.stream.cancel()

    def release_from_thread(self) -> None:
        """A watchdog's last resort, from another thread while the reactor is blocked
        (stopping the pool joins a stream's thread that waits for the reactor): make every
        stream's thread give up. Only the thread-safe part of ``cancel``."""
        for run in self.runs:
            stream = run.stream
            if stream is not None and not run.ended.called:
                stream._cancelled = True
                stream._permits.release()


# -- bounded waits --------------------------------------------------------------------------

async def within(d: defer.Deferred[Any], what: str, seconds: float = PROMPT) -> Any:
    """The result of ``d``; fails the test if it takes more than ``seconds`` (a hang).

    ``d`` is cancelled then: pass a Deferred of the test's own."""
    try:
        return await d.addTimeout(seconds, reactor)
    except defer.TimeoutError:
        pytest.fail(f"{what}: nothing after {seconds:g}s", pytrace=False)


async def until(condition: Callable[[], bool], what: str, seconds: float = PROMPT) -> None:
    """Wait (polling) until ``condition()``; fails the test after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    pytest.fail(f"{what}: not after {seconds:g}s", pytrace=False)


def mine(d: defer.Deferred[Any]) -> defer.Deferred[None]:
    """A Deferred of our own that fires when ``d`` does (``d``'s result passed on), to
    wait on without touching what ``d``'s other users get."""
    result: defer.Deferred[None] = defer.Deferred()

    def fire(value: Any) -> Any:
        if not result.called:
            result.callback(None)
        return value
    d.addBoth(fire)
    return result


# -- a plain HTTP/1.1 client over a real socket ---------------------------------------------

class Client(Protocol):
    """Sends one GET and keeps every byte of the answer. ``stalled``: it reads nothing
    (its transport is paused at once, so the socket buffers fill); ``read_first`` bytes
    are read before it stalls. ``hang_up_after``: it aborts the connection once it has
    that many bytes."""

    def __init__(self, path: str, *, stalled: bool = False, read_first: int = 0,
                 hang_up_after: int | None = None, gzip: bool = False) -> None:
        coding = "Accept-Encoding: gzip\r\n" if gzip else ""
        self.request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{coding}"
                        "Accept: application/json\r\nConnection: close\r\n\r\n").encode()
        self.stalled = stalled
        self.read_first = read_first
        self.hang_up_after = hang_up_after
        self.data = bytearray()
        #: fires once the client has stalled (read what it reads first)
        self.has_stalled: defer.Deferred[None] = defer.Deferred()
        #: fires when the connection is gone, whoever closed it
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]
        if self.stalled and self.read_first == 0:
            self.stall()

    def stall(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        if not self.has_stalled.called:
            self.has_stalled.callback(None)

    def resume(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def hang_up(self) -> None:
        if self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Hang up politely (a FIN, where :meth:`hang_up` resets the connection)."""
        if self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.resumeProducing()
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.hang_up_after is not None and len(self.data) >= self.hang_up_after:
            self.hang_up()
        elif self.stalled and not self.has_stalled.called and len(self.data) >= self.read_first:
            self.stall()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.closed.called:
            self.closed.callback(None)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        """(status, headers, body, whether the chunked body ended properly)."""
        head, _, rest = bytes(self.data).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        assert headers.get(b"transfer-encoding") == b"chunked", headers
        body, pos = [], 0
        while True:
            end = rest.find(b"\r\n", pos)
            if end < 0:
                return status, headers, b"".join(body), False
            size = int(rest[pos:end].split(b";")[0], 16)
            if size == 0:
                return status, headers, b"".join(body), True
            chunk = rest[end + 2:end + 2 + size]
            if len(chunk) < size:
                return status, headers, b"".join(body) + chunk, False
            body.append(chunk)
            pos = end + 2 + size + 2


async def connect(port: int, client: Client) -> Client:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await within(endpoints.connectProtocol(endpoint, client), "connecting")
    return client


# -- a server over the large database, with one connection -----------------------------

@dataclass
class Server:
    api: Api
    db: Database
    watch: Watch
    data: BigData

    @property
    def port(self) -> int:
        return int(self.api.root.rsplit(":", 1)[1].rstrip("/"))

    async def answers_promptly(self) -> None:
        """A new request is answered: the single database connection is free."""
        response = await within(
            treq.get(self.api.root + "api/v2/builds?limit=1&order=-buildid",
                     headers={"Accept": ["application/json"]}, persistent=False),
            "a request after the client hung up (the one database connection is still held)")
        body = await within(treq.json_content(response), "reading its answer")
        assert response.code == 200
        assert body["meta"]["total"] == self.data.builds


@pytest.fixture
def server(big_data: BigData) -> Iterator[Server]:
    """The large database served over a listening port from a pool of ONE connection."""
    db = Database(big_data.url, pool_size=1)
    db.prepare_sync()
    watch = Watch(db)
    serving = serve_database(db)
    api = next(serving)
    try:
        yield Server(api, db, watch, big_data)
    finally:
        watch.cancel_all()
        serving.close()  # stops listening and the pool


PATHS = {"collection": "/api/v2/builds", "raw log": "raw"}


def path_of(server: Server, what: str) -> str:
    return server.data.raw_path if what == "raw log" else PATHS[what]


async def assert_stopped_early(run: Run) -> None:
    """The stream's thread let go of its connection, and its generator was closed before
    it had read the whole answer from the database."""
    await within(mine(run.ended), "the stream letting go of its database connection")
    assert run.closed
    assert not run.exhausted, (
        f"the whole answer was read from the database ({run.pieces} pieces) for a client "
        "that had gone: the stream was not cancelled")


# -- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("read_first", [0, A_LITTLE], ids=["reads-nothing", "reads-a-little"])
@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest_twisted.ensureDeferred
async def test_stalled_client_that_hangs_up(server: Server, what: str,
                                            read_first: int) -> None:
    """A client that stops reading: the server's answer is paused mid-way (the socket
    buffers are full), holding the one database connection. When the client hangs up,
    the stream is cancelled and the connection freed."""
    client = await connect(server.port, Client(path_of(server, what), stalled=True,
                                               read_first=read_first))
    try:
        run = await within(server.watch.started(), "the answer starting to stream")
        await within(client.has_stalled, "the client reading its first bytes")
        await within(mine(run.paused), "the server pausing its answer for a client "
                     "that reads nothing (the answer should be larger than the buffers)")
        assert not run.exhausted
        client.hang_up()
        await within(client.closed, "the connection closing")
        await assert_stopped_early(run)
        await server.answers_promptly()
    finally:
        client.hang_up()


@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest_twisted.ensureDeferred
async def test_hang_up_reported_without_stop_producing(server: Server, what: str) -> None:
    """Over a transport that reports a lost connection to its protocol without stopping
    the producer registered on it (Twisted's HTTP/2 streams do this; so do in-memory
    transports), only the request's disconnect hook can cancel the stream.

    The site runs over an in-memory transport (``twisted.test.iosim.FakeTransport``) that
    never pauses: without the hook, the whole answer would be read and thrown away."""
    site = Site(WebApp(server.api.connector).resource())
    protocol = site.buildProtocol(iosim.FakeAddress())
    transport = iosim.FakeTransport(protocol, isServer=True)
    protocol.makeConnection(transport)
    protocol.dataReceived(Client(path_of(server, what)).request)
    received = bytearray()

    def pump() -> None:
        received.extend(transport.getOutBuffer() or b"")
    pumping = task.LoopingCall(pump)
    pumping.start(0.001)
    try:
        run = await within(server.watch.started(), "the answer starting to stream")
        await until(lambda: len(received) >= A_LITTLE, "the first bytes of the answer")
        assert not run.exhausted
        # the client goes away: the transport drops what is written from now on
        transport.disconnecting = transport.disconnected = True
        protocol.connectionLost(Failure(ConnectionLost("the client went away")))
        await assert_stopped_early(run)
        await server.answers_promptly()
    finally:
        pumping.stop()


class _Sender(Protocol):
    """Writes a stream's pieces with the stream registered as the transport's push
    producer, as the web layer does."""

    def __init__(self, stream: ThreadStream) -> None:
        self.stream = stream

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.stream, True)  # type: ignore[union-attr]
        defer.ensureDeferred(self._send())

    async def _send(self) -> None:
        try:
            while (piece := await self.stream.next()) is not None:
                self.transport.write(piece)  # type: ignore[union-attr]
                self.stream.consumed()
        finally:
            await self.stream.close()


@pytest.mark.parametrize("big_data", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_stream_is_a_producer_its_transport_stops(server: Server) -> None:
    """The other half of the cancellation: a stream registered as a transport's push
    producer is stopped when that transport loses its connection (``stopProducing``),
    whether or not anything else notices. Over a real socket, with a client that reads
    nothing, so that the stream is paused when the client hangs up."""
    connector = server.api.connector
    endpoint, kwargs = connector.match(("logs", str(server.data.logid), "raw"))
    spec = connector.parse_spec(endpoint, {})
    raw = await within(defer.ensureDeferred(connector.read(
        connector.context(endpoint, kwargs), endpoint, spec, kwargs)), "reading the log")
    assert raw.stream is not None
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: _Sender(raw.stream)))
    client = Client("/", stalled=True)
    try:
        await connect(port.getHost().port, client)
        run = server.watch.only()
        await within(mine(run.paused), "the transport pausing the stream")
        client.hang_up()
        await assert_stopped_early(run)
        await server.answers_promptly()
    finally:
        client.hang_up()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_large_answers_stream(server: Server) -> None:
    """The answers the other tests hang up on really stream: a collection longer than one
    batch and a raw log, read whole, come complete from one stream each."""
    client = await connect(server.port, Client("/api/v2/builds?field=buildid"))
    await within(client.closed, "the collection")
    status, _, body, complete = client.response()
    assert (status, complete) == (200, True)
    assert body.count(b'"buildid"') == server.data.builds > reads.STREAM_BATCH
    assert len(server.watch.runs) == 1 and server.watch.runs[0].exhausted

    client = await connect(server.port, Client(server.data.raw_path))
    await within(client.closed, "the raw log")
    status, _, body, complete = client.response()
    assert (status, complete) == (200, True)
    assert len(body) == server.data.raw_length
    assert hashlib.sha256(body).hexdigest() == server.data.raw_sha256
    assert len(server.watch.runs) == 2 and server.watch.runs[1].exhausted


# -- a client that goes away is no failure --------------------------------------------------

@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """The events logged during the test."""
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def failures(events: list[dict[str, Any]]) -> list[str]:
    """The events that report a failure: a traceback, an error, a critical event."""
    from twisted.logger import LogLevel, formatEvent

    return [formatEvent(e) + str(e.get("log_failure") or "") for e in events
            if e.get("log_failure") is not None
            or e.get("log_level") in (LogLevel.error, LogLevel.critical)]


def lost_lines(events: list[dict[str, Any]]) -> list[str]:
    from twisted.logger import formatEvent

    return [line for line in map(formatEvent, events) if "connection lost" in line]


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest_twisted.ensureDeferred
async def test_hang_up_before_the_answer_starts(server: Server, logged: list[dict[str, Any]],
                                               what: str, gzip: bool) -> None:
    """The client goes away while the database thread is still reading the start of the
    answer: the read stops early and lets go of its connection, and nothing is logged as
    a failure (a client going away is normal)."""
    gate = server.watch.gate = threading.Event()
    client = await connect(server.port, Client(path_of(server, what), gzip=gzip))
    try:
        run = await within(server.watch.started(), "the answer starting to be read")
        client.hang_up()
        await within(client.closed, "the connection closing")
        # (the server hears of it on the next turn of the reactor)
        await task.deferLater(reactor, 0.1, lambda: None)
    finally:
        gate.set()
        client.hang_up()
    await assert_stopped_early(run)
    await server.answers_promptly()
    assert failures(logged) == []
    assert len(lost_lines(logged)) <= 1


@pytest.mark.parametrize("how", ["reset", "close"])
@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest_twisted.ensureDeferred
async def test_hang_up_mid_body(server: Server, logged: list[dict[str, Any]], what: str,
                                gzip: bool, how: str) -> None:
    """The client goes away (resetting the connection, or closing it) once the answer
    has begun to arrive, compressed or not: the read stops early, the connection is
    free, and the server logs at most one info line about it, no failure."""
    client = await connect(server.port, Client(path_of(server, what), gzip=gzip,
                                               stalled=True, read_first=A_LITTLE))
    try:
        run = await within(server.watch.started(), "the answer starting to stream")
        await within(client.has_stalled, "the first bytes of the answer")
        assert not run.exhausted
        client.hang_up() if how == "reset" else client.close()
        await within(client.closed, "the connection closing")
        await assert_stopped_early(run)
    finally:
        client.hang_up()
    await server.answers_promptly()
    assert failures(logged) == []
    lines = lost_lines(logged)
    assert len(lines) == 1 and f"the answer to {path_of(server, what)}" in lines[0], lines


@pytest.mark.parametrize("mode", ["embedded", "standalone"])
@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest.mark.parametrize("big_data", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_hang_up_while_the_server_stops(big_data: BigData, logged: list[dict[str, Any]],
                                             what: str, mode: str) -> None:
    """A stop waits for an answer whose read is still starting, and its client goes away:
    the stop goes on at once (the database stops, cancelling the read the answer waits
    for), and the answer ends quietly. The answer hears of the lost connection after the
    stop does, and must not act on the request as if it were still connected (which
    logged ``'NoneType' object has no attribute 'registerProducer'``)."""
    from buildbot_rest.config import Config
    from buildbot_rest.service import RestService

    standalone = mode == "standalone"
    rest = RestService(Config(db_url=big_data.url, pool_size=1,
                              port="tcp:0:interface=127.0.0.1" if standalone else None),
                       shutdown_timeout=2 * PROMPT)
    rest.prepare()
    assert rest.db is not None and rest.web is not None
    watch = Watch(rest.db)
    gate = watch.gate = threading.Event()
    rest.startService()
    listening = None
    if standalone:
        await defer.succeed(None)
        port = rest.web.port.getHost().port  # type: ignore[union-attr]
    else:
        listening = await endpoints.TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1").listen(Site(rest.root_resource()))
        port = listening.getHost().port
    client = await connect(port, Client(big_data.raw_path if what == "raw log"
                                        else "/api/v2/builds"))
    try:
        run = await within(watch.started(), "the answer starting to be read")
        stopped = rest.stopService()
        assert not stopped.called
        client.hang_up()
        await within(mine(stopped), "the stop, once the client has gone")
    finally:
        gate.set()
        client.hang_up()
        watch.cancel_all()
        if listening is not None:
            await listening.stopListening()
    assert run.closed and not run.exhausted
    assert failures(logged) == []
    assert rest.stopped_cleanly
