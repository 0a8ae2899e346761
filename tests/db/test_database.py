"""Opening a database: what its schema status says, that we never alter a database we did not
create, the errors a user sees, SQLite's settings, and the thread pool (off the reactor
thread, transactions, retries of transient errors)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.logger import LogEvent, globalLogPublisher

from buildbot_rest.db import schema
from buildbot_rest.db.database import Database, DatabaseError
from buildbot_rest.db.pool import DatabaseUnavailable
from tests.schemadiff import describe


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A :class:`Database` over an empty database of this test's own, on each backend
    (an SQLite file of no bytes is an empty database)."""
    db = Database(db_url)
    if db.sqlite_file is not None:
        open(db.sqlite_file, "wb").close()
    yield db
    db.stop()


@pytest.fixture
def running(database: Database) -> Database:
    """``database`` with its schema created and its thread pool started."""
    database.prepare_sync()
    database.start()
    return database


def alter(db: Database, fn: Callable[[sa.Connection], object]) -> None:
    """Change the database behind our back, as another program would."""
    db.pool.run_in_transaction_sync(fn)


def schema_of(db: Database) -> dict:
    """Everything :func:`describe` sees of the database, on one connection."""
    with db.engine.connect() as conn:
        return describe(conn)  # sa.inspect() takes a connection as well as an engine


def set_revision(revision: str) -> Callable[[sa.Connection], object]:
    return lambda conn: conn.execute(
        schema.alembic_version.update().values(version_num=revision))


def make_foreign(conn: sa.Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE inventory (id INTEGER PRIMARY KEY, item TEXT)")


def make_pre_3_0(conn: sa.Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE migrate_version (repository_id VARCHAR(250), "
                         "repository_path TEXT, version INTEGER)")
    conn.exec_driver_sql("INSERT INTO migrate_version VALUES ('Buildbot', 'x', 58)")


def drop_object_state(conn: sa.Connection) -> None:
    schema.metadata.tables["object_state"].drop(conn)


# -- schema status ------------------------------------------------------------------------

def test_empty(database: Database) -> None:
    path = database.sqlite_file
    if path is not None:
        # a missing file is not an empty database: nothing creates it but prepare_sync
        os.remove(path)
        with pytest.raises(DatabaseError, match="no such database file; create it with "
                           "`buildbot-rest create-db"):
            database.status_sync()
        with pytest.raises(DatabaseError, match="no such database file"):
            database.prepare_sync(create=False)
        assert not os.path.exists(path)
        open(path, "wb").close()
    status = database.status_sync()
    assert (status.state, status.revision, status.usable) == ("empty", None, False)


def test_created_is_current(database: Database) -> None:
    status = database.prepare_sync()
    assert (status.state, status.revision, status.usable) == ("current", "067", True)
    assert database.status_sync() == status
    revisions = database.pool.run_sync(
        lambda conn: list(conn.execute(sa.select(schema.alembic_version.c.version_num))
                          .scalars()))
    assert revisions == ["067"]


@pytest.mark.parametrize(
    ("setup", "state", "revision", "hint"),
    [
        (set_revision("066"), "old", "066", "buildbot upgrade-master"),
        (set_revision("999"), "unknown", "999", "does not know"),
        (drop_object_state, "incomplete", "067", "object_state"),
    ],
    ids=["old", "unknown", "incomplete"],
)
def test_status_of_created_then_changed(database: Database, setup: Callable, state: str,
                                        revision: str, hint: str) -> None:
    database.prepare_sync()
    alter(database, setup)
    status = database.status_sync()
    assert (status.state, status.revision, status.usable) == (state, revision, False)
    assert hint in status.message


@pytest.mark.parametrize(
    ("setup", "state", "hint"),
    [
        (make_foreign, "foreign", "no alembic_version"),
        (make_pre_3_0, "old", "buildbot upgrade-master"),
    ],
    ids=["foreign", "pre-3.0"],
)
def test_status_of_tables_without_alembic_version(database: Database, setup: Callable,
                                                  state: str, hint: str) -> None:
    alter(database, setup)
    status = database.status_sync()
    assert (status.state, status.revision, status.usable) == (state, None, False)
    assert hint in status.message


@pytest.mark.postgresql
def test_creating_on_postgresql_first_keeps_sqlite_foreign_keys(
        pg_database: str, sqlite_url: str, raw_engine: Callable[..., sa.Engine]) -> None:
    # SQLAlchemy marks a constraint it adds with ALTER TABLE (PostgreSQL) as not to be
    # rendered inline afterwards; SQLite, which has no ALTER, must still get it inline.
    for url in (pg_database, sqlite_url):
        db = Database(url)
        try:
            db.prepare_sync()
        finally:
            db.stop()
    inspector = sa.inspect(raw_engine(sqlite_url))
    missing = [
        f"{table.name}({', '.join(fk.column_keys)})"
        for table in schema.metadata.tables.values()
        for fk in table.foreign_key_constraints
        if fk.column_keys not in [c["constrained_columns"]
                                  for c in inspector.get_foreign_keys(table.name)]
    ]
    assert not missing, "foreign keys missing on SQLite: " + ", ".join(missing)


# -- prepare_sync never alters a database it did not create --------------------------------

@pytest.mark.parametrize(
    ("setup", "hint"),
    [
        (set_revision("066"), "buildbot upgrade-master"),
        (set_revision("999"), "use a buildbot_rest release that supports it"),
        (drop_object_state, "lacks tables: object_state"),
    ],
    ids=["old", "unknown", "incomplete"],
)
def test_prepare_refuses_changed_database(database: Database, setup: Callable,
                                          hint: str) -> None:
    database.prepare_sync()
    alter(database, setup)
    before = schema_of(database)
    with pytest.raises(DatabaseError) as info:
        database.prepare_sync()
    assert_one_line(info.value, hint)
    assert schema_of(database) == before
    assert database.status_sync().state != "current"


@pytest.mark.parametrize("setup", [make_foreign, make_pre_3_0], ids=["foreign", "pre-3.0"])
def test_prepare_refuses_tables_without_alembic_version(database: Database,
                                                        setup: Callable) -> None:
    alter(database, setup)
    before = schema_of(database)
    with pytest.raises(DatabaseError) as info:
        database.prepare_sync()
    assert_one_line(info.value, "alembic_version" if setup is make_foreign
                    else "buildbot upgrade-master")
    assert schema_of(database) == before


def test_prepare_without_create_leaves_empty_database(database: Database) -> None:
    with pytest.raises(DatabaseError) as info:
        database.prepare_sync(create=False)
    assert_one_line(info.value, "empty")
    assert schema_of(database) == {}


def test_prepare_current_database_changes_nothing(database: Database) -> None:
    database.prepare_sync()
    before = schema_of(database)
    assert database.prepare_sync().state == "current"
    assert database.prepare_sync(create=False).state == "current"
    assert schema_of(database) == before


def assert_one_line(error: DatabaseError, hint: str) -> None:
    """A message for a person: one line that says what to do, and no chained traceback."""
    text = str(error)
    assert "\n" not in text, text
    assert hint in text, text
    assert "Traceback" not in text


# -- retries, counted (never timed: a shared machine makes elapsed seconds meaningless) -----

@pytest.fixture
def retries() -> Iterator[list[LogEvent]]:
    """The events the pool logs as it retries ("transient database error, retrying in
    {delay}s: {err}"), one per retry, from whichever thread emits them."""
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if str(event.get("log_format", "")).startswith("transient database error, retrying"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def waited(events: list[LogEvent]) -> float:
    """The seconds the pool said it would sleep between its attempts, in all."""
    return sum(float(e["delay"]) for e in events)


# -- errors a user sees -------------------------------------------------------------------

@pytest.mark.postgresql
def test_unreachable_postgresql(retries: list[LogEvent]) -> None:
    db = Database("postgresql://bb:s3cret@127.0.0.1:1/bb", retry_seconds=2)
    with pytest.raises(DatabaseError) as info:
        db.prepare_sync()
    # it gave up within its retry budget: the waits between its attempts fit in 2 s
    assert waited(retries) <= 2
    assert all("127.0.0.1" in str(e["err"]) for e in retries)
    assert_one_line(info.value, "cannot connect to")
    assert "127.0.0.1" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert info.value.__suppress_context__ and info.value.__cause__ is None


@pytest.mark.postgresql
def test_missing_postgresql_database(pg_url: str) -> None:
    url = sa.engine.make_url(pg_url).set(database="bbrest_no_such_database")
    db = Database(url.render_as_string(hide_password=False))
    with pytest.raises(DatabaseError) as info:
        db.prepare_sync()
    assert_one_line(info.value, "bbrest_no_such_database")


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("not a url", "invalid database URL"),
        ("nosuchdialect://host/db", "cannot use database URL"),
        ("sqlite:////nonexistent-dir/sub/state.sqlite", "/nonexistent-dir/sub does not exist"),
    ],
    ids=["garbage", "unknown-dialect", "sqlite-missing-directory"],
)
def test_bad_url(url: str, hint: str) -> None:
    with pytest.raises(DatabaseError) as info:
        Database(url)
    assert_one_line(info.value, hint)
    assert info.value.__cause__ is None


# -- SQLite settings ----------------------------------------------------------------------

def test_sqlite_settings(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        db.prepare_sync()

        def pragmas(conn: sa.Connection) -> tuple:
            return tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                         for name in ("journal_mode", "busy_timeout", "foreign_keys"))

        assert db.pool.run_sync(pragmas) == ("wal", 20000, 1)
    finally:
        db.stop()


# -- the thread pool ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_do_runs_off_the_reactor_thread(running: Database) -> None:
    reactor_thread = threading.get_ident()

    def work(conn: sa.Connection) -> tuple[int, int]:
        return threading.get_ident(), conn.exec_driver_sql("SELECT 1").scalar()

    for call in (running.pool.do, running.pool.do_in_transaction):
        thread, one = await call(work)
        assert one == 1
        assert thread != reactor_thread


def scratch_table() -> sa.Table:
    return sa.Table("scratch", sa.MetaData(), sa.Column("x", sa.Integer))


@pytest_twisted.ensureDeferred
async def test_do_in_transaction_rolls_back_on_error(running: Database) -> None:
    table = scratch_table()
    await running.pool.do_in_transaction(table.create)

    class Oops(Exception):
        pass

    def insert_then_fail(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(x=1))
        raise Oops()

    with pytest.raises(Oops):
        await running.pool.do_in_transaction(insert_then_fail)
    await running.pool.do_in_transaction(lambda conn: conn.execute(table.insert().values(x=2)))

    def values(conn: sa.Connection) -> list[int]:
        return list(conn.execute(sa.select(table.c.x)).scalars())

    assert await running.pool.do(values) == [2]


@pytest_twisted.ensureDeferred
async def test_do_in_transaction_commits_several_tables(running: Database) -> None:
    table = scratch_table()
    await running.pool.do_in_transaction(table.create)

    def two_writes(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(x=1))
        conn.execute(schema.metadata.tables["masters"].insert().values(
            name="m", name_hash="h", active=1, last_active=0))

    await running.pool.do_in_transaction(two_writes)

    def counts(conn: sa.Connection) -> tuple:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (table, schema.metadata.tables["masters"]))

    assert await running.pool.do(counts) == (1, 1)


class LockHolder:
    """Holds SQLite's write lock from another connection, as another process would, from
    entering the ``with`` block until :meth:`free` (or the block's end)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.locked = threading.Event()
        self._release = threading.Event()
        self._released = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            self._release.wait(60)
            conn.execute("COMMIT")
        finally:
            conn.close()
            self._released.set()

    def free(self) -> None:
        """Let go of the lock, and return once it is free."""
        self._release.set()
        assert self._released.wait(10)

    @property
    def held(self) -> bool:
        return self.locked.is_set() and not self._released.is_set()

    def __enter__(self) -> Self:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.thread.join()


def insert_scratch(conn: sa.Connection) -> None:
    conn.execute(scratch_table().insert().values(x=1))


def impatient_writes(db: Database, on_begin: Callable[[], None]) -> Callable[[], None]:
    """Make ``db``'s connections meet a held lock with "database is locked" at once (a
    short busy timeout), and call ``on_begin`` as each attempt of a write starts, before
    its ``BEGIN IMMEDIATE`` meets the lock. Answers the function that undoes both."""
    def connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=20")

    def engine_connect(_conn: sa.Connection) -> None:
        on_begin()  # (each attempt takes a connection, then begins)

    sa.event.listen(db.engine, "connect", connect)
    sa.event.listen(db.engine, "engine_connect", engine_connect)
    db.engine.dispose()  # pooled connections have the long timeout

    def undo() -> None:
        sa.event.remove(db.engine, "connect", connect)
        sa.event.remove(db.engine, "engine_connect", engine_connect)
    return undo


@pytest.fixture
def sqlite_db(sqlite_url: str, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A started SQLite database with a scratch table, retrying for 30 s (or the number
    the test is parametrized with)."""
    db = Database(sqlite_url, retry_seconds=getattr(request, "param", 30))
    db.prepare_sync()
    db.pool.run_in_transaction_sync(scratch_table().create)
    db.start()
    yield db
    db.stop()


def rows_of_scratch(db: Database) -> Any:
    return db.pool.do(lambda conn: conn.execute(
        sa.select(sa.func.count()).select_from(scratch_table())).scalar())


@pytest_twisted.ensureDeferred
async def test_locked_sqlite_is_retried(sqlite_db: Database,
                                        retries: list[LogEvent]) -> None:
    path = sqlite_db.engine.url.database
    assert path
    attempts: list[bool] = []

    def attempt() -> None:
        # (a write takes the lock at BEGIN: that is where it meets it)
        attempts.append(lock.held)
        if len(attempts) == 3:
            lock.free()  # the other process lets go while we retry

    with LockHolder(path) as lock:
        undo = impatient_writes(sqlite_db, attempt)
        try:
            await sqlite_db.pool.do_in_transaction(insert_scratch)
        finally:
            undo()

    # it met the lock twice, retrying after each, and the third attempt went through
    assert attempts == [True, True, True]
    assert len(retries) == 2
    assert all("database is locked" in str(e["err"]) for e in retries)
    assert [e["delay"] for e in retries] == sorted(e["delay"] for e in retries)
    assert await rows_of_scratch(sqlite_db) == 1


@pytest.mark.parametrize("sqlite_db", [1.0], indirect=True)
@pytest_twisted.ensureDeferred
async def test_sqlite_locked_too_long_is_unavailable(sqlite_db: Database,
                                                     retries: list[LogEvent]) -> None:
    path = sqlite_db.engine.url.database
    assert path
    attempts: list[bool] = []

    with LockHolder(path) as lock:  # held until the pool gives up
        undo = impatient_writes(sqlite_db, lambda: attempts.append(lock.held))
        try:
            with pytest.raises(DatabaseUnavailable) as info:
                await sqlite_db.pool.do_in_transaction(insert_scratch)
        finally:
            undo()
        assert lock.held
    assert "database is locked" in str(info.value)
    # every attempt met the lock; it retried after each but the last, and gave up within
    # its retry budget (1 s): the waits it announced between attempts fit in it
    assert len(attempts) >= 2 and all(attempts)
    assert len(retries) == len(attempts) - 1
    assert waited(retries) <= 1.0
    assert await rows_of_scratch(sqlite_db) == 0


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_lost_postgresql_connection_is_retried(pg_database: str) -> None:
    db = Database(pg_database, retry_seconds=5)
    db.start()
    attempts = []

    def lose_first_connection(conn: sa.Connection) -> int:
        attempts.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        if len(attempts) == 1:
            # As a server restart or an idle-connection killer would.
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        return conn.exec_driver_sql("SELECT 1").scalar()

    try:
        assert await db.pool.do(lose_first_connection) == 1
    finally:
        db.stop()
    assert len(attempts) == 2
    assert attempts[0] != attempts[1]
