"""Authorization over HTTP: a real server with an auth service and allow rules, callers
with roles (real bearer tokens with the roles a test names, see :class:`TokenApi`), on
the demo database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.mq import SimpleMQ
from tests.www.conftest import Api, Reply

SECRET = "linux-py311"
FORCE = [{"name": "force-all", "builder_names": ["linux-py311", "macos-py311"]}]
RULES = {"allow": [
    {"match": "view", "builder": SECRET, "role": "secret"},
    {"match": "stop", "role": "admins"},
    {"match": "rebuild", "role": "admins"},
    {"match": "cancel", "role": "admins"},
    {"match": "set_priority", "role": "admins"},
    {"match": "force", "role": "admins"},
    {"match": "enable_scheduler", "role": "admins"},
    {"match": "worker", "role": "admins"},
]}


#: the header by which a test names the roles of its caller (see :class:`TokenApi`)
ROLES_HEADER = "X-Test-Roles"


class TokenApi(Api):
    """A client that acts as a caller with the roles a test names in ``X-Test-Roles``
    (none named: a user without roles; no header: anonymous) by sending a real bearer
    token with those roles (control scope), made once per set of roles."""

    def __init__(self, root: str, db: Database, connector: DataConnector,
                 auth: AuthService) -> None:
        super().__init__(root, db, connector)
        self.auth = auth
        self._tokens: dict[frozenset[str], str] = {}

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      **kw: Any) -> Reply:
        headers = dict(headers or {})
        named = headers.pop(ROLES_HEADER, None)
        if named is not None:
            roles = frozenset(r for r in named.split(",") if r)
            if roles not in self._tokens:
                assert self.auth.tokens is not None
                self._tokens[roles], _ = await self.auth.tokens.create(
                    {"username": "tester", "email": "tester@example.org"},
                    roles=sorted(roles), scope="control")
            headers["Authorization"] = f"Bearer {self._tokens[roles]}"
        return await super().request(method, path, headers=headers, **kw)


def serve(path: str, authz: dict[str, Any], **config: Any) -> Iterator[Api]:
    """A demo server with ``authz`` rules (and a message queue), until closed; ``path``
    is an SQLite file or a database URL."""
    from buildbot_rest.www import WebApp
    db = Database(path if "://" in path else f"sqlite:///{path}", pool_size=4)
    db.prepare_sync()
    with db.engine.connect() as conn:
        empty = conn.execute(sa.text("select count(*) from builds")).scalar() == 0
    if empty:
        demo.populate(db.engine, builds=30, seed=1)
    db.start()
    cfg = Config(authz=authz, forceschedulers=FORCE, **config)
    connector = DataConnector(db, base_url="http://testserver/", config=cfg, mq=SimpleMQ())
    auth = AuthService(cfg, db)
    site = Site(WebApp(connector, auth=auth).resource())
    port = pytest_twisted.blockon(
        endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site))
    try:
        yield TokenApi(f"http://127.0.0.1:{port.getHost().port}/", db, connector, auth)
    finally:
        pytest_twisted.blockon(port.stopListening())
        db.stop()


def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             name: str) -> str:
    """For a fixture parametrized by backend: a new SQLite file or PostgreSQL database
    (builder lookups and the collections' builderid filter run in SQL)."""
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp(name) / "demo.sqlite")
    return str(request.getfixturevalue("pg_databases").create())


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from serve(database(request, tmp_path_factory, "authz"), RULES)


def roles(*names: str) -> dict[str, str]:
    return {ROLES_HEADER: ",".join(names) or ","}


def secret_build(api: Api) -> dict[str, Any]:
    """A finished build of SECRET with a step and a log."""
    b, st, lg = s.builds, s.steps, s.logs
    (row,) = api.rows(
        sa.select(b.c.id, b.c.number, b.c.buildrequestid, st.c.id, st.c.name, lg.c.id,
                  lg.c.slug, s.builders.c.id)
        .select_from(b.join(s.builders, s.builders.c.id == b.c.builderid)
                     .join(st, st.c.buildid == b.c.id).join(lg, lg.c.stepid == st.c.id))
        .where(s.builders.c.name == SECRET).limit(1))
    keys = ("buildid", "number", "buildrequestid", "stepid", "step_name", "logid", "slug",
            "builderid")
    return dict(zip(keys, row, strict=True))


@pytest_twisted.ensureDeferred
async def test_collections_hide_the_secret_builder(server: Api) -> None:
    build = secret_build(server)
    everything = (await server.get("builds", headers=roles("secret"))).json
    visible = (await server.get("builds")).json
    assert visible["meta"]["total"] < everything["meta"]["total"]
    assert all(b["builderid"] != build["builderid"] for b in visible["builds"])
    # field selection, paging and HEAD do not defeat the filter
    numbers = (await server.get("builds?field=buildid&limit=100")).json
    assert {b["buildid"] for b in numbers["builds"]} == {b["buildid"] for b in visible["builds"]}
    paged = (await server.get("builds?limit=2&offset=1&order=-buildid")).json
    assert paged["meta"]["total"] == visible["meta"]["total"]
    for path in ("buildrequests", "test_result_sets", "workers/1/builds"):
        items = (await server.get(path)).json
        key = path.rsplit("/", 1)[-1]
        assert all(i["builderid"] != build["builderid"] for i in items[key]), path
    assert (await server.get(f"builders/{build['builderid']}/builds")).code == 403
    assert (await server.get(f"builders/{SECRET}/builds", headers=roles("secret"))).code == 200
    assert (await server.get(f"builders/{build['builderid']}")).code == 200  # not build data


@pytest_twisted.ensureDeferred
async def test_head_is_a_read(server: Api) -> None:
    build = secret_build(server)
    assert (await server.request("HEAD", "api/v2/masters")).code == 200
    assert (await server.request("HEAD", f"api/v2/builds/{build['buildid']}")).code == 403
    assert (await server.request("HEAD", f"api/v2/builds/{build['buildid']}",
                                 headers=roles("secret"))).code == 200
