"""Streaming: CollectionWriter's bytes equal the whole document, and a client that goes
away stops the database generator."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from buildbot_rest.www.encoding import CollectionWriter, dumps
from buildbot_rest.www.stream import ThreadStream

ITEMS = [{"buildid": i, "name": f"b\u00e9{i}", "tags": ["x", "y"], "props": {"a": [1, None]},
          "empty": {}, "none": None} for i in range(57)]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("plural", ["builds", "steps"])  # before and after "meta"
@pytest.mark.parametrize("n", [0, 1, 57])
def test_writer_equals_whole_document(compact, plural, n):
    items = ITEMS[:n]
    w = CollectionWriter(plural, compact)
    total_first = plural > "meta"
    out = w.opening(n if total_first else None)
    for i in range(0, n, 10):
        out += w.items(items[i:i + 10])
    out += w.items([])
    out += w.closing(None if total_first else n)
    assert out == dumps({plural: items, "meta": {"total": n}}, compact)


@pytest_twisted.ensureDeferred
async def test_cancel_stops_the_generator_and_frees_the_thread():
    produced = []
    closed = threading.Event()

    def generator(conn):
        try:
            for i in range(10_000):
                produced.append(i)
                yield [i]
        finally:
            closed.set()

    stream = ThreadStream(reactor, window=2)
    running = threads.deferToThread(stream.run, None, generator)
    assert await stream.next() == [0]
    stream.consumed()
    waiting = stream.next()
    await waiting
    stream.cancel()  # the client went away
    assert await stream.next() is None
    await running  # the thread returns
    assert closed.is_set()
    assert len(produced) < 10


@pytest_twisted.ensureDeferred
async def test_cancel_while_waiting_ends_the_wait():
    release = threading.Event()

    def generator(conn):
        release.wait(5)
        yield [1]

    stream = ThreadStream(reactor)
    running = threads.deferToThread(stream.run, None, generator)
    waiting = stream.next()
    stream.cancel()
    assert await waiting is None
    release.set()
    await running


@pytest_twisted.ensureDeferred
async def test_generator_failure_is_raised():
    def generator(conn):
        yield [1]
        raise RuntimeError("boom")

    stream = ThreadStream(reactor)
    running = threads.deferToThread(stream.run, None, generator)
    assert await stream.next() == [1]
    stream.consumed()
    with pytest.raises(RuntimeError):
        await stream.next()
    await running


@pytest_twisted.ensureDeferred
async def test_client_disconnect_mid_stream_frees_the_db_thread(api):
    """A client that hangs up during a large streamed response: the server stops."""
    from twisted.internet.protocol import ClientFactory, Protocol
    from urllib.parse import urlparse

    got = defer.Deferred()

    class Hangup(Protocol):
        def connectionMade(self):
            self.transport.write(b"GET /api/v2/builds HTTP/1.1\r\nHost: x\r\n"
                                 b"Accept: application/json\r\n\r\n")

        def dataReceived(self, data):
            self.transport.abortConnection()
            if not got.called:
                got.callback(None)

    url = urlparse(api.root)
    factory = ClientFactory.forProtocol(Hangup)
    reactor.connectTCP(url.hostname, url.port, factory)
    await got
    # the pool is free again: a query still runs promptly
    r = await api.get("builds?limit=1")
    assert r.code == 200
