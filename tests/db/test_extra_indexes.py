"""The optional extra indexes: their DDL on each dialect, adding and dropping them on real
databases, that query plans use them, and that upstream's schema objects stay untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from buildbot_rest.db import Database, DatabaseError, extra_indexes, schema
from buildbot_rest.db.database import inspect_schema
from tests.conftest import PgDatabases, raw_engine_for

ALL = [extra.name for extra in extra_indexes.EXTRA_INDEXES]


def _with_schema(url: str) -> str:
    db = Database(url)
    try:
        db.prepare_sync(create=True)
    finally:
        db.stop()
    return url


@pytest.fixture(scope="module")
def sqlite_schema_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database with upstream's schema, shared by this module's tests."""
    return _with_schema(f"sqlite:///{tmp_path_factory.mktemp('extra') / 'state.sqlite'}")


@pytest.fixture(scope="module")
def postgresql_schema_url(pg_databases: PgDatabases) -> Iterator[str]:
    """A PostgreSQL database with upstream's schema, shared by this module's tests (making
    one takes a second or two)."""
    url = pg_databases.create()
    yield _with_schema(url)
    pg_databases.drop(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A plain engine on a database with upstream's schema, on each backend; whatever a
    test did to it (our indexes, its revision) is undone afterwards."""
    url = request.getfixturevalue(f"{request.param}_schema_url")
    # NullPool: a new connection each time, as SQLite's PRAGMA index_list (which the
    # inspector uses) may answer from an older connection's stale copy of the schema.
    engine = raw_engine_for(url, poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            for index in sa.inspect(conn).get_indexes("builds"):
                if str(index["name"]).startswith("bbrest_"):
                    conn.exec_driver_sql(f"DROP INDEX {index['name']}")
            conn.execute(schema.alembic_version.update().values(
                version_num=schema.ALEMBIC_HEAD))
        engine.dispose()


def indexes(engine: sa.Engine) -> list[tuple[str, tuple[str, ...], bool]]:
    """The indexes of builds, for comparing before and after."""
    with engine.connect() as conn:
        return sorted((str(ix["name"]), tuple(map(str, ix["column_names"])), bool(ix["unique"]))
                      for ix in sa.inspect(conn).get_indexes("builds"))


def index_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(ix["name"]) for ix in sa.inspect(conn).get_indexes("builds")}


def ours(engine: sa.Engine) -> set[str]:
    return {name for name in index_names(engine) if name.startswith("bbrest_")}


def upstream_indexes_untouched() -> None:
    for table in schema.metadata.tables.values():
        assert not [ix.name for ix in table.indexes if str(ix.name).startswith("bbrest_")]


# -- the list and its DDL -------------------------------------------------------------------

def test_names_cannot_clash_with_upstream() -> None:
    upstream = {str(ix.name) for table in schema.metadata.tables.values()
                for ix in table.indexes}
    assert len(set(ALL)) == len(ALL) == 4
    for extra in extra_indexes.EXTRA_INDEXES:
        assert extra.name.startswith("bbrest_")
        assert extra.name not in upstream
        assert extra.columns[-1] == "id"
        assert extra.description and "\n" not in extra.description
        assert set(extra.columns) <= set(schema.metadata.tables[extra.table].c.keys())
    assert not any(name.startswith("bbrest_") for name in upstream)


@pytest.mark.parametrize("dialect, complete_at, results", [
    (postgresql.dialect(), ("CREATE INDEX CONCURRENTLY bbrest_builds_complete_at ON builds "
                            "(complete_at ASC NULLS FIRST, id)"),
     "CREATE INDEX CONCURRENTLY bbrest_builds_results ON builds (results ASC NULLS FIRST, id)"),
    (sqlite.dialect(), "CREATE INDEX bbrest_builds_complete_at ON builds (complete_at, id)",
     "CREATE INDEX bbrest_builds_results ON builds (results, id)"),
    (mysql.dialect(), "CREATE INDEX bbrest_builds_complete_at ON builds (complete_at, id)",
     "CREATE INDEX bbrest_builds_results ON builds (results, id)"),
])
def test_ddl(dialect: sa.Dialect, complete_at: str, results: str) -> None:
    def ddl(name: str, element: type[sa.schema.CreateIndex | sa.schema.DropIndex]) -> str:
        extra = extra_indexes.select([name])[0]
        index = extra_indexes.index_for(extra, dialect.name)
        return str(element(index).compile(dialect=dialect)).strip()

    assert ddl("bbrest_builds_complete_at", sa.schema.CreateIndex) == complete_at
    assert ddl("bbrest_builds_results", sa.schema.CreateIndex) == results
    # columns that are never NULL get no NULLS clause anywhere
    assert ddl("bbrest_builds_started_at", sa.schema.CreateIndex).endswith(
        "ON builds (started_at, id)")
    assert ddl("bbrest_builds_builderid_id", sa.schema.CreateIndex).endswith(
        "ON builds (builderid, id)")
    drop = ddl("bbrest_builds_results", sa.schema.DropIndex)
    assert drop == {"postgresql": "DROP INDEX CONCURRENTLY bbrest_builds_results",
                    "sqlite": "DROP INDEX bbrest_builds_results",
                    "mysql": "DROP INDEX bbrest_builds_results ON builds"}[dialect.name]
    upstream_indexes_untouched()


def test_select() -> None:
    assert [e.name for e in extra_indexes.select(None)] == ALL
    assert [e.name for e in extra_indexes.select([ALL[2], ALL[0], ALL[2]])] == [ALL[2], ALL[0]]
    with pytest.raises(ValueError) as info:
        extra_indexes.select([ALL[0], "builds_number"])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown index 'builds_number'; valid names: ")
    assert all(name in message for name in ALL)


# -- on real databases ----------------------------------------------------------------------

def test_add_and_drop(engine: sa.Engine) -> None:
    before = indexes(engine)
    assert ours(engine) == set()  # create_schema never makes them
    assert extra_indexes.status(engine) == [(e, False) for e in extra_indexes.EXTRA_INDEXES]

    assert extra_indexes.add(engine) == ALL
    assert ours(engine) == set(ALL)
    assert extra_indexes.status(engine) == [(e, True) for e in extra_indexes.EXTRA_INDEXES]
    assert extra_indexes.add(engine) == []
    assert ours(engine) == set(ALL)

    # the server still finds the schema usable, and upstream's objects are as they were
    with engine.connect() as conn:
        assert inspect_schema(conn).usable
    upstream_indexes_untouched()
    db = Database(str(engine.url.render_as_string(hide_password=False)))
    try:
        assert db.prepare_sync(create=False).usable
    finally:
        db.stop()

    assert extra_indexes.drop(engine) == ALL
    assert ours(engine) == set()
    assert extra_indexes.drop(engine) == []
    assert indexes(engine) == before
    upstream_indexes_untouched()


def test_named_ones_only(engine: sa.Engine) -> None:
    assert extra_indexes.add(engine, ["bbrest_builds_results"]) == ["bbrest_builds_results"]
    assert ours(engine) == {"bbrest_builds_results"}
    assert extra_indexes.add(engine, ["bbrest_builds_results", "bbrest_builds_started_at"]) \
        == ["bbrest_builds_started_at"]
    assert {e.name: p for e, p in extra_indexes.status(engine)} == {
        "bbrest_builds_complete_at": False, "bbrest_builds_started_at": True,
        "bbrest_builds_results": True, "bbrest_builds_builderid_id": False}
    assert extra_indexes.drop(engine, ["bbrest_builds_complete_at"]) == []
    assert extra_indexes.drop(engine, ["bbrest_builds_results"]) == ["bbrest_builds_results"]
    assert ours(engine) == {"bbrest_builds_started_at"}
    with pytest.raises(ValueError, match="unknown index 'nope'"):
        extra_indexes.add(engine, ["nope"])
    with pytest.raises(ValueError, match="unknown index 'builds_number'"):
        extra_indexes.drop(engine, ["builds_number"])
    assert "builds_number" in index_names(engine)  # upstream's is never dropped
    assert ours(engine) == {"bbrest_builds_started_at"}


def test_a_foreign_index_name_is_left_alone(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX bbrest_builds_other ON builds (masterid, id)")
    assert extra_indexes.add(engine) == ALL
    assert extra_indexes.drop(engine) == ALL
    assert ours(engine) == {"bbrest_builds_other"}


def test_refuses_an_empty_database(sqlite_url: str,
                                   raw_engine: Callable[..., sa.Engine]) -> None:
    engine = raw_engine(sqlite_url)
    for call in (extra_indexes.status, extra_indexes.add, extra_indexes.drop):
        with pytest.raises(DatabaseError, match="the database is empty; create it"):
            call(engine)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []


def test_refuses_an_older_revision(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(schema.alembic_version.update().values(version_num="065"))
    for call in (extra_indexes.status, extra_indexes.add, extra_indexes.drop):
        with pytest.raises(DatabaseError, match=r"revision 065.*upgrade-master"):
            call(engine)
    assert ours(engine) == set()


# -- query plans ----------------------------------------------------------------------------

RESULTS_PAGE = "SELECT id FROM builds WHERE results = 2 ORDER BY id DESC LIMIT 50"
RUNNING_PAGE = "SELECT id FROM builds WHERE complete_at IS NULL ORDER BY id LIMIT 50"
BUILDER_PAGE = "SELECT id FROM builds WHERE builderid = 7 ORDER BY id DESC LIMIT 50"
STARTED_PAGE = "SELECT id FROM builds ORDER BY started_at DESC, id DESC LIMIT 50"
# the order the server asks for on a nullable column, ascending and descending
COMPLETE_ASC = "SELECT id FROM builds ORDER BY complete_at ASC NULLS FIRST, id ASC LIMIT 50"
COMPLETE_DESC = ("SELECT id FROM builds ORDER BY complete_at DESC NULLS LAST, id DESC "
                 "LIMIT 50")


def plan(conn: sa.Connection, statement: str) -> str:
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + statement).fetchall()
    return "\n".join(str(row[-1]) for row in rows)


def test_query_plans_use_the_indexes(engine: sa.Engine) -> None:
    cases = [(RESULTS_PAGE, "bbrest_builds_results"),
             (RUNNING_PAGE, "bbrest_builds_complete_at"),
             (BUILDER_PAGE, "bbrest_builds_builderid_id"),
             (STARTED_PAGE, "bbrest_builds_started_at"),
             (COMPLETE_ASC, "bbrest_builds_complete_at"),
             (COMPLETE_DESC, "bbrest_builds_complete_at")]
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # the test tables are tiny: a scan of the table would always win
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, _ in cases:
            assert "bbrest_" not in plan(conn, statement)
    extra_indexes.add(engine)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, name in cases:
            text = plan(conn, statement)
            assert name in text, (statement, text)
            if conn.dialect.name == "sqlite":
                assert "TEMP B-TREE" not in text, (statement, text)  # no sort step
    if engine.dialect.name == "postgresql":
        check_no_sort(engine)


def check_no_sort(engine: sa.Engine) -> None:
    """On PostgreSQL the NULLS FIRST index serves both the server's ascending and descending
    orders of a nullable column, and an equality filter with the primary key's order,
    without a Sort step (the planner's other choices are turned off, as the table is
    tiny)."""
    cases = [(COMPLETE_ASC, "Index Only Scan using bbrest_builds_complete_at"),
             (COMPLETE_DESC, "Index Only Scan Backward using bbrest_builds_complete_at"),
             (STARTED_PAGE, "Index Only Scan Backward using bbrest_builds_started_at"),
             (RESULTS_PAGE, "Backward using bbrest_builds_results"),
             (BUILDER_PAGE, "Backward using bbrest_builds_builderid_id")]
    with engine.connect() as conn:
        for setting in ("enable_seqscan", "enable_sort", "enable_bitmapscan"):
            conn.exec_driver_sql(f"SET {setting} = off")
        for statement, expected in cases:
            text = plan(conn, statement)
            assert expected in text, (statement, text)
            nodes = [line.strip().removeprefix("->").strip() for line in text.splitlines()]
            assert not [n for n in nodes if n.startswith(("Sort", "Incremental Sort"))], \
                (statement, text)
