"""Authorization of live events over a real port: /ws with autobahn's client and /sse
streams, an :class:`~buildbot_rest.auth.service.AuthService` configured through
``Config(authz=..., allowed_origins=...)``, callers identified by real bearer tokens
(``Authorization: Bearer``, on /ws a header of the upgrade), events made by update
methods and control actions, on both backends.

What is shown: ``control/...`` keys only for callers who may control (COMPAT 19, 20);
view rules hide every event of a hidden builder's builds, steps, logs and build
requests from a client without the role (live, and when resuming with ``since`` or
``Last-Event-ID``) while it still gets those of the other builders, and a client with
the role gets all; a subscription to one hidden build's path gets nothing of it; /ws
takes pages of the configured origins only."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import defer, endpoints, reactor
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.mq import SimpleMQ
from buildbot_rest.www import WebApp
from tests.www.conftest import Api
from tests.www.test_authz_http import BACKENDS, database
from tests.www.test_control_builds import _running_build
from tests.www.test_disconnect import until
from tests.www.test_sse import open_stream
from tests.www.test_ws import UPGRADE, Client, closed, connect

#: the builder whose builds only the role "secret" may see
SECRET = "linux-py311"
#: another builder, whose builds everyone sees
OTHER = "macos-py311"
RULES = {"allow": [
    {"match": "view", "builder": SECRET, "role": "secret"},
    {"match": "any_control", "role": "admins"},
]}
ORIGIN = "https://dashboard.example.org"
#: the paths every watcher consumes
PATHS = ("builds/*/*", "builders/*/builds/*/*", "steps/*/*", "logs/*/*",
         "buildrequests/*/*", "test_result_sets/*/*")


@dataclass
class Server:
    """A demo server with authz: its client, auth service, and one bearer token per
    kind of caller."""

    api: Api
    auth: AuthService
    web: WebApp
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.api.root.rsplit(":", 1)[1].rstrip("/"))

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def builderid(self, name: str) -> int:
        return int(self.api.rows(sa.select(s.builders.c.id)
                                 .where(s.builders.c.name == name))[0][0])

    def masterid(self) -> int:
        return int(self.api.rows(sa.select(sa.func.min(s.masters.c.id))
                                 .where(s.masters.c.active == 1))[0][0])


def serve_with_auth(path: str, authz: dict[str, Any], **options: Any) -> Iterator[Server]:
    """A writable demo server at ``path`` (an SQLite file or a database URL) with a
    real AuthService and ``authz``, and tokens: "anonymous" has none, "reader" (no
    role), "secret" (role secret, read scope), "admin" (roles admins and secret,
    control scope), "readadmin" (role admins, read scope), "controller" (role admins,
    control scope)."""
    db = Database(path if "://" in path else f"sqlite:///{path}", pool_size=4)
    db.prepare_sync()
    with db.engine.connect() as conn:
        empty = conn.execute(sa.text("select count(*) from builds")).scalar() == 0
    if empty:
        demo.populate(db.engine, builds=30, seed=1)
    db.start()
    cfg = Config(authz=authz, ping_interval=0, resume_window=500, **options)
    connector = DataConnector(db, base_url="http://testserver/", config=cfg, mq=SimpleMQ())
    auth = AuthService(cfg, db)
    web = WebApp(connector, auth=auth)
    port = pytest_twisted.blockon(endpoints.serverFromString(
        reactor, "tcp:0:interface=127.0.0.1").listen(Site(web.resource())))
    assert auth.tokens is not None
    server = Server(Api(f"http://127.0.0.1:{port.getHost().port}/", db, connector), auth, web)
    for who, roles, scope in (("reader", [], "read"), ("secret", ["secret"], "read"),
                              ("admin", ["admins", "secret"], "control"),
                              ("readadmin", ["admins"], "read"),
                              ("controller", ["admins"], "control")):
        server.tokens[who] = auth.tokens.create_sync({"username": who}, roles=roles,
                                                     scope=scope)[0]
    try:
        yield server
    finally:
        pytest_twisted.blockon(port.stopListening())
        assert web.live is not None
        pytest_twisted.blockon(web.live.stopService())
        pytest_twisted.blockon(defer.ensureDeferred(auth.tokens.settle()))
        db.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = database(request, tmp_path_factory, "live")
    yield from serve_with_auth(url, RULES, allowed_origins=[ORIGIN])


async def ws(server: Server, who: str | None = None, **options: Any) -> Client:
    if who is not None:
        options["headers"] = {**options.get("headers", {}), **server.bearer(who)}
    return await connect(server.port, **options)


@contextlib.asynccontextmanager
async def opened(*clients: Client) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            await closed(client)


# -- what a hidden build is ----------------------------------------------------------------

@dataclass
class Made:
    """The ids of what was made for one builder: builds, their steps and logs, build
    requests, test result sets."""

    builderid: int
    ids: dict[str, set[str]] = field(default_factory=lambda: {
        "builds": set(), "steps": set(), "logs": set(), "buildrequests": set(),
        "test_result_sets": set()})

    def owns(self, key: list[str] | tuple[str, ...]) -> bool:
        """Whether a routing key is about this builder's data."""
        if key[0] == "builders":
            return key[1] == str(self.builderid)
        if key[0] == "buildsets" and len(key) > 3:
            return key[3] == str(self.builderid)
        if key[0] == "workers" and len(key) > 3:
            return key[3] in self.ids["builds"]
        return key[1] in self.ids.get(key[0], set())


async def make(server: Server, builderid: int) -> Made:
    """A build of ``builderid`` with steps and logs (update methods), finished, a test
    result set, and a build request cancelled by an admin (a control action)."""
    made = Made(builderid)
    api = server.api
    build = await _running_build(api, server.masterid(), builderid)
    made.ids["builds"].add(str(build["buildid"]))
    made.ids["buildrequests"].add(str(build["brid"]))
    made.ids["steps"].update(str(i) for i in build["steps"])
    made.ids["logs"].update(str(build[k]) for k in ("open_log", "closed_log"))
    updates = api.connector.updates
    await updates.appendLog(build["open_log"], "hello\n")
    await updates.finishLog(build["open_log"])
    trs = await updates.addTestResultSet(builderid, build["buildid"], build["steps"][1],
                                         "unit", "pass_fail", "boolean")
    made.ids["test_result_sets"].add(str(trs))
    await updates.finishStep(build["steps"][1], 0, False)
    await updates.finishBuild(build["buildid"], 0)
    _, brids = await updates.addBuildset(
        waited_for=False, scheduler="test", reason="live", builderids=[builderid],
        sourcestamps=[{"branch": "main", "revision": "r1", "repository": "https://r",
                       "project": "p", "codebase": ""}])
    made.ids["buildrequests"].add(str(brids[builderid]))
    reply = await api.rpc(f"buildrequests/{brids[builderid]}", "cancel",
                          {"reason": "not needed"}, headers=server.bearer("admin"))
    assert reply.code == 200, reply.body
    return made


async def make_both(server: Server) -> tuple[Made, Made]:
    """The secret builder's things, then the other's (the last event is the other's
    build request's cancel: clients have everything once they have it)."""
    hidden = await make(server, server.builderid(SECRET))
    shown = await make(server, server.builderid(OTHER))
    return hidden, shown


def last_key(shown: Made) -> str:
    (brid,) = sorted(shown.ids["buildrequests"], key=int)[-1:]
    return f"buildrequests/{brid}/cancel"


def check(keys: list[str], full: list[str], hidden: Made, shown: Made) -> None:
    """``keys`` (what a client without the role got) hold nothing of ``hidden`` and
    exactly what ``full`` (a client with the role, same paths) holds of the rest."""
    split = [k.split("/") for k in keys]
    assert not [k for k in split if hidden.owns(k)], "hidden events were sent"
    assert any(hidden.owns(k.split("/")) for k in full), "the test made no hidden event"
    assert keys == [k for k in full if not hidden.owns(k.split("/"))]
    assert any(shown.owns(k) for k in split)


# -- control keys (COMPAT 19, 20) ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_control_keys_over_ws_need_a_control_role(server: Server) -> None:
    anonymous, reader, readadmin = await ws(server), await ws(server, "reader"), await ws(
        server, "readadmin")
    admin = await ws(server, "admin")
    async with opened(anonymous, reader, readadmin, admin):
        for client in (anonymous, reader, readadmin):
            for path in ("control/builds/*/stop", "*/builds/*/stop", "control/*/*/*",
                         "*/*/*/*"):
                assert await client.consume(path, _id=path) == {
                    "error": f"not allowed to consume '{path}'", "code": 403, "_id": path}
        for path in ("control/builds/*/stop", "*/*/*/*"):
            assert (await admin.consume(path))["msg"] == "OK"
        build = await _running_build(server.api, server.masterid(), server.builderid(OTHER))
        reply = await server.api.rpc(f"builds/{build['buildid']}", "stop", {"reason": "x"},
                                     headers=server.bearer("admin"))
        assert reply.code == 200
        key = f"control/builds/{build['buildid']}/stop"
        await until(lambda: any(e["k"] == key for e in admin.events()), "the control event")
        for client in (anonymous, reader, readadmin):
            await client.synced()
            assert client.events() == []


@pytest_twisted.ensureDeferred
async def test_control_keys_of_a_hidden_build_are_filtered(server: Server) -> None:
    """A caller who may control but not see a builder gets no control message of its
    builds (the stop's reason is the build's data), and those of the others."""
    controller, admin = await ws(server, "controller"), await ws(server, "admin")
    async with opened(controller, admin):
        for client in (controller, admin):
            assert (await client.consume("control/builds/*/stop"))["msg"] == "OK"
        ids = []
        for name in (SECRET, OTHER):
            build = await _running_build(server.api, server.masterid(),
                                         server.builderid(name))
            ids.append(build["buildid"])
            reply = await server.api.rpc(f"builds/{build['buildid']}", "stop",
                                         {"reason": f"stop {name}"},
                                         headers=server.bearer("admin"))
            assert reply.code == 200
        keys = [f"control/builds/{i}/stop" for i in ids]
        await until(lambda: [e["k"] for e in admin.events()] == keys, "both stops")
        await until(lambda: controller.events() != [], "the other's stop")
        await controller.synced()
        assert [e["k"] for e in controller.events()] == keys[1:]


@pytest_twisted.ensureDeferred
async def test_control_keys_over_sse_need_a_control_role(server: Server) -> None:
    for who in (None, "reader", "readadmin"):
        headers = server.bearer(who) if who else {}
        for path in ("/sse/control/builds/*/stop", "/sse/listen/*/builds/*/stop",
                     "/sse/listen/control/*/*/*"):
            reply = await server.api.get(path, headers=headers)
            assert reply.code == 403, (who, path)
            assert "not allowed to receive the events of" in reply.json["error"]
    stream = await open_stream(server.port, "/sse/control/builds/*/stop", server.bearer("admin"))
    try:
        build = await _running_build(server.api, server.masterid(), server.builderid(OTHER))
        assert (await server.api.rpc(f"builds/{build['buildid']}", "stop", {},
                                     headers=server.bearer("admin"))).code == 200
        [(_, key, _)] = await stream.wait(1)
        assert key == ["control", "builds", str(build["buildid"]), "stop"]
        # adding a control path to an open stream is authorized the same way
        anonymous = await open_stream(server.port, "/sse/builds/*/new")
        try:
            reply = await server.api.get(f"/sse/add/{anonymous.uuid}/control/worker/1/stop")
            assert reply.code == 403
        finally:
            anonymous.close()
    finally:
        stream.close()


@pytest_twisted.ensureDeferred
async def test_a_bad_token_is_401_on_ws_and_sse(server: Server) -> None:
    bad = {"Authorization": "Bearer bbrest_1_nottherealsecret"}
    response = await treq.get(f"http://127.0.0.1:{server.port}/ws", persistent=False,
                              headers=Headers({k: [v] for k, v in {**UPGRADE, **bad}.items()}))
    assert response.code == 401
    assert response.headers.getRawHeaders("www-authenticate")[0].startswith("Bearer")
    assert "error" in json.loads(await response.content())
    reply = await server.api.get("/sse/builds/*/new", headers=bad)
    assert reply.code == 401
    assert (reply.header("www-authenticate") or "").startswith("Bearer")


# -- view rules ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_view_rules_filter_ws_events(server: Server) -> None:
    anonymous, reader, secret = await ws(server), await ws(server, "reader"), await ws(
        server, "secret")
    # a client per path, alone on its path: it learns nothing from the others
    single = {path: await ws(server) for path in PATHS}
    async with opened(anonymous, reader, secret, *single.values()):
        for client in (anonymous, reader, secret):
            for path in PATHS:
                assert (await client.consume(path))["msg"] == "OK"
        for path, client in single.items():
            assert (await client.consume(path))["msg"] == "OK"
        hidden, shown = await make_both(server)
        last = last_key(shown)
        await until(lambda: any(e["k"] == last for e in secret.events()), "the last event")
        for client in (anonymous, reader, *single.values()):
            await client.synced()
        full = [e["k"] for e in secret.events()]
        for client in (anonymous, reader):
            check([e["k"] for e in client.events()], full, hidden, shown)
        for path, client in single.items():
            wanted = [k for k in full if _matches(path, k)]
            check([e["k"] for e in client.events()], wanted, hidden, shown)


def _matches(path: str, key: str) -> bool:
    p, k = path.split("/"), key.split("/")
    return len(p) == len(k) and all(a in ("*", b) for a, b in zip(p, k, strict=True))


@pytest_twisted.ensureDeferred
async def test_view_rules_filter_sse_events(server: Server) -> None:
    anonymous = await open_stream(server.port, "/sse/steps/*/*")
    secret = await open_stream(server.port, "/sse/steps/*/*", server.bearer("secret"))
    streams = [anonymous, secret]
    try:
        for stream, headers in ((anonymous, {}), (secret, server.bearer("secret"))):
            for path in PATHS:
                if path != "steps/*/*":
                    reply = await server.api.get(f"/sse/add/{stream.uuid}/{path}",
                                                 headers=headers)
                    assert reply.code == 200, reply.body
        hidden, shown = await make_both(server)
        last = last_key(shown)
        await until(lambda: any("/".join(k) == last for _, k, _ in secret.events()),
                    "the last event")
        await until(lambda: any("/".join(k) == last for _, k, _ in anonymous.events()),
                    "the last event (anonymous)")
        check(["/".join(k) for _, k, _ in anonymous.events()],
              ["/".join(k) for _, k, _ in secret.events()], hidden, shown)
    finally:
        for stream in streams:
            stream.close()


@pytest_twisted.ensureDeferred
async def test_resume_is_filtered_too(server: Server) -> None:
    """/ws ``since`` and /sse ``Last-Event-ID`` give the missed events through the same
    filter."""
    marker = await ws(server, "secret")
    async with opened(marker):
        assert (await marker.consume("builds/*/*"))["msg"] == "OK"
        build = await _running_build(server.api, server.masterid(), server.builderid(OTHER))
        await until(lambda: marker.events() != [], "an event")
        since = marker.events()[-1]["s"]
        assert build
        hidden, shown = await make_both(server)
        last = last_key(shown)
        secret, anonymous = await ws(server, "secret"), await ws(server)
        async with opened(secret, anonymous):
            for client in (secret, anonymous):
                for path in PATHS:
                    assert (await client.consume(path, since=since))["msg"] == "OK"
                await client.synced()
            assert any(e["k"] == last for e in secret.events())
            full = [e["k"] for e in sorted(secret.events(), key=lambda e: e["s"])]
            check([e["k"] for e in sorted(anonymous.events(), key=lambda e: e["s"])], full,
                  hidden, shown)
        for who in (None, "secret"):
            headers = {"Last-Event-ID": str(since), **(server.bearer(who) if who else {})}
            stream = await open_stream(server.port, "/sse/logs/*/*", headers)
            wanted = [k for k in full if _matches("logs/*/*", k)
                      and (who is not None or not hidden.owns(k.split("/")))]
            try:
                await stream.wait(len(wanted), "the missed events")
                assert ["/".join(k) for _, k, _ in stream.events()] == wanted
                assert [k for k in wanted if shown.owns(k.split("/"))]
                assert (who is None) != any(hidden.owns(k.split("/")) for k in wanted)
            finally:
                stream.close()


@pytest_twisted.ensureDeferred
async def test_a_hidden_builds_own_paths_give_nothing(server: Server) -> None:
    """Subscribing to a hidden build's own keys is accepted (a subscription is not a
    read: the events are filtered one by one), and nothing of it arrives; the same
    paths for a build of another builder give its events."""
    build = await _running_build(server.api, server.masterid(), server.builderid(SECRET))
    other = await _running_build(server.api, server.masterid(), server.builderid(OTHER))
    secret_id, number = build["buildid"], build["number"]
    paths = [f"builds/{secret_id}/*", f"builders/{build['builderid']}/builds/{number}/*",
             f"steps/{build['steps'][1]}/*", f"logs/{build['open_log']}/*",
             f"builds/{secret_id}/steps/*/*", f"steps/{build['steps'][1]}/logs/*/*"]
    anonymous, secret = await ws(server), await ws(server, "secret")
    stream = await open_stream(server.port, "/sse/" + paths[0])
    async with opened(anonymous, secret):
        try:
            for client in (anonymous, secret):
                for path in (*paths, f"builds/{other['buildid']}/*"):
                    assert (await client.consume(path))["msg"] == "OK"
            for path in (*paths[1:], f"builds/{other['buildid']}/*"):
                assert (await server.api.get(f"/sse/add/{stream.uuid}/{path}")).code == 200
            updates = server.api.connector.updates
            await updates.appendLog(build["open_log"], "secret\n")
            await updates.finishLog(build["open_log"])
            await updates.finishStep(build["steps"][1], 0, False)
            await updates.finishBuild(secret_id, 0)
            await updates.finishBuild(other["buildid"], 0)
            done = f"builds/{other['buildid']}/finished"
            await until(lambda: any(e["k"] == done for e in secret.events()), "the events")
            await until(lambda: any(e["k"] == done for e in anonymous.events()),
                        "the other build's events")
            assert len(secret.events()) > 3
            assert [e["k"] for e in anonymous.events()] == [
                f"builds/{other['buildid']}/finished"]
            await stream.wait(1, "the other build's event")
            assert [key for _, key, _ in stream.events()] == [
                ["builds", str(other["buildid"]), "finished"]]
        finally:
            stream.close()


# -- the origin of /ws -----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_ws_takes_configured_origins_only(server: Server) -> None:
    for origin in (ORIGIN, f"http://127.0.0.1:{server.port}"):
        client = await ws(server, "secret", origin=origin)
        await client.synced()
        await closed(client)
    for origin in ("https://evil.example", "https://dashboard.example.org.evil.example",
                   "null", "http://testserver.evil"):
        response = await treq.get(
            f"http://127.0.0.1:{server.port}/ws", persistent=False,
            headers=Headers({**{k: [v] for k, v in UPGRADE.items()},
                             **{k: [v] for k, v in server.bearer("admin").items()},
                             "Origin": [origin]}))
        assert response.code == 403, origin
        assert "another site" in json.loads(await response.content())["error"]


# -- CORS over HTTP (COMPAT 35) ------------------------------------------------------------------

def _vary(reply: Any) -> set[str]:
    return {v.strip().lower() for line in reply.headers.getRawHeaders("vary") or []
            for v in line.split(",")}


@pytest.mark.parametrize("coding", [None, "gzip"])
@pytest_twisted.ensureDeferred
async def test_cors_vary_and_credentials_on_get(server: Server, coding: str | None) -> None:
    compressed = {"Accept-Encoding": coding} if coding else {}
    for origin, credentials in ((ORIGIN, True), (f"http://127.0.0.1:{server.port}", False),
                                (None, False)):
        headers = {**compressed, **({"Origin": origin} if origin else {})}
        reply = await server.api.get("builders", headers=headers, raw=True)
        assert reply.code == 200
        assert {"origin", "accept-encoding"} <= _vary(reply), reply.headers
        assert reply.header("content-encoding") == coding
        assert reply.header("access-control-allow-origin") == origin
        assert reply.header("access-control-allow-credentials") == (
            "true" if credentials else None)
    # a bearer token from a configured origin's page reads what the token may
    hidden = server.api.rows(sa.select(sa.func.max(s.builds.c.id)).where(
        s.builds.c.builderid == server.builderid(SECRET)))[0][0]
    reply = await server.api.get(f"builds/{hidden}", raw=True,
                                 headers={**compressed, "Origin": ORIGIN,
                                          **server.bearer("secret")})
    assert reply.code == 200
    assert reply.header("access-control-allow-credentials") == "true"
    # a refusal of the rules is CORS-tagged too, so that the page can read the 403
    reply = await server.api.get(f"builds/{hidden}", raw=True,
                                 headers={**compressed, "Origin": ORIGIN})
    assert reply.code == 403
    assert "origin" in _vary(reply)
    assert reply.header("access-control-allow-origin") == ORIGIN


@pytest_twisted.ensureDeferred
async def test_cors_preflight_allows_authorization(server: Server) -> None:
    for method in ("GET", "POST", "HEAD"):
        reply = await server.api.request("OPTIONS", "api/v2/builds/1", raw=True, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert (reply.code, reply.body) == (200, b"")
        assert reply.header("access-control-allow-origin") == ORIGIN
        assert reply.header("access-control-allow-credentials") == "true"
        allowed = {h.strip().lower() for h in
                   (reply.header("access-control-allow-headers") or "").split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "origin" in _vary(reply)
    # the server's own origin: no credentials (it needs no CORS for them)
    reply = await server.api.request("OPTIONS", "api/v2/builds", raw=True, headers={
        "Origin": f"http://127.0.0.1:{server.port}", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization"})
    assert reply.code == 200
    assert reply.header("access-control-allow-credentials") is None


@pytest.mark.parametrize("origin", ["https://evil.example", "https://dashboard.example.org:8443",
                                    "http://dashboard.example.org", "null",
                                    "https://dashboard.example.org.evil.example"])
@pytest_twisted.ensureDeferred
async def test_cors_refuses_other_origins(server: Server, origin: str) -> None:
    seen = server.api.record("control", None, None, None)
    build = server.api.rows(sa.select(sa.func.max(s.builds.c.id)))[0][0]
    get = await server.api.get("builders", raw=True,
                               headers={"Origin": origin, **server.bearer("admin")})
    assert (get.code, json.loads(get.body)) == (400, {"error": "invalid origin"})
    assert "origin" in _vary(get)
    assert get.header("access-control-allow-origin") is None
    assert get.header("access-control-allow-credentials") is None
    post = await server.api.rpc(f"builds/{build}", "stop", {"reason": "csrf"},
                                headers={"Origin": origin, **server.bearer("admin")})
    assert (post.code, post.json) == (400, {"error": {"message": "invalid origin"}})
    assert seen == []
    preflight = await server.api.request("OPTIONS", "api/v2/builds", raw=True, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization"})
    assert preflight.code == 400
    assert preflight.header("access-control-allow-headers") is None


@pytest_twisted.ensureDeferred
async def test_cors_preflight_of_another_method_is_refused(server: Server) -> None:
    reply = await server.api.request("OPTIONS", "api/v2/builds", raw=True, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    assert (reply.code, json.loads(reply.body)) == (400, {"error": "invalid method"})
