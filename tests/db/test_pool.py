"""Writes through the pool: retried while nothing is committed, never once the commit
itself has failed (the write may have landed)."""

from __future__ import annotations

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db.database import Database
from buildbot_rest.db.pool import DatabaseUnavailable

metadata = sa.MetaData()
scratch = sa.Table("bbrest_pool_scratch", metadata, sa.Column("x", sa.Integer))


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_a_failed_commit_is_not_run_again(pg_database: str) -> None:
    db = Database(pg_database, retry_seconds=5)
    db.start()
    calls = []

    def write_then_lose_the_connection(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(scratch.insert().values(x=1))
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        # Another session ends this one after the write, before its COMMIT.
        with db.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)")

    try:
        await db.pool.do_in_transaction(metadata.create_all)
        with pytest.raises(DatabaseUnavailable, match="may or may not have been saved"):
            await db.pool.do_in_transaction(write_then_lose_the_connection)
        assert calls == [1]
        count = await db.pool.do(lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(scratch)).scalar())
        assert count == 0  # the server rolled it back; we did not write it twice
    finally:
        db.stop()


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_a_write_that_fails_before_its_commit_runs_again(pg_database: str) -> None:
    db = Database(pg_database, retry_seconds=5)
    db.start()
    calls = []

    def lose_the_first_connection(conn: sa.Connection) -> int:
        calls.append(1)
        conn.execute(scratch.insert().values(x=len(calls)))
        if len(calls) == 1:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        return len(calls)

    try:
        await db.pool.do_in_transaction(metadata.create_all)
        assert await db.pool.do_in_transaction(lose_the_first_connection) == 2
        values = await db.pool.do(lambda conn: [r[0] for r in conn.execute(
            sa.select(scratch.c.x))])
        assert values == [2]  # the first attempt left nothing behind
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_a_failing_write_is_rolled_back(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    db.prepare_sync()
    db.start()

    def write_then_fail(conn: sa.Connection) -> None:
        conn.execute(scratch.insert().values(x=1))
        raise ValueError("no")

    try:
        await db.pool.do_in_transaction(metadata.create_all)
        with pytest.raises(ValueError):
            await db.pool.do_in_transaction(write_then_fail)
        assert await db.pool.do(lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(scratch)).scalar()) == 0
    finally:
        db.stop()
