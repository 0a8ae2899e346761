# -*- test-case-name: tests.db.test_pool -*-
"""Run database work off the reactor thread, one connection per call, with retries."""

from __future__ import annotations

import random
import time
from typing import Any, Callable, TypeVar

import sqlalchemy as sa
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

log = Logger()


class DatabaseUnavailable(Exception):
    """The database kept failing with transient errors for longer than the retry budget."""


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
    ``retry_seconds`` have passed; then :class:`DatabaseUnavailable` is raised.
    """

    def __init__(self, engine: sa.Engine, *, size: int, reactor: Any = None,
                 retry_seconds: float = 30.0, name: str = "buildbot_rest-db") -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.engine = engine
        self.size = size
        self.retry_seconds = retry_seconds
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=size, name=name)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._pool.stop()
            self._started = False
        self.engine.dispose()

    def _retrying(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return fn()
            except sa.exc.DBAPIError as e:
                if not is_transient(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(
                        f"database still failing after {self.retry_seconds:g}s: {e.orig}"
                    ) from e
                log.warn("transient database error, retrying in {delay:.2f}s: {err}",
                         delay=delay, err=e.orig)
                time.sleep(delay)
                delay = min(delay * 2, 2.0) * (1 + random.random() / 10)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(conn, *args)`` in this thread, with retries (for tools and tests)."""
        def once() -> T:
            with self.engine.connect() as conn:
                return fn(conn, *args, **kw)
        return self._retrying(once)

    def run_in_transaction_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        def once() -> T:
            with self.engine.begin() as conn:
                return fn(conn, *args, **kw)
        return self._retrying(once)

    def do(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        """Run ``fn(conn, *args, **kw)`` on a pool thread; a read or self-committing work."""
        return threads.deferToThreadPool(self._reactor, self._pool, self.run_sync, fn, *args, **kw)

    def do_in_transaction(self, fn: Callable[..., T], *args: Any,
                          **kw: Any) -> defer.Deferred[T]:
        """Run ``fn(conn, *args, **kw)`` inside one transaction, committed when it returns."""
        return threads.deferToThreadPool(
            self._reactor, self._pool, self.run_in_transaction_sync, fn, *args, **kw)

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        """Run a plain function (no connection) on a pool thread."""
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args, **kw)
