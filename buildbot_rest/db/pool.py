# -*- test-case-name: tests.db.test_database -*-
"""Run database work off the reactor thread, one connection per call, with retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from buildbot_rest.db.stream import ThreadStream

T = TypeVar("T")

log = Logger()


#: why work handed to a stopped pool fails
CLOSED = "the database is closed: its service has stopped"


class DatabaseUnavailable(Exception):
    """The database cannot answer now: it kept failing with transient errors for longer
    than the retry budget, it cannot be opened or read (a server that is down, a file
    that is gone or damaged, a schema that is missing), or a write's commit failed so
    that its outcome is unknown. Clients may try again later (HTTP 503)."""


class _CommitFailed(Exception):
    """Raised inside the retry loop when COMMIT itself failed: never retried."""

    def __init__(self, error: sa.exc.DBAPIError) -> None:
        super().__init__(str(error.orig))
        self.error = error


def is_unavailable(error: BaseException) -> bool:
    """Whether an error says that the database cannot be used right now, rather than
    that a statement is wrong: a failed connection or operation (``OperationalError``,
    ``InterfaceError``), a file that is not a database or is damaged (the driver's bare
    ``DatabaseError``), or the pool's own timeout and disconnection errors. Errors of a
    statement (``ProgrammingError``, ``IntegrityError``, ``DataError``...) are not."""
    if isinstance(error, (sa.exc.TimeoutError, sa.exc.DisconnectionError)):
        return True
    return (isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError))
            or type(error) is sa.exc.DatabaseError)


def is_transient(error: sa.exc.DBAPIError) -> bool:
    """Whether an error is worth retrying: a locked SQLite file or a lost connection."""
    if error.connection_invalidated:
        return True
    text = str(error.orig).lower() if error.orig is not None else str(error).lower()
    return any(
        marker in text
        for marker in (
            "database is locked",
            "database table is locked",
            "lost connection",
            "server closed the connection",
            "connection reset",
            "could not connect",
            "deadlock",
            "terminating connection",
        )
    )


class DBThreadPool:
    """A Twisted thread pool that runs functions against a SQLAlchemy engine.

    Each call gets its own connection from the engine's pool. Transient errors (a locked
    SQLite database, a dropped connection) are retried with exponential backoff until
    ``retry_seconds`` have passed; then :class:`DatabaseUnavailable` is raised. A write
    (:meth:`do_in_transaction`) is retried only while nothing has been committed: a
    failure of the COMMIT itself is never retried, since the write may have landed.
    """

    def __init__(self, engine: sa.Engine, *, size: int, reactor: Any = None,
                 retry_seconds: float = 5.0, name: str = "buildbot_rest-db") -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.engine = engine
        self.size = size
        self.retry_seconds = retry_seconds
        self._reactor: IReactorThreads = reactor
        self._name = name
        self._pool = ThreadPool(minthreads=1, maxthreads=size, name=name)
        self._started = False
        #: set once stopped: work handed to a stopped pool would wait forever
        self._stopped = False
        #: streams whose thread may still be running, cancelled by :meth:`stop`
        self._streams: set[ThreadStream] = set()
        #: False while the database is unavailable: then work is tried once, not
        #: retried, so that every caller is answered at once, and the outage is logged
        #: once when it starts and once when it ends
        self.healthy = True

    def start(self) -> None:
        """Start the threads (again, after a stop)."""
        if not self._started:
            if self._pool.joined:
                self._pool = ThreadPool(minthreads=1, maxthreads=self.size, name=self._name)
            self._pool.start()
            self._started = True
            self._stopped = False

    def stop(self) -> None:
        """Cancel the streams still running, wait for the threads to finish their work,
        and close every connection. Call it in the reactor thread. Work handed to the
        pool from now on fails with :class:`DatabaseUnavailable` until :meth:`start`."""
        for stream in list(self._streams):
            stream.cancel()  # their threads would otherwise wait for the reactor
        self._streams.clear()
        if self._started:
            self._pool.stop()
            self._started = False
        self._stopped = True
        self.engine.dispose()

    def _in_thread(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        if self._stopped:
            return defer.fail(DatabaseUnavailable(CLOSED))
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args, **kw)

    def _retrying(self, fn: Callable[[], T], *, proves: bool = True) -> T:
        # ``proves``: whether fn's success shows that the database answers (a
        # connection from the pool alone does not).
        # While the database is down, one try: callers are answered at once.
        deadline = time.monotonic() + (self.retry_seconds if self.healthy else 0.0)
        delay = 0.05
        while True:
            try:
                result = fn()
            except _CommitFailed as e:
                raise DatabaseUnavailable(
                    f"the database failed while committing a write, which may or may not "
                    f"have been saved: {e.error.orig}") from e.error
            except (sa.exc.DBAPIError, sa.exc.TimeoutError, sa.exc.DisconnectionError) as e:
                transient = isinstance(e, sa.exc.DBAPIError) and is_transient(e)
                if not transient and not is_unavailable(e):
                    raise
                if not transient or time.monotonic() + delay > deadline:
                    raise self.unavailable(e) from e
                log.warn("transient database error, retrying in {delay:.2f}s: {err}",  # noqa: G010
                         delay=delay, err=first_line(e))
                time.sleep(delay)
                delay = min(delay * 2, 2.0) * (1 + random.random() / 10)
            else:
                if proves:
                    self.available()
                return result

    def unavailable(self, error: BaseException) -> DatabaseUnavailable:
        """The :class:`DatabaseUnavailable` for an error that :func:`is_unavailable`
        accepts; the start of an outage is logged (once, with its cause)."""
        if self.healthy:
            self.healthy = False
            log.error("the database is unavailable: {cause}; answering 503 until it "
                      "answers again", cause=first_line(error))
            # Pooled connections may hold state of what failed (a file since replaced,
            # a server since restarted): the next work opens new ones.
            self.engine.dispose()
        return DatabaseUnavailable(f"the database is unavailable: {first_line(error)}")

    def available(self) -> None:
        """The database answered: the end of an outage is logged (once)."""
        if not self.healthy:
            self.healthy = True
            log.info("the database answers again")

    def run_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(conn, *args)`` in this thread, with retries (for reads, tools and
        tests). What ``fn`` does not commit itself is rolled back."""
        def once() -> T:
            with self.engine.connect() as conn:
                return fn(conn, *args, **kw)
        return self._retrying(once)

    def run_in_transaction_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction in this thread and commit it.

        A transient error before the commit rolls back and runs ``fn`` again on a new
        connection (so ``fn`` must have no effect outside the transaction); an error of
        the COMMIT raises :class:`DatabaseUnavailable` at once, never re-running a write
        that may have been committed."""
        def once() -> T:
            with self.engine.connect() as conn:
                # (SQLite takes its write lock at BEGIN for this: see database.py)
                conn.execution_options(write=True)
                transaction = conn.begin()
                try:
                    result = fn(conn, *args, **kw)
                except BaseException:
                    if transaction.is_active:
                        transaction.rollback()
                    raise
                try:
                    transaction.commit()
                except sa.exc.DBAPIError as e:
                    raise _CommitFailed(e) from e
                return result
        return self._retrying(once)

    def do(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        """Run ``fn(conn, *args, **kw)`` on a pool thread: a read."""
        return self._in_thread(self.run_sync, fn, *args, **kw)

    def do_in_transaction(self, fn: Callable[..., T], *args: Any,
                          **kw: Any) -> defer.Deferred[T]:
        """Run ``fn(conn, *args, **kw)`` inside one transaction, committed when it returns
        (see :meth:`run_in_transaction_sync` for what is retried)."""
        return self._in_thread(self.run_in_transaction_sync, fn, *args, **kw)

    def stream(self, generate: Callable[[sa.Connection], Iterator[Any]],
               window: int = 4) -> ThreadStream:
        """Start ``generate(conn)`` on a pool thread and return the stream of its pieces
        (see :class:`ThreadStream`). The connection is held until the generator ends or
        the stream is cancelled; a failure to connect ends the stream with that error.
        Raises :class:`DatabaseUnavailable` once the pool has stopped."""
        if self._stopped:
            raise DatabaseUnavailable(CLOSED)
        reactor: IReactorFromThreads = self._reactor
        stream = ThreadStream(reactor, window)
        stream.running = self._in_thread(self._stream_sync, stream, generate)
        self._streams.add(stream)

        def forget(result: object) -> object:
            self._streams.discard(stream)
            return result
        stream.running.addBoth(forget)
        return stream

    def _stream_sync(self, stream: ThreadStream,
                     generate: Callable[[sa.Connection], Iterator[Any]]) -> None:
        # Connecting is retried; the generator is not (its pieces may be out already).
        try:
            conn = self._retrying(self.engine.connect, proves=False)
        except Exception:  # noqa: BLE001 - handed to the stream's consumer
            stream.end_with(Failure())
            return
        with conn:
            stream.run(conn, lambda c: self._guarded(c, generate))

    def _guarded(self, conn: sa.Connection,
                 generate: Callable[[sa.Connection], Iterator[Any]]) -> Iterator[Any]:
        # A database that fails in the middle of a stream is unavailable, like one that
        # fails before it.
        try:
            yield from generate(conn)
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, sa.exc.DisconnectionError) as e:
            if not is_unavailable(e):
                raise
            raise self.unavailable(e) from e
        self.available()


def first_line(error: BaseException) -> str:
    """An error's first line (of the driver's error, for SQLAlchemy's), without
    SQLAlchemy's background link; the error's type when it has no text."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
