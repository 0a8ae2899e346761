# -*- test-case-name: tests.db.test_extra_indexes -*-
"""Optional indexes beyond upstream's schema, added and dropped only on explicit request.

Upstream's schema leaves some frequent ``/builds`` queries without an index. The indexes
here serve them. Nothing creates them implicitly: neither the server nor ``create-db``;
only ``buildbot-rest indexes add`` (which calls :func:`add`).

Every name starts with ``bbrest_``, which upstream's names (``<table>_<column>``) never do,
so that these indexes cannot be mistaken for upstream's, nor clash with them.

On PostgreSQL the indexes are built and dropped ``CONCURRENTLY``, so that a running master
can go on writing. A concurrent build that fails leaves an INVALID index behind, which
counts as present here: ``drop`` and then ``add`` rebuild it. On SQLite (and MySQL) a plain
``CREATE INDEX`` runs; on SQLite it holds the database's write lock until it is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from buildbot_rest.db import schema
from buildbot_rest.db.database import DatabaseError, inspect_schema
from buildbot_rest.db.pool import first_line

#: What every name of ours starts with; never the start of an upstream index name.
PREFIX = "bbrest_"


@dataclass(frozen=True)
class ExtraIndex:
    """One optional index: its name, table, columns and the requests it serves."""

    name: str
    table: str
    columns: tuple[str, ...]
    description: str

    @property
    def label(self) -> str:
        """``table(column, ...)``."""
        return f"{self.table}({', '.join(self.columns)})"


EXTRA_INDEXES: tuple[ExtraIndex, ...] = (
    ExtraIndex("bbrest_builds_complete_at", "builds", ("complete_at", "id"),
               "/builds?complete=false (running builds), order=complete_at or -complete_at"),
    ExtraIndex("bbrest_builds_started_at", "builds", ("started_at", "id"),
               "/builds?order=-started_at&limit=N, started_at__gt/__lt ranges"),
    ExtraIndex("bbrest_builds_results", "builds", ("results", "id"),
               "/builds?results=N&order=-buildid&limit=N (e.g. the latest failures)"),
    ExtraIndex("bbrest_builds_builderid_id", "builds", ("builderid", "id"),
               "/builds?builderid=N&order=-buildid&limit=N (a builder's latest builds)"),
)

assert all(extra.name.startswith(PREFIX) for extra in EXTRA_INDEXES)

_BY_NAME = {extra.name: extra for extra in EXTRA_INDEXES}


def all_names() -> list[str]:
    """The names of all extra indexes, in their usual order."""
    return [extra.name for extra in EXTRA_INDEXES]


def select(wanted: Iterable[str] | None = None) -> list[ExtraIndex]:
    """The extra indexes named in ``wanted`` (all of them for None), without repeats.

    An unknown name raises ValueError with the valid names."""
    if wanted is None:
        return list(EXTRA_INDEXES)
    chosen: list[ExtraIndex] = []
    for name in wanted:
        extra = _BY_NAME.get(name)
        if extra is None:
            raise ValueError(f"unknown index {name!r}; valid names: {', '.join(all_names())}")
        if extra not in chosen:
            chosen.append(extra)
    return chosen


def index_for(extra: ExtraIndex, dialect: str) -> sa.Index:
    """The SQLAlchemy Index of ``extra`` for a dialect name, on a private table copy.

    Never bound to :data:`schema.metadata`, whose tables must keep upstream's indexes only.
    On PostgreSQL nullable columns are indexed ``ASC NULLS FIRST``: the server orders them
    NULLS FIRST ascending and NULLS LAST descending, which that order (read forwards or
    backwards) serves and a default btree does not."""
    source = schema.metadata.tables[extra.table]
    table = sa.Table(extra.table, sa.MetaData(),
                     *(sa.Column(name, source.c[name].type, nullable=source.c[name].nullable)
                       for name in extra.columns))
    elements: list[sa.ColumnElement[object]] = []
    for name in extra.columns:
        column = table.c[name]
        if dialect == "postgresql" and column.nullable:
            elements.append(column.asc().nulls_first())
        else:
            elements.append(column)
    return sa.Index(extra.name, *elements, postgresql_concurrently=True)


@contextmanager
def _connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection to a database whose schema this server can use.

    On PostgreSQL it runs in autocommit, as ``CREATE/DROP INDEX CONCURRENTLY`` require."""
    safe_url = engine.url.render_as_string(hide_password=True)
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as e:
        raise DatabaseError(f"cannot connect to {safe_url}: {first_line(e)}") from None
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            status = inspect_schema(conn)
        except sa.exc.DBAPIError as e:
            raise DatabaseError(f"cannot read {safe_url}: {first_line(e)}") from None
        if not status.usable:
            raise DatabaseError(f"{safe_url}: {status.message}")
        conn.commit()
        yield conn
    finally:
        conn.close()


def _present(conn: sa.Connection) -> set[str]:
    """Names of our indexes in the database (an INVALID PostgreSQL one counts).

    Only on a connection that :func:`_connection` checked: that read ``sqlite_master``, so
    SQLite's ``PRAGMA index_list`` below answers from the current schema, not a stale copy."""
    found: set[str] = set()
    for table in sorted({extra.table for extra in EXTRA_INDEXES}):
        found.update(str(index["name"]) for index in sa.inspect(conn).get_indexes(table)
                     if index["name"] in _BY_NAME)
    conn.commit()
    return found


def status(engine: sa.Engine) -> list[tuple[ExtraIndex, bool]]:
    """Each extra index and whether the database has it."""
    with _connection(engine) as conn:
        present = _present(conn)
    return [(extra, extra.name in present) for extra in EXTRA_INDEXES]


def add(engine: sa.Engine, names: Iterable[str] | None = None) -> list[str]:
    """Create the named extra indexes (all for None) that the database lacks; return the
    names created, in order."""
    chosen = select(names)
    created: list[str] = []
    with _connection(engine) as conn:
        present = _present(conn)
        for extra in chosen:
            if extra.name in present:
                continue
            index = index_for(extra, conn.dialect.name)
            _run(conn, sa.schema.CreateIndex(index), f"creating {extra.name}",
                 hint=(f"; an INVALID index may be left: drop {extra.name} and add it again"
                       if conn.dialect.name == "postgresql" else ""))
            created.append(extra.name)
    return created


def drop(engine: sa.Engine, names: Iterable[str] | None = None) -> list[str]:
    """Drop the named extra indexes (all for None) that the database has; return the
    names dropped, in order. Only ever drops indexes of our own list."""
    chosen = select(names)
    dropped: list[str] = []
    with _connection(engine) as conn:
        present = _present(conn)
        for extra in chosen:
            if extra.name not in present:
                continue
            assert extra.name.startswith(PREFIX) and extra.name in _BY_NAME
            # CONCURRENTLY on PostgreSQL comes from the index's own options.
            index = index_for(extra, conn.dialect.name)
            _run(conn, sa.schema.DropIndex(index), f"dropping {extra.name}")
            dropped.append(extra.name)
    return dropped


def _run(conn: sa.Connection, ddl: sa.schema.ExecutableDDLElement, what: str,
         hint: str = "") -> None:
    try:
        conn.execute(ddl)
        conn.commit()
    except sa.exc.DBAPIError as e:
        conn.rollback()
        raise DatabaseError(f"{what} failed: {first_line(e)}{hint}") from None

