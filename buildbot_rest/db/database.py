# -*- test-case-name: tests.db.test_database -*-
"""Opening a database: engine, thread pool, schema revision check and creation."""

from __future__ import annotations

import codecs
import functools
import os
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from buildbot_rest.db import schema
from buildbot_rest.db.pool import DatabaseUnavailable, DBThreadPool, first_line

#: Revisions that upstream's alembic history knows before the head.
KNOWN_OLD_REVISIONS = ("059", "060", "061", "062", "063", "064", "065", "066")

UPGRADE_HINT = "upgrade it with `buildbot upgrade-master` from Buildbot 4.3.0"


class DatabaseError(Exception):
    """A database that cannot be used as it is; the message says what to do."""


@dataclass(frozen=True)
class SchemaStatus:
    """What :func:`inspect_schema` found in a database."""

    revision: str | None
    state: str  # "current", "empty", "old", "unknown", "foreign", "incomplete"
    message: str

    @property
    def usable(self) -> bool:
        return self.state == "current"


def make_engine(url: str, *, pool_size: int = 4) -> sa.Engine:
    """An engine for ``url`` set up for use from a thread pool."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as e:
        raise DatabaseError(f"invalid database URL {url!r}: {e}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=_default_postgresql_driver())
    kwargs: dict[str, Any] = {}
    sqlite_file = None
    if backend == "sqlite":
        database = parsed.database or ""
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 20}
        if database in ("", ":memory:"):
            kwargs.update(poolclass=StaticPool)
        else:
            sqlite_file = os.path.abspath(database)
            directory = os.path.dirname(sqlite_file)
            if not os.path.isdir(directory):
                raise DatabaseError(f"cannot open {url}: directory {directory} does not exist")
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            # Never create the file by connecting (mode=rw): a file deleted while
            # serving must not come back empty. Database.prepare_sync(create=True) is
            # the one place that creates it.
            uri = f"file:{urllib.parse.quote(sqlite_file)}?mode=rw"
            kwargs["creator"] = functools.partial(sqlite3.connect, uri, uri=True,
                                                  **connect_args)
        kwargs["connect_args"] = connect_args
    elif backend == "mysql":
        query = dict(parsed.query)
        if query.get("charset", "utf8") not in ("utf8", "utf8mb3", "utf8mb4"):
            raise DatabaseError("MySQL databases must use charset=utf8")
        query.setdefault("charset", "utf8")
        parsed = parsed.set(query=query)
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
                      pool_pre_ping=True)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
        raise DatabaseError(f"cannot use database URL {url!r}: {e}") from None
    if backend == "sqlite":
        _configure_sqlite(engine, sqlite_file)
    elif engine.dialect.driver == "psycopg2":
        _configure_psycopg2(engine)
    return engine


#: How stored text that is not UTF-8 reads: each bad byte as U+FFFD, never an error
#: (a database written by other programs, or by an older Buildbot, can hold such bytes;
#: one bad value must not fail every answer that loads it).
TOLERANT_TEXT = functools.partial(str, encoding="utf-8", errors="replace")

#: a Python codec: UTF-8 whose decoding replaces bad bytes (for psycopg2, which takes a
#: codec by name)
_TOLERANT_CODEC = "buildbot_rest_utf8_replace"


def _find_codec(name: str) -> codecs.CodecInfo | None:
    if name != _TOLERANT_CODEC:
        return None
    utf8 = codecs.lookup("utf-8")

    def decode(data: Any, errors: str = "strict", /) -> tuple[str, int]:
        return utf8.decode(data, "replace")

    return codecs.CodecInfo(utf8.encode, decode, name=_TOLERANT_CODEC)


codecs.register(_find_codec)
_encodings_lock = threading.Lock()


def _default_postgresql_driver() -> str:
    # SQLAlchemy's default driver for a bare postgresql:// changed between releases;
    # take whichever of the two usual drivers is installed.
    for module, driver in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            __import__(module)
        except ImportError:
            continue
        return driver
    # psycopg2-binary is a dependency of the package, so this is a broken installation.
    raise DatabaseError("PostgreSQL needs a driver: pip install psycopg2-binary")


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _configure_sqlite(engine: sa.Engine, path: str | None) -> None:
    # Connection-level settings only: opening a database must not change its file (the
    # journal mode is set by Database.prepare_sync, once the schema is accepted).
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let Python's sqlite3 leave transactions to SQLAlchemy, so BEGIN is explicit.
        dbapi_conn.isolation_level = None
        dbapi_conn.text_factory = TOLERANT_TEXT
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=20000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        if path is not None:
            record.info["file"] = _file_identity(path)

    if path is None:
        return

    @sa.event.listens_for(engine, "checkout")
    def on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # A pooled connection keeps reading a file that was deleted or replaced: drop
        # it, so that the next one opens what is there now (or fails: unavailable).
        if record.info.get("file") != _file_identity(path):
            raise sa.exc.DisconnectionError(f"{path} was deleted or replaced")

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        # A write takes the lock at once: a transaction that reads and then writes
        # could otherwise find, at its first write, that another has committed since
        # its read began, and fail at once without waiting (SQLITE_BUSY_SNAPSHOT).
        write = conn.get_execution_options().get("write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _configure_psycopg2(engine: sa.Engine) -> None:
    # A UTF8 (or any other real encoding) database holds only valid text. A SQL_ASCII
    # database holds any bytes, which psycopg2 would decode as strict ASCII: read them
    # as UTF-8 with bad bytes replaced instead. psycopg2 picks its codec by name from
    # its ``encodings`` table when the client encoding changes, so the table points at
    # the tolerant codec just while this connection sets it.
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn.encoding != "SQLASCII":
            return
        from psycopg2 import extensions

        with _encodings_lock:
            saved = extensions.encodings["SQLASCII"]
            extensions.encodings["SQLASCII"] = _TOLERANT_CODEC
            try:
                # psycopg2 does nothing when the encoding does not change
                dbapi_conn.set_client_encoding("UTF8")
                dbapi_conn.set_client_encoding("SQL_ASCII")
            finally:
                extensions.encodings["SQLASCII"] = saved


def inspect_schema(conn: sa.Connection) -> SchemaStatus:
    """Find the schema revision of a database and whether this server can use it."""
    names = set(sa.inspect(conn).get_table_names())
    if "alembic_version" not in names:
        if not names:
            return SchemaStatus(None, "empty", "the database is empty; create it with "
                                "`buildbot-rest create-db` (or serve with --create)")
        if "migrate_version" in names or "version" in names:
            return SchemaStatus(None, "old", "the database predates Buildbot 3.0; "
                                + UPGRADE_HINT)
        return SchemaStatus(None, "foreign", "the database has tables but no alembic_version; "
                            "it is not a Buildbot database this server knows")
    revision = conn.execute(sa.select(schema.alembic_version.c.version_num)).scalar()
    if revision == schema.ALEMBIC_HEAD:
        missing = sorted(set(schema.metadata.tables) - names)
        if missing:
            return SchemaStatus(revision, "incomplete",
                                f"the database is at revision {revision} but lacks tables: "
                                + ", ".join(missing))
        return SchemaStatus(revision, "current", f"schema revision {revision} (Buildbot 4.3.0)")
    if revision in KNOWN_OLD_REVISIONS:
        return SchemaStatus(revision, "old", f"the database is at schema revision {revision}, "
                            f"older than {schema.ALEMBIC_HEAD}; " + UPGRADE_HINT)
    return SchemaStatus(revision, "unknown",
                        f"the database is at schema revision {revision!r}, which this server "
                        f"does not know (it serves revision {schema.ALEMBIC_HEAD}, Buildbot "
                        "4.3.0); use a buildbot_rest release that supports it")


def create_schema(conn: sa.Connection) -> None:
    """Create every table and index and stamp the alembic head, in one transaction."""
    # A fresh copy each time: SQLAlchemy remembers, per metadata, that a use_alter foreign
    # key was once added with ALTER, and would then leave it out on SQLite.
    metadata = sa.MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.create_all(conn)
    schema.alembic_version.create(conn)
    conn.execute(schema.alembic_version.insert().values(version_num=schema.ALEMBIC_HEAD))


class Database:
    """A database this server reads and writes, with its engine and thread pool."""

    def __init__(self, url: str, *, pool_size: int = 4, reactor: Any = None,
                 retry_seconds: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.pool = DBThreadPool(self.engine, size=pool_size, reactor=reactor,
                                 retry_seconds=retry_seconds)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sqlite_file(self) -> str | None:
        """The absolute path of an SQLite database file (None for other databases)."""
        if self.engine.dialect.name != "sqlite":
            return None
        database = self.engine.url.database or ""
        return None if database in ("", ":memory:") else os.path.abspath(database)

    def _missing(self) -> DatabaseError:
        return DatabaseError(
            f"{self.safe_url}: no such database file; create it with `buildbot-rest "
            f"create-db --db {self.safe_url}` (or serve with --create, or --demo)")

    def status_sync(self) -> SchemaStatus:
        """The schema status, checked in the calling thread (the database is only read:
        its file stays byte for byte as it was)."""
        path = self.sqlite_file
        if path is not None and not os.path.exists(path):
            raise self._missing()
        try:
            return self.pool.run_sync(inspect_schema)
        except (sa.exc.DBAPIError, DatabaseUnavailable) as e:
            cause = e.__cause__ if isinstance(e, DatabaseUnavailable) and e.__cause__ else e
            raise DatabaseError(f"cannot connect to {self.safe_url}: "
                                f"{first_line(cause)}") from None

    def prepare_sync(self, *, create: bool = True) -> SchemaStatus:
        """Make sure the database is usable: create it when it is missing or empty (if
        allowed), else check its revision. Never alters an existing schema; a database
        refused is left unchanged. An accepted SQLite file is switched to WAL journaling
        (concurrent readers beside a writer), which it then keeps."""
        path = self.sqlite_file
        if path is not None and not os.path.exists(path):
            if not create:
                raise self._missing()
            sqlite3.connect(path).close()
        status = self.status_sync()
        if status.state == "empty" and create:
            self.pool.run_in_transaction_sync(create_schema)
            status = self.status_sync()
        if not status.usable:
            raise DatabaseError(f"{self.safe_url}: {status.message}")
        if path is not None:
            _set_wal(self.engine)
        return status

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()


def _set_wal(engine: sa.Engine) -> None:
    # Outside any transaction (SQLite refuses to change the journal mode inside one).
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA journal_mode=WAL")  # type: ignore[union-attr]
    finally:
        raw.close()

