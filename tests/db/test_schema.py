"""Our schema is upstream Buildbot 4.3.0's, to the index: a database created by either one is
used by the other as it is. Upstream runs in its own virtualenv (the ``upstream_venv``
fixture), on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from buildbot_rest.auth import tables as auth_tables
from buildbot_rest.db import schema
from buildbot_rest.db.database import Database
from tests.schemadiff import describe, differences

pytestmark = pytest.mark.upstream

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]

# Run with upstream's python: open a database the way `buildbot start` does, which refuses
# a database whose schema is not at upstream's alembic head, and report is_current().
IS_CURRENT = """
import sys
from twisted.internet import defer, task
from buildbot.config.master import DBConfig, MasterConfig
from buildbot.db import connector
from buildbot.master import BuildMaster

async def main(reactor, basedir, url):
    master = BuildMaster(basedir, reactor=reactor)
    master.config = MasterConfig()
    master.config.db = DBConfig(url)
    db = connector.DBConnector(basedir)
    await db.set_master(master)
    await master.secrets_manager.setup()
    try:
        await db.setup(check_version=True, verbose=False)
        print("is_current:", await db.model.is_current())
    finally:
        if db.pool is not None:
            await db.pool.stop()

task.react(lambda reactor, *argv: defer.ensureDeferred(main(reactor, *argv)), sys.argv[1:])
"""


def create_with_upstream(run_upstream: Callable[..., str], url: str, basedir: Path) -> None:
    """``buildbot create-master --db URL``: creates the schema through upgrade-master's code."""
    output = run_upstream("buildbot", "create-master", "--relocatable", "--db", url,
                          str(basedir), cwd=basedir.parent)
    assert "creating database" in output, output


def create_with_ours(url: str) -> None:
    db = Database(url)
    try:
        db.prepare_sync()
    finally:
        db.stop()


def describe_url(url: str, raw_engine: Callable[..., sa.Engine]) -> dict:
    return describe(raw_engine(url))


def alembic_revisions(url: str, raw_engine: Callable[..., sa.Engine]) -> list[str]:
    with raw_engine(url).connect() as conn:
        return list(conn.execute(sa.select(schema.alembic_version.c.version_num)).scalars())


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


class UpstreamMaster(NamedTuple):
    url: str  #: its database, created by upstream
    basedir: Path  #: its relocatable master directory; master.cfg.sample names the url


@pytest.fixture(scope="module")
def upstream_master(backend: str, run_upstream: Callable[..., str],
                    tmp_path_factory: pytest.TempPathFactory,
                    request: pytest.FixtureRequest) -> Iterator[UpstreamMaster]:
    """A master directory and database created by upstream, once per backend; tests must
    not change them."""
    workdir = tmp_path_factory.mktemp(f"upstream-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'upstream.sqlite'}"
        create_with_upstream(run_upstream, url, workdir / "master")
        yield UpstreamMaster(url, workdir / "master")
        return
    pg_databases = request.getfixturevalue("pg_databases")
    url = pg_databases.create()
    try:
        create_with_upstream(run_upstream, url, workdir / "master")
        yield UpstreamMaster(url, workdir / "master")
    finally:
        pg_databases.drop(url)


@pytest.fixture
def upstream_db(upstream_master: UpstreamMaster) -> str:
    return upstream_master.url


@pytest.fixture
def our_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of this test's own on the same backend as ``upstream_db``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ours.sqlite'}"
    return request.getfixturevalue("pg_database")


def test_same_schema_as_upstream(upstream_db: str, our_db: str,
                                 raw_engine: Callable[..., sa.Engine]) -> None:
    create_with_ours(our_db)
    ours = describe_url(our_db, raw_engine)
    theirs = describe_url(upstream_db, raw_engine)
    assert len(theirs) == 43  # 42 tables and alembic_version: the comparison saw them all
    diffs = differences(ours, theirs)
    assert not diffs, "schema differs from upstream's:\n" + "\n".join(diffs)


def test_same_revision_as_upstream(upstream_db: str, our_db: str,
                                   raw_engine: Callable[..., sa.Engine]) -> None:
    create_with_ours(our_db)
    assert alembic_revisions(upstream_db, raw_engine) == [schema.ALEMBIC_HEAD] == ["067"]
    assert alembic_revisions(our_db, raw_engine) == ["067"]


@pytest.mark.parametrize("create", [False, True])
def test_we_open_upstream_database_as_it_is(upstream_db: str, create: bool,
                                            raw_engine: Callable[..., sa.Engine]) -> None:
    before = describe_url(upstream_db, raw_engine)
    db = Database(upstream_db)
    try:
        status = db.prepare_sync(create=create)
    finally:
        db.stop()
    assert (status.state, status.revision) == ("current", "067")
    assert describe_url(upstream_db, raw_engine) == before


@pytest.mark.parametrize("own_tables", [False, True], ids=["plain", "with-bbrest-tables"])
def test_upstream_accepts_our_database(our_db: str, upstream_master: UpstreamMaster,
                                       run_upstream: Callable[..., str], tmp_path: Path,
                                       raw_engine: Callable[..., sa.Engine],
                                       own_tables: bool) -> None:
    create_with_ours(our_db)
    if own_tables:  # (tokens and logouts: upstream must not mind them)
        engine = raw_engine(our_db)
        with engine.begin() as conn:
            auth_tables.ensure_tables(conn)
    before = describe_url(our_db, raw_engine)

    # A master directory like upstream's, whose master.cfg points at our database.
    basedir = tmp_path / "master"
    basedir.mkdir()
    shutil.copy(upstream_master.basedir / "buildbot.tac", basedir)
    sample = (upstream_master.basedir / "master.cfg.sample").read_text()
    assert f'"{upstream_master.url}"' in sample
    (basedir / "master.cfg").write_text(sample.replace(upstream_master.url, our_db))

    # What `buildbot start` checks before it runs: the schema is at upstream's head.
    script = tmp_path / "is_current.py"
    script.write_text(IS_CURRENT)
    output = run_upstream("python", str(script), str(basedir), our_db, cwd=tmp_path)
    assert "is_current: True" in output, output

    # And `buildbot upgrade-master` finds nothing to do.
    output = run_upstream("buildbot", "upgrade-master", str(basedir), cwd=tmp_path)
    assert "upgrade complete" in output, output

    assert alembic_revisions(our_db, raw_engine) == ["067"]
    diffs = differences(describe_url(our_db, raw_engine), before)
    assert not diffs, "upstream changed our schema:\n" + "\n".join(diffs)
