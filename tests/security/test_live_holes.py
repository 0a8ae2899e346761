"""Attacks on authorization, each shown to fail over a real server with real bearer
tokens: other spellings of a hidden build's paths (singular aliases, ``/api/latest``,
percent-encoded segments, trailing and doubled slashes, HEAD, names in place of ids),
query tricks on collections (filters, ``field=``, ``property=``, ordering and paging to
infer hidden builds from ``meta.total`` or ``Link``), control actions by every path, and
a live client alone on one path of a fresh server (it must still get the events of the
builders it may see, and none of the others)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.www.test_authz_http import BACKENDS, database
from tests.www.test_authz_live import OTHER, SECRET, Server, serve_with_auth, ws
from tests.www.test_control_builds import _running_build
from tests.www.test_disconnect import until
from tests.www.test_ws import closed

RULES = {"allow": [
    {"match": "view", "builder": SECRET, "role": "secret"},
    {"match": "stop", "builder": SECRET, "role": "secret"},
    {"match": "any_control", "role": "admins"},
]}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = database(request, tmp_path_factory, "liveholes")
    yield from serve_with_auth(url, RULES)


def hidden_build(server: Server) -> dict[str, Any]:
    b, st, lg = s.builds, s.steps, s.logs
    (row,) = server.api.rows(
        sa.select(b.c.id, b.c.number, st.c.id, st.c.number, st.c.name, lg.c.id, lg.c.slug)
        .select_from(b.join(st, st.c.buildid == b.c.id).join(lg, lg.c.stepid == st.c.id))
        .where(b.c.builderid == server.builderid(SECRET)).order_by(b.c.id).limit(1))
    keys = ("buildid", "number", "stepid", "step_number", "step_name", "logid", "slug")
    return dict(zip(keys, row, strict=True))


def spellings(server: Server, b: dict[str, Any]) -> list[str]:
    """Paths below the server's root to a hidden build's data, none of them the plain
    one."""
    bid, num, name = server.builderid(SECRET), b["number"], SECRET
    enc = "".join(f"%{ord(c):02X}" for c in name)
    return [
        f"api/v2/build/{b['buildid']}", f"api/latest/builds/{b['buildid']}",
        f"api/latest/build/{b['buildid']}", f"api/v2/builds/{b['buildid']}/",
        f"api/v2//builds/{b['buildid']}", f"api/v2/b%75ilds/{b['buildid']}",
        f"api/v2/builds/%3{str(b['buildid'])[0]}{str(b['buildid'])[1:]}",
        f"api/v2/builder/{bid}/builds/{num}", f"api/v2/builder/{name}/builds/{num}",
        f"api/v2/builders/{enc}/builds/{num}", f"api/v2/builder/{enc}/builds",
        f"api/v2/builders/{bid}/builds/{num}/", f"api/v2/builders/{bid}/builds",
        f"api/v2/builder/{bid}/buildrequests", f"api/v2/builders/{name}/test_result_sets",
        f"api/v2/step/{b['stepid']}", f"api/v2/log/{b['logid']}/raw",
        f"api/latest/logs/{b['logid']}/contents",
        f"api/v2/build/{b['buildid']}/steps/{b['step_number']}/logs/{b['slug']}/raw_inline",
        f"api/v2/builder/{name}/builds/{num}/steps/{b['step_name']}/logs/{b['slug']}",
        f"api/v2/builds/{b['buildid']}/steps/{b['step_name']}/logs/{b['slug']}/contents"
        f"?offset=0&limit=1",
        f"api/v2/builds/{b['buildid']}/data", f"api/v2/build/{b['buildid']}/properties",
        f"api/v2/builds/{b['buildid']}/property_list?field=name",
        f"api/v2/builds/{b['buildid']}/changes", f"api/v2/builds/{b['buildid']}/steps?limit=1",
    ]


@pytest_twisted.ensureDeferred
async def test_every_spelling_of_a_hidden_builds_path(server: Server) -> None:
    """Each is 403 to callers without the role where it answers the data (200) to one
    with it; a spelling that is no path (a trailing or doubled slash) is the same 404
    for everyone."""
    b = hidden_build(server)
    answered = []
    for path in spellings(server, b):
        for method in ("GET", "HEAD"):
            allowed = await server.api.request(method, path, headers=server.bearer("secret"))
            assert allowed.code in (200, 404), (method, path, allowed.code)
            if allowed.code == 200:
                answered.append(path)
            for who in (None, "reader", "controller"):
                headers = server.bearer(who) if who else {}
                reply = await server.api.request(method, path, headers=headers)
                wanted = 403 if allowed.code == 200 else 404
                assert reply.code == wanted, (method, path, who, reply.code, reply.body[:200])
                assert method == "HEAD" or SECRET not in reply.body.decode()
    assert len(answered) == 2 * (len(spellings(server, b)) - 3)


@pytest_twisted.ensureDeferred
async def test_query_tricks_on_collections(server: Server) -> None:
    hidden_id = server.builderid(SECRET)
    reader, secret = server.bearer("reader"), server.bearer("secret")
    visible = (await server.api.get("builds?field=buildid", headers=reader)).json
    full = (await server.api.get("builds?field=buildid", headers=secret)).json
    assert visible["meta"]["total"] < full["meta"]["total"]
    n = visible["meta"]["total"]
    for query in (f"builderid={hidden_id}", f"builderid__eq={hidden_id}",
                  f"builderid__ne=0&builderid={hidden_id}",
                  f"builderid__in={hidden_id}&builderid__in=0",
                  f"builderid__le={hidden_id}&builderid__ge={hidden_id}",
                  f"builderid__notin=0&builderid={hidden_id}"):
        for path in ("builds", "buildrequests", "test_result_sets"):
            reply = await server.api.get(f"{path}?{query}", headers=reader)
            assert reply.code == 200, (path, query, reply.body)
            assert reply.json[path] == [] and reply.json["meta"]["total"] == 0, (path, query)
    # field selection leaving out builderid, properties, ordering and paging: the
    # hidden builds are not counted, listed or linked
    for query in ("field=number", "field=buildid&field=complete", "property=*",
                  "property=owner&field=buildid", "order=builderid", "order=-builderid",
                  "order=-buildid&limit=1", "limit=1&offset=0", f"limit=1&offset={n - 1}",
                  f"limit=5&offset={n}", "builderid__ne=-1"):
        reply = await server.api.get(f"builds?{query}", headers=reader)
        assert reply.code == 200, (query, reply.body)
        body = reply.json
        assert body["meta"]["total"] == n, query
        assert all(item.get("builderid", 0) != hidden_id for item in body["builds"]), query
        hidden_numbers = {row[0] for row in server.api.rows(
            sa.select(s.builds.c.id).where(s.builds.c.builderid == hidden_id))}
        assert not [i for i in body["builds"] if i.get("buildid") in hidden_numbers], query
        offsets = [int(o) for o in re.findall(r"offset=(\d+)", reply.header("link") or "")]
        assert all(o < n for o in offsets), (query, reply.header("link"))
    empty = await server.api.get(f"builds?limit=1&offset={n}", headers=reader)
    assert empty.json["builds"] == [] and empty.json["meta"]["total"] == n
    # collections under entities that do not name the builder are narrowed too
    worker = server.api.rows(sa.select(s.builds.c.workerid).where(
        s.builds.c.builderid == hidden_id, s.builds.c.workerid.is_not(None)).limit(1))
    if worker:
        for path in (f"workers/{worker[0][0]}/builds", f"worker/{worker[0][0]}/builds"):
            reply = await server.api.get(f"{path}?field=builderid", headers=reader)
            assert reply.code == 200
            assert all(i["builderid"] != hidden_id for i in reply.json["builds"]), path
    else:  # (the demo data gives every build a worker)
        pytest.fail("no build of the hidden builder has a worker")


@pytest_twisted.ensureDeferred
async def test_control_by_every_path_of_a_hidden_build(server: Server) -> None:
    """``stop`` of a SECRET build needs "secret" (the first rule that matches); admins
    may rebuild and stop the others."""
    seen = server.api.record("control", None, None, None)
    build = await _running_build(server.api, server.masterid(), server.builderid(SECRET))
    bid, num = server.builderid(SECRET), build["number"]
    paths = [f"builds/{build['buildid']}", f"build/{build['buildid']}",
             f"builders/{bid}/builds/{num}", f"builder/{SECRET}/builds/{num}",
             f"builders/{SECRET}/builds/{num}", f"b%75ilds/{build['buildid']}"]
    for path in paths:
        for who in (None, "reader", "controller", "secret"):
            headers = server.bearer(who) if who else {}
            reply = await server.api.rpc(path, "stop", {"reason": "x"}, headers=headers)
            assert reply.code == 403, (path, who, reply.body)
    assert seen == []
    for latest in ("api/latest/builds", "api/latest/build"):
        reply = await server.api.request(
            "POST", f"{latest}/{build['buildid']}", data=b'{"jsonrpc": "2.0", "id": 1, '
            b'"method": "stop", "params": {}}', headers={
                "Content-Type": "application/json", **server.bearer("controller")})
        assert reply.code == 403, (latest, reply.body)
    assert seen == []
    other = await _running_build(server.api, server.masterid(), server.builderid(OTHER))
    reply = await server.api.rpc(f"builder/{OTHER}/builds/{other['number']}", "stop", {},
                                 headers=server.bearer("controller"))
    assert reply.code == 200
    # a read-only token may run nothing, whatever its roles
    reply = await server.api.rpc(f"builds/{other['buildid']}", "stop", {},
                                 headers=server.bearer("readadmin"))
    assert reply.code == 403
    assert [k for k, _ in seen] == [("control", "builds", str(other["buildid"]), "stop")]


@pytest.fixture
def alone(tmp_path: Any) -> Iterator[Server]:
    """A fresh server (no live client has learnt anything on it yet)."""
    yield from serve_with_auth(f"sqlite:///{tmp_path / 'alone.sqlite'}", RULES)


@pytest_twisted.ensureDeferred
async def test_a_live_client_alone_on_one_path(alone: Server) -> None:
    """A client subscribed to ``steps/*/*`` only, on a server where no other client
    takes builds' events: the steps of a build started after it connected (whose build
    event it never took) still reach it when the builder is visible, and never when it
    is hidden."""
    server = alone
    if True:
        client = await ws(server)
        try:
            for path in ("steps/*/*", "logs/*/*"):
                assert (await client.consume(path))["msg"] == "OK"
            hidden = await _running_build(server.api, server.masterid(),
                                          server.builderid(SECRET))
            shown = await _running_build(server.api, server.masterid(),
                                         server.builderid(OTHER))
            key = f"logs/{shown['open_log']}/new"
            await until(lambda: any(e["k"] == key for e in client.events()),
                        "the visible build's last log")
            await client.synced()
            keys = [e["k"] for e in client.events()]
            assert keys == [
                f"steps/{shown['steps'][0]}/new", f"steps/{shown['steps'][0]}/started",
                f"steps/{shown['steps'][0]}/finished", f"steps/{shown['steps'][1]}/new",
                f"steps/{shown['steps'][1]}/started", f"logs/{shown['closed_log']}/new",
                f"logs/{shown['closed_log']}/finished", f"logs/{shown['open_log']}/new"]
            assert not {f"steps/{i}" for i in hidden["steps"]} & {
                k.rsplit("/", 1)[0] for k in keys}
        finally:
            await closed(client)
