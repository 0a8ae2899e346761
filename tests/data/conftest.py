"""Fixtures of the data layer's tests: a data connector over demo data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from buildbot_rest import demo
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database


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
