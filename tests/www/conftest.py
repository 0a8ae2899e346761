"""A running server over a database filled with upstream-shaped demo rows, a small client
for HTTP tests over a listening port (``api``), and an in-memory one (``stub``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from treq.testing import StubTreq
from twisted.internet import defer, endpoints, reactor, task
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.mq import SimpleMQ

T = TypeVar("T")

#: the demo data every HTTP test reads (deterministic for this seed)
DEMO_BUILDS = 30
DEMO_SEED = 1


@dataclass
class Reply:
    code: int
    headers: Any
    body: bytes
    #: the Content-Length the server sent (None for a chunked body; raw requests only)
    length: int | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class Api:
    """``await api.get("builds?limit=2")`` against a live server. Tests are
    ``@pytest_twisted.ensureDeferred async def test_...``."""

    def __init__(self, root: str, db: Database, connector: DataConnector) -> None:
        self.root = root
        self.db = db
        self.connector = connector
        self.mq: SimpleMQ | None = connector.mq  # type: ignore[assignment]

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      data: bytes | None = None, raw: bool = False,
                      raw_headers: dict[str, list[str]] | None = None) -> Reply:
        """``raw``: send exactly these headers and keep the body as sent (treq adds its
        own ``Accept-Encoding: gzip`` and decodes gzip). ``raw_headers``: headers with
        several values each (sent as several fields)."""
        hdrs = {"Accept": "application/json"}
        hdrs.update(headers or {})
        if raw:
            assert data is None
            resp = await Agent(reactor).request(
                method.encode(), (self.root + path).encode(),
                Headers({k: [v] for k, v in hdrs.items()}))
            length = None if resp.length is UNKNOWN_LENGTH else resp.length
            return Reply(resp.code, resp.headers, await treq.content(resp), length)
        fields = {k: [v] for k, v in hdrs.items()}
        fields.update(raw_headers or {})
        resp = await treq.request(method, self.root + path, headers=fields,
                                  data=data, persistent=False)
        body = await resp.content()
        return Reply(resp.code, resp.headers, body)

    async def get(self, path: str, **kw: Any) -> Reply:
        """GET ``/api/v2/<path>`` (or ``/<path>`` when it starts with a slash)."""
        if path.startswith("/"):
            return await self.request("GET", path[1:], **kw)
        return await self.request("GET", "api/v2" + ("/" + path if path else ""), **kw)

    async def rpc(self, path: str, method: str, params: dict[str, Any] | None = None, *,
                  call_id: Any = 1, headers: dict[str, str] | None = None) -> Reply:
        """A JSON-RPC call: POST ``/api/v2/<path>`` with ``method`` and ``params``."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": call_id,
                           "params": params if params is not None else {}}).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return await self.request("POST", "api/v2/" + path, headers=hdrs, data=body)

    def record(self, *key_filter: str | None) -> list[tuple[tuple[str, ...], Any]]:
        """The events published from now on whose routing keys match ``key_filter``
        (``None`` matches any element), as (routing key, message) pairs."""
        assert self.mq is not None, "serve with an mq (writable_server) to see events"
        seen: list[tuple[tuple[str, ...], Any]] = []
        self.mq.consume(lambda k, m: seen.append((k, m)), key_filter)
        return seen

    def rows(self, stmt: Any) -> list[Any]:
        """Read the test database directly, to compute expected answers."""
        with self.db.engine.connect() as conn:
            return list(conn.execute(stmt))


def _serve(url: str, *, config: Any = None, writable: bool = False) -> Iterator[Api]:
    db = Database(url, pool_size=4)
    db.prepare_sync()
    with db.engine.connect() as conn:
        empty = conn.execute(sa.text("select count(*) from builds")).scalar() == 0
    if empty:
        demo.populate(db.engine, builds=DEMO_BUILDS, seed=DEMO_SEED)
    yield from serve_database(db, config=config, writable=writable)


def serve_database(db: Database, *, config: Any = None,
                   writable: bool = False) -> Iterator[Api]:
    """Serve a prepared (filled) database over a listening port until the generator is
    closed; the pool is started here and stopped afterwards. ``writable``: with a
    message queue (``api.record``) for tests that write."""
    db.start()
    connector = DataConnector(db, base_url="http://testserver/", config=config,
                              mq=SimpleMQ() if writable else None)
    from buildbot_rest.www import WebApp
    site = Site(WebApp(connector).resource())
    port = pytest_twisted.blockon(
        endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site))
    try:
        yield Api(f"http://127.0.0.1:{port.getHost().port}/", db, connector)
    finally:
        pytest_twisted.blockon(port.stopListening())
        db.stop()


def own_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               name: str, fill: Callable[[Api], T], *, config: Any = None,
               writable: bool = False) -> Iterator[tuple[Api, T]]:
    """For a fixture parametrized by backend ("sqlite" or "postgresql"): a demo server of
    its own, changed by ``fill(api)``; yields the server and what ``fill`` returned.
    ``writable``: for tests that write (a message queue, ``api.record``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp(name) / 'demo.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    server = _serve(url, config=config, writable=writable)
    api = next(server)
    try:
        yield api, fill(api)
    finally:
        server.close()


@pytest.fixture(scope="session")
def api_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    path = tmp_path_factory.mktemp("www") / "demo.sqlite"
    yield from _serve(f"sqlite:///{path}")


@pytest.fixture(scope="session")
def api_postgresql(pg_databases: Any) -> Iterator[Api]:
    yield from _serve(pg_databases.create())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def api(request: pytest.FixtureRequest) -> Api:
    """The demo server on each backend."""
    return request.getfixturevalue(f"api_{request.param}")


# -- in memory: treq.testing.StubTreq -------------------------------------------------------

class Stub:
    """``await stub.get("builds")``: requests through :class:`treq.testing.StubTreq`, with
    no socket. StubTreq only moves bytes when flushed, while our database work runs in real
    threads and comes back through the real reactor; so a LoopingCall flushes until the
    response is complete."""

    def __init__(self, connector: DataConnector, interval: float = 0.002) -> None:
        from buildbot_rest.www import WebApp
        self.treq = StubTreq(WebApp(connector).resource())
        self.interval = interval

    async def _pumped(self, d: defer.Deferred[Any]) -> Any:
        pump = task.LoopingCall(self.treq.flush)
        pump.start(self.interval)
        try:
            return await d
        finally:
            pump.stop()

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      data: bytes | None = None) -> Reply:
        """``path`` is relative to ``/api/v2`` (or to the root when it starts with ``/``)."""
        url = "http://testserver" + (path if path.startswith("/") else
                                      "/api/v2" + ("/" + path if path else ""))
        hdrs = {"Accept": "application/json"}
        hdrs.update(headers or {})
        resp = await self._pumped(self.treq.request(
            method, url, headers={k: [v] for k, v in hdrs.items()}, data=data))
        body = await self._pumped(self.treq.content(resp))
        return Reply(resp.code, resp.headers, body)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)


@pytest.fixture
def stub(api_sqlite: Api) -> Stub:
    """An in-memory client of a fresh web app over the SQLite demo database."""
    return Stub(api_sqlite.connector)
