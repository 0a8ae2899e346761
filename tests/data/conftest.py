"""Fixtures of the data layer's tests: a data connector over demo data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from buildbot_rest import demo
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.mq import SimpleMQ


def demo_connector(url: str, *, seed: int,
                   forceschedulers: list[dict[str, Any]]) -> Iterator[DataConnector]:
    """A started connector over a new database at ``url`` with 20 demo builds; the
    database is stopped when the generator is closed."""
    db = Database(url, pool_size=2)
    db.prepare_sync()
    demo.populate(db.engine, builds=20, seed=seed)
    db.start()
    config = Config(db_url=url, port=None, forceschedulers=forceschedulers)
    yield DataConnector(db, config=config, base_url="http://example.org/")
    db.stop()


def shared_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               name: str) -> str:
    """The URL of a new database for a module-scoped fixture parametrized with
    ``"sqlite"`` and ``"postgresql"``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp(name) / 'demo.sqlite'}"
    return str(request.getfixturevalue("pg_databases").create())


class Recorder:
    """A started data connector with a message queue over a new database, for tests of
    update methods and actions: ``rec.connector.updates.addBuild(...)``; ``rec.events``
    holds every (routing key, message) published since the last :meth:`take`."""

    def __init__(self, connector: DataConnector) -> None:
        self.connector = connector
        self.updates = connector.updates
        self.events: list[tuple[tuple[str, ...], Any]] = []
        mq = connector.mq
        assert isinstance(mq, SimpleMQ)
        publish = mq.produce

        def produce(routing_key: tuple[str, ...], message: Any) -> None:
            self.events.append((tuple(routing_key), message))
            publish(routing_key, message)

        mq.produce = produce  # type: ignore[method-assign]

    def take(self) -> list[tuple[tuple[str, ...], Any]]:
        """The events published since the last call (and forget them)."""
        taken, self.events[:] = list(self.events), []
        return taken

    def keys(self) -> list[str]:
        """:meth:`take`, as ``"builds/1/new"`` keys only."""
        return ["/".join(k) for k, _ in self.take()]

    def rows(self, stmt: Any) -> list[Any]:
        """Read the database directly."""
        with self.connector.db.engine.connect() as conn:
            return list(conn.execute(stmt))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def recorder(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Recorder]:
    """A :class:`Recorder` over a new, empty database (upstream's schema) on each
    backend; ``connector.clock`` is fixed at 1700000000 (tests may move it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'updates.sqlite'}"
    else:
        url = request.getfixturevalue("new_pg_database")()
    db = Database(url, pool_size=2)
    db.prepare_sync(create=True)
    db.start()
    config = Config(db_url=url, port=None)
    connector = DataConnector(db, config=config, base_url="http://example.org/",
                              mq=SimpleMQ())
    connector.clock = lambda: 1700000000
    yield Recorder(connector)
    db.stop()
