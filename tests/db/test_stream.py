"""ThreadStream: pieces of a generator run in a database thread, with flow control, an
end on cancel, and failures raised to the consumer; and the pool's streams."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor, threads

from buildbot_rest.db import Database, DatabaseUnavailable
from buildbot_rest.db.stream import ThreadStream


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
async def test_pool_stream_reads_on_a_connection_of_its_own(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite'}", pool_size=1)
    db.prepare_sync(create=True)
    db.start()
    try:
        def generate(conn):
            for i in range(3):
                yield conn.execute(sa.select(sa.literal(i))).scalar()

        stream = db.pool.stream(generate)
        got = []
        while (piece := await stream.next()) is not None:
            got.append(piece)
            stream.consumed()
        await stream.close()
        assert got == [0, 1, 2]
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_pool_stream_that_cannot_connect_ends_with_the_error(tmp_path):
    # A database file in a directory that is gone: connecting fails (not transient).
    directory = tmp_path / "gone"
    directory.mkdir()
    db = Database(f"sqlite:///{directory / 'x.sqlite'}", pool_size=1, retry_seconds=0.1)
    directory.rmdir()
    db.start()
    try:
        def generate(conn):
            yield conn.execute(sa.select(sa.literal(1))).scalar()

        stream = db.pool.stream(generate)
        with pytest.raises(DatabaseUnavailable, match="unable to open database file"):
            await stream.next()
        await stream.close()
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_cancelled_tells_a_cut_stream_from_one_that_ended():
    def generator(conn):
        yield from ([i] for i in range(3))

    whole = ThreadStream(reactor)
    running = threads.deferToThread(whole.run, None, generator)
    while await whole.next() is not None:
        whole.consumed()
    whole.running = running
    await whole.close()  # closing after the end is not a cut
    assert not whole.cancelled

    cut = ThreadStream(reactor, window=1)
    cut.running = threads.deferToThread(cut.run, None, generator)
    assert await cut.next() == [0]
    await cut.close()
    assert cut.cancelled
    assert await cut.next() is None
