"""Fixtures of the integration tests: one database of demo data per backend, upstream
Buildbot 4.3.0 serving it from a subprocess, and our server serving the same database
in-process.

Both servers read the very same database, and ours is started only once upstream has
started: upstream adds its own ``masters`` row and a session secret at its first start,
and both servers must see identical rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from tests.conftest import raw_engine_for
from tests.integration.queries import Facts, load_facts
from tests.integration.upstream_master import (
    BASE_URL,
    UpstreamMaster,
    keep_masters_alive,
    upstream_log_codecs,
)

#: the demo data of the differential test (the same as the HTTP tests')
DEMO_BUILDS = 30
DEMO_SEED = 1

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]

#: summaries that tests add, printed at the end of the run (visible without ``-s``)
TERMINAL_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TERMINAL_SUMMARY:
        terminalreporter.section("differential test")
        for text in TERMINAL_SUMMARY:
            terminalreporter.write_line(text)


@dataclass
class Servers:
    """Upstream and our server over one database."""

    backend: str
    db_url: str
    upstream_root: str  #: ``http://127.0.0.1:<port>/``
    ours_root: str
    facts: Facts
    upstream: UpstreamMaster
    workdir: Path
    #: the log compression codes the upstream virtualenv can read
    upstream_codecs: set[int]


@pytest.fixture(scope="module", params=BACKENDS)
def differential_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def demo_db_url(differential_backend: str, request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database created and filled by our code (schema, then ``demo.populate``)."""
    if differential_backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('differential-db') / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    fill_demo(url)
    return url


def fill_demo(url: str) -> None:
    """Create the schema in the empty database at ``url`` and fill it with the
    differential's demo data; its masters stay active for upstream's master."""
    db = Database(url)
    try:
        db.prepare_sync()
        demo.populate(db.engine, builds=DEMO_BUILDS, seed=DEMO_SEED)
    finally:
        db.stop()
        db.engine.dispose()
    keep_masters_alive(url)


@pytest.fixture(scope="module")
def upstream_master(demo_db_url: str, differential_backend: str, upstream_venv: Path,
                    run_upstream: Callable[..., str],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamMaster]:
    """Upstream Buildbot 4.3.0 serving ``demo_db_url``; stopped after the module."""
    workdir = tmp_path_factory.mktemp(f"upstream-{differential_backend}")
    master = UpstreamMaster(upstream_venv, workdir / "master", demo_db_url)
    master.create(run_upstream)
    try:
        master.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield master
    finally:
        master.stop()


def _serve_ours(url: str) -> Iterator[str]:
    """Our server in this process over an existing database; yields its root URL."""
    db = Database(url, pool_size=4)
    db.prepare_sync(create=False)
    db.start()
    connector = DataConnector(db, base_url=BASE_URL)
    from buildbot_rest.www import WebApp
    site = Site(WebApp(connector).resource())
    port = pytest_twisted.blockon(
        endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site))
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/"
    finally:
        pytest_twisted.blockon(port.stopListening())
        db.stop()
        db.engine.dispose()


@pytest.fixture(scope="module")
def differential_servers(differential_backend: str, demo_db_url: str,
                         upstream_master: UpstreamMaster,
                         upstream_venv: Path) -> Iterator[Servers]:
    """Both servers over the database upstream has started on."""
    engine = raw_engine_for(demo_db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            facts = load_facts(conn)
    finally:
        engine.dispose()
    for root in _serve_ours(demo_db_url):
        yield Servers(differential_backend, demo_db_url, upstream_master.root, root, facts,
                      upstream_master, upstream_master.basedir.parent,
                      upstream_log_codecs(upstream_venv))
