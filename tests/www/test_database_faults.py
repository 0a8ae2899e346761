"""A database that fails while the server runs (issue 10, items 1 to 3): every request is
answered at once with a JSON 503 and ``Retry-After`` (streamed, whole, single, raw and
HEAD answers), the outage is logged once, the server recovers when the database does, a
deleted SQLite file is never created again, and a database that is only inspected or
refused stays byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from twisted.internet import defer, endpoints, reactor
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.protocols import portforward

from buildbot_rest import demo
from buildbot_rest.config import Config
from buildbot_rest.db import Database, DatabaseError
from buildbot_rest.db import schema as s
from buildbot_rest.service import RestService
from tests.www.conftest import Api, Reply, serve_database

ROOT = Path(__file__).resolve().parent.parent.parent

#: one request of every kind of answer: (method, path)
KINDS = (
    ("GET", "builders"),                 # an unpaged collection: read as a stream
    ("GET", "builds?limit=5"),           # a page, read whole
    ("GET", "builds/1"),                 # one entity
    ("GET", "builds/1/steps"),           # a nested collection (its parent resolved first)
    ("GET", "logs/1/raw"),               # a download, streamed
    ("GET", "logs/1/contents"),          # log lines
    ("HEAD", "builders"),
    ("HEAD", "logs/1/raw"),
)


class Outages:
    """Log events about the database's availability, as the server writes them."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        text = formatEvent(event) or ""
        if "database is unavailable" in text or "database answers again" in text:
            self.events.append(event)

    def texts(self) -> list[str]:
        return [formatEvent(e) or "" for e in self.events]


@pytest.fixture
def outages() -> Iterator[Outages]:
    seen = Outages()
    globalLogPublisher.addObserver(seen)
    yield seen
    globalLogPublisher.removeObserver(seen)


def checkpoint(path: Path) -> None:
    """Move every page of an SQLite database from its WAL into the file itself (as an
    operator does before copying or replacing the file)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def filled(url: str) -> Database:
    db = Database(url, pool_size=4, retry_seconds=1.0)
    db.prepare_sync(create=True)
    demo.populate(db.engine, builds=6, seed=9)
    return db


async def every_kind(api: Api) -> list[tuple[str, str, Reply, float]]:
    """Each kind of request, all at once (several clients); with how long each took."""
    async def one(method: str, path: str) -> tuple[str, str, Reply, float]:
        start = time.monotonic()
        reply = await api.request(method, "api/v2/" + path)
        return method, path, reply, time.monotonic() - start
    return list(await defer.gatherResults(
        [defer.ensureDeferred(one(m, p)) for m, p in KINDS * 2]))


def assert_unavailable(replies: list[tuple[str, str, Reply, float]], bound: float) -> None:
    for method, path, reply, took in replies:
        assert reply.code == 503, (method, path, reply.code, reply.body[:200])
        assert reply.header("retry-after") == "5", (method, path)
        assert reply.header("content-type") == "application/json; charset=utf-8"
        if method == "GET":
            assert reply.json["error"].startswith("the database is unavailable"), reply.json
        else:
            assert reply.body == b""
        assert took < bound, (method, path, took)


def assert_answered(replies: list[tuple[str, str, Reply, float]]) -> None:
    for method, path, reply, _ in replies:
        assert reply.code == 200, (method, path, reply.code, reply.body[:200])


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    server = serve_database(filled(f"sqlite:///{tmp_path / 'state.sqlite'}"))
    yield next(server)
    server.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_file_overwritten_with_random_bytes(sqlite_api: Api, tmp_path: Path,
                                                         outages: Outages) -> None:
    path = tmp_path / "state.sqlite"
    assert_answered(await every_kind(sqlite_api))
    checkpoint(path)
    good = path.read_bytes()
    path.write_bytes(os.urandom(len(good)))
    for _ in range(2):
        assert_unavailable(await every_kind(sqlite_api), bound=5.0)
    assert outages.texts()[0].startswith("the database is unavailable: ")
    assert len(outages.events) == 1  # logged once, not per request
    path.write_bytes(good)
    assert_answered(await every_kind(sqlite_api))
    assert outages.texts()[1:] == ["the database answers again"]


@pytest_twisted.ensureDeferred
async def test_sqlite_file_deleted_is_never_created_again(sqlite_api: Api, tmp_path: Path,
                                                          outages: Outages) -> None:
    path = tmp_path / "state.sqlite"
    assert_answered(await every_kind(sqlite_api))  # pooled connections are open
    saved = tmp_path / "saved.sqlite"
    checkpoint(path)
    shutil.copyfile(path, saved)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    for _ in range(3):
        # never the old data of a connection still open on the deleted file
        assert_unavailable(await every_kind(sqlite_api), bound=5.0)
    assert not path.exists()
    assert len(outages.events) == 1
    assert "unable to open database file" in outages.texts()[0]
    shutil.copyfile(saved, path)  # put back: served again
    assert_answered(await every_kind(sqlite_api))
    assert outages.texts()[1:] == ["the database answers again"]


@pytest_twisted.ensureDeferred
async def test_sqlite_file_replaced_is_read_anew(sqlite_api: Api, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    before = (await sqlite_api.get("builders")).json["builders"]
    other = filled(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with other.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE builders SET name = 'renamed-' || name")
    other.engine.dispose()
    checkpoint(path)  # (SQLite would lay the pages of the old WAL over the new file)
    os.replace(tmp_path / "other.sqlite", path)
    after = (await sqlite_api.get("builders")).json["builders"]
    assert [b["name"] for b in after] == ["renamed-" + b["name"] for b in before]


# -- PostgreSQL whose server goes away and comes back ------------------------------------

class _Forwarded(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)  # type: ignore[attr-defined]
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.live.discard(self)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class Relay:
    """A TCP relay in front of the PostgreSQL server: :meth:`cut` is a server that stops
    (connections dropped, new ones refused), :meth:`restore` one that is back."""

    def __init__(self, host: str, port: int) -> None:
        self.factory = portforward.ProxyFactory(host, port)
        self.factory.protocol = _Forwarded
        self.factory.live = set()  # type: ignore[attr-defined]
        self.listening: Any = None
        self.port = 0

    async def restore(self) -> None:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1")
        self.listening = await endpoint.listen(self.factory)
        self.port = self.listening.getHost().port

    async def cut(self) -> None:
        await self.listening.stopListening()
        for live in list(self.factory.live):  # type: ignore[attr-defined]
            live.transport.abortConnection()
        await _settle()


async def _settle() -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0.2, d.callback, None)  # type: ignore[attr-defined]
    await d


@pytest.fixture
def relayed(pg_databases: Any) -> Iterator[tuple[Api, Relay]]:
    """A server over a PostgreSQL database reached through a :class:`Relay`."""
    real = make_url(pg_databases.create())
    # filled directly: the relay needs the reactor, which this set-up blocks
    filled(real.render_as_string(hide_password=False)).stop()
    relay = Relay(real.host or "127.0.0.1", real.port or 5432)
    pytest_twisted.blockon(defer.ensureDeferred(relay.restore()))
    url = real.set(port=relay.port).render_as_string(hide_password=False)
    server = serve_database(Database(url, pool_size=4, retry_seconds=1.0))
    try:
        yield next(server), relay
    finally:
        server.close()
        if relay.listening.connected:
            pytest_twisted.blockon(defer.ensureDeferred(relay.cut()))


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_postgresql_server_stopped_and_restarted(relayed: tuple[Api, Relay],
                                                       outages: Outages) -> None:
    api, relay = relayed
    assert_answered(await every_kind(api))
    await relay.cut()
    # the first requests retry for the pool's budget (1 s here); then at once
    assert_unavailable(await every_kind(api), bound=5.0)
    assert_unavailable(await every_kind(api), bound=1.0)
    assert len(outages.events) == 1
    await relay.restore()
    assert_answered(await every_kind(api))
    assert outages.texts()[1:] == ["the database answers again"]


# -- a database only inspected, or refused, is left as it was ----------------------------

def _digest(path: Path) -> dict[str, str]:
    """The bytes of the database and of any journal files beside it."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.parent.glob(path.name + "*"))}


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    """A database at upstream's revision 060, in rollback-journal mode, closed."""
    path = tmp_path / "old.sqlite"
    db = filled(f"sqlite:///{path}")
    db.stop()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("UPDATE alembic_version SET version_num = '060'")
    conn.commit()
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("old")] == ["old.sqlite"]
    return path


def test_check_db_leaves_the_file_unchanged(old_database: Path) -> None:
    before = _digest(old_database)
    done = subprocess.run(
        [sys.executable, "-m", "buildbot_rest.scripts", "check-db", "--db",
         f"sqlite:///{old_database}"], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "revision: 060" in done.stdout
    assert _digest(old_database) == before


def test_refused_database_is_unchanged(old_database: Path) -> None:
    before = _digest(old_database)
    service = RestService(Config(db_url=f"sqlite:///{old_database}", port=None))
    with pytest.raises(DatabaseError, match="060"):
        service.prepare()
    assert _digest(old_database) == before


def test_accepted_database_is_switched_to_wal(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    filled(f"sqlite:///{path}").stop()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    service = RestService(Config(db_url=f"sqlite:///{path}", port=None))
    service.prepare()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_missing_file_is_refused_unless_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.sqlite"
    service = RestService(Config(db_url=f"sqlite:///{path}", port=None))
    with pytest.raises(DatabaseError, match="no such database file; create it with"):
        service.prepare()
    assert not path.exists()
    RestService(Config(db_url=f"sqlite:///{path}", port=None, demo=True)).prepare()
    assert path.exists()



@pytest_twisted.ensureDeferred
async def test_a_call_while_the_database_is_gone_is_a_jsonrpc_503(
        sqlite_api: Api, tmp_path: Path) -> None:
    # a control action: the JSON-RPC envelope, with Retry-After, and nothing half done
    path = tmp_path / "state.sqlite"
    schedulerid = sqlite_api.rows(sa.select(sa.func.min(s.schedulers.c.id)))[0][0]
    checkpoint(path)
    good = path.read_bytes()
    path.write_bytes(os.urandom(len(good)))
    reply = await sqlite_api.rpc(f"schedulers/{schedulerid}", "enable", {"enabled": False},
                                 call_id=4)
    assert reply.code == 503
    assert reply.header("retry-after") == "5"
    assert reply.json["id"] == 4
    assert reply.json["error"]["code"] == -32000
    assert reply.json["error"]["message"].startswith("the database is unavailable")
    path.write_bytes(good)
    reply = await sqlite_api.rpc(f"schedulers/{schedulerid}", "enable", {"enabled": False})
    assert reply.code == 200
