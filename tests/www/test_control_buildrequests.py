"""The build request actions over JSON-RPC (``cancel``, ``set_priority``): what they
write, what they publish, and every error, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data.resources.buildrequests import OWN_MASTER_NAME
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server

br = s.buildrequests


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    for api, _ in own_server(request, tmp_path_factory, "ctlbr", lambda api: None,
                             writable=True):
        yield api


@pytest.fixture
def events(server: Api) -> Iterator[list[tuple[tuple[str, ...], Any]]]:
    """Every message published during the test, in order."""
    seen: list[tuple[tuple[str, ...], Any]] = []
    mq = server.mq
    assert mq is not None
    publish = mq.produce

    def produce(key: tuple[str, ...], message: Any) -> None:
        seen.append((tuple(key), message))
        publish(key, message)

    mq.produce = produce  # type: ignore[method-assign,assignment]
    yield seen
    mq.produce = publish  # type: ignore[method-assign]


def _builders(api: Api) -> list[int]:
    return [r[0] for r in api.rows(sa.select(s.builders.c.id).order_by(s.builders.c.id))]


async def new_requests(api: Api, n: int = 1) -> tuple[int, list[int]]:
    """A new buildset with ``n`` waiting requests: (bsid, brids)."""
    builderids = _builders(api)[:n]
    bsid, brids = await api.connector.updates.addBuildset(
        waited_for=False, scheduler="test", reason="test", builderids=builderids,
        sourcestamps=[{"branch": "main", "revision": "r1", "repository": "https://r",
                       "project": "p", "codebase": ""}])
    return bsid, [brids[b] for b in builderids]


def _keys(events: list[tuple[tuple[str, ...], Any]]) -> list[str]:
    return ["/".join(k) for k, _ in events]


# -- cancel --------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_cancel_a_waiting_request(server: Api,
                                        events: list[tuple[tuple[str, ...], Any]]) -> None:
    bsid, (brid,) = await new_requests(server)
    builderid = server.rows(sa.select(br.c.builderid).where(br.c.id == brid))[0][0]
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", {"reason": "not needed"})
    assert (reply.code, reply.json) == (200, {"jsonrpc": "2.0", "id": 1, "result": None})
    [(masterid,)] = server.rows(sa.select(s.masters.c.id)
                                .where(s.masters.c.name == OWN_MASTER_NAME))
    c = s.buildrequest_claims
    assert server.rows(sa.select(c.c.masterid).where(c.c.brid == brid)) == [(masterid,)]
    assert server.rows(sa.select(br.c.complete, br.c.results).where(br.c.id == brid)) == [
        (1, 6)]
    assert server.rows(sa.select(s.buildsets.c.complete, s.buildsets.c.results)
                       .where(s.buildsets.c.id == bsid)) == [(1, 6)]
    three = [f"buildsets/{bsid}/builders/{builderid}/buildrequests/{brid}",
             f"buildrequests/{brid}", f"builders/{builderid}/buildrequests/{brid}"]
    assert _keys(events) == [
        *(f"{k}/claimed" for k in three), *(f"{k}/complete" for k in three),
        f"buildsets/{bsid}/complete", f"buildrequests/{brid}/cancel"]
    now = (await server.get(f"buildrequests/{brid}")).json["buildrequests"][0]
    assert events[-1][1] == now == events[-3][1]
    assert (now["claimed"], now["complete"], now["results"]) == (True, True, 6)
    assert events[-2][1] == (await server.get(f"buildsets/{bsid}")).json["buildsets"][0]
    assert not [k for k in _keys(events) if k.startswith("control/")]


@pytest_twisted.ensureDeferred
async def test_cancel_the_last_waiting_request_of_a_buildset(
        server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    bsid, (r1, r2) = await new_requests(server, 2)
    await server.connector.updates.completeBuildRequests([r1], 0)
    events.clear()
    assert (await server.rpc(f"buildrequests/{r2}", "cancel", {})).code == 200
    assert f"buildsets/{bsid}/complete" in _keys(events)
    assert server.rows(sa.select(s.buildsets.c.results)
                       .where(s.buildsets.c.id == bsid)) == [(6,)]


@pytest_twisted.ensureDeferred
async def test_cancel_one_request_of_several_leaves_the_buildset(
        server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    bsid, (r1, r2) = await new_requests(server, 2)
    events.clear()
    assert (await server.rpc(f"buildrequests/{r1}", "cancel", {})).code == 200
    assert not [k for k in _keys(events) if k.startswith("buildsets/") and k.count("/") == 2]
    assert server.rows(sa.select(s.buildsets.c.complete)
                       .where(s.buildsets.c.id == bsid)) == [(0,)]
    assert server.rows(sa.select(br.c.complete).where(br.c.id == r2)) == [(0,)]


@pytest.mark.parametrize(("params", "reason"), [
    ({"reason": "stop it"}, "stop it"), ({}, "no reason"), ({"reason": None}, "no reason"),
    ({"reason": ""}, ""),  # kept, as upstream
])
@pytest_twisted.ensureDeferred
async def test_cancel_a_claimed_request_asks_its_master(
        server: Api, events: list[tuple[tuple[str, ...], Any]], params: dict[str, Any],
        reason: str) -> None:
    _, (brid,) = await new_requests(server)
    updates = server.connector.updates
    masterid = await updates.findMasterId("claiming-master")
    await updates.masterActive(name="claiming-master", masterid=masterid)
    server.connector.masterid = masterid
    try:
        assert await updates.claimBuildRequests([brid]) is True
    finally:
        server.connector.masterid = None
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", params)
    assert (reply.code, reply.json["result"]) == (200, None)
    assert events == [(("control", "buildrequests", str(brid), "cancel"), {"reason": reason})]
    assert server.rows(sa.select(br.c.complete).where(br.c.id == brid)) == [(0,)]


@pytest_twisted.ensureDeferred
async def test_cancel_a_request_claimed_by_a_master_that_is_gone(
        server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    # nobody would act on a control message: done here, its running build stopped too
    _, (brid,) = await new_requests(server)
    updates = server.connector.updates
    masterid = await updates.findMasterId("dead-master")  # never active
    server.connector.masterid = masterid
    try:
        assert await updates.claimBuildRequests([brid]) is True
        builderid = server.rows(sa.select(br.c.builderid).where(br.c.id == brid))[0][0]
        buildid, _ = await updates.addBuild(builderid, brid, None)
        stepid, _, _ = await updates.addStep(buildid, "compile")
        await updates.startStep(stepid)
    finally:
        server.connector.masterid = None
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", {"reason": "obsolete"})
    assert (reply.code, reply.json["result"]) == (200, None)
    build = (await server.get(f"builds/{buildid}")).json["builds"][0]
    assert (build["results"], build["state_string"]) == (6, "cancelled (obsolete)")
    step = (await server.get(f"steps/{stepid}")).json["steps"][0]
    assert step["results"] == 6
    request = (await server.get(f"buildrequests/{brid}")).json["buildrequests"][0]
    assert (request["complete"], request["results"]) == (True, 6)
    keys = _keys(events)
    assert f"builds/{buildid}/finished" in keys
    assert keys.index(f"builds/{buildid}/finished") < keys.index(
        f"buildrequests/{brid}/complete")
    assert keys[-1] == f"buildrequests/{brid}/cancel"
    assert not [k for k in keys if k.startswith("control/")]


@pytest_twisted.ensureDeferred
async def test_cancel_a_complete_request_changes_nothing(
        server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    # as upstream: 200 null, nothing to cancel (stop of a finished build likewise)
    _, (brid,) = await new_requests(server)
    await server.connector.updates.completeBuildRequests([brid], 0)
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", {})
    assert reply.code == 200
    assert reply.json["result"] is None
    assert events == []
    assert server.rows(sa.select(br.c.results).where(br.c.id == brid)) == [(0,)]


@pytest_twisted.ensureDeferred
async def test_cancel_errors(server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    _, (brid,) = await new_requests(server)
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", {"reason": 3})
    assert reply.code == 400
    assert reply.json["error"]["code"] == -32602
    assert "reason" in reply.json["error"]["message"]
    for path in ("buildrequests/999999", "buildrequests/99999999999999999999999"):
        reply = await server.rpc(path, "cancel", {})
        assert (reply.code, reply.json["error"]["code"]) == (404, -32600), path
    assert events == []
    assert server.rows(sa.select(br.c.complete).where(br.c.id == brid)) == [(0,)]


# -- set_priority --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_set_priority(server: Api, events: list[tuple[tuple[str, ...], Any]]) -> None:
    _, (brid,) = await new_requests(server)
    events.clear()
    reply = await server.rpc(f"buildrequests/{brid}", "set_priority", {"priority": 42})
    assert (reply.code, reply.json["result"]) == (200, None)
    assert server.rows(sa.select(br.c.priority).where(br.c.id == brid)) == [(42,)]
    assert (await server.get(f"buildrequests/{brid}")).json["buildrequests"][0][
        "priority"] == 42
    reply = await server.rpc(f"buildrequests/{brid}", "set_priority", {"priority": -3.0})
    assert reply.code == 200
    assert server.rows(sa.select(br.c.priority).where(br.c.id == brid)) == [(-3,)]
    assert events == []  # upstream publishes nothing


@pytest.mark.parametrize("params", [
    {}, {"priority": "high"}, {"priority": True}, {"priority": None}, {"priority": 1.5},
    {"priority": 2**70}, {"priority": 2**31},
])
@pytest_twisted.ensureDeferred
async def test_set_priority_bad_params_are_400(server: Api, params: dict[str, Any]) -> None:
    _, (brid,) = await new_requests(server)
    reply = await server.rpc(f"buildrequests/{brid}", "set_priority", params)
    assert reply.code == 400
    assert reply.json["error"]["code"] == -32602
    assert "priority" in reply.json["error"]["message"]
    assert server.rows(sa.select(br.c.priority).where(br.c.id == brid)) == [(0,)]


@pytest_twisted.ensureDeferred
async def test_set_priority_of_a_complete_or_missing_request(server: Api) -> None:
    _, (brid,) = await new_requests(server)
    await server.connector.updates.completeBuildRequests([brid], 2)
    reply = await server.rpc(f"buildrequests/{brid}", "set_priority", {"priority": 9})
    assert reply.code == 409
    assert reply.json["error"] == {"code": -32000,
                                   "message": f"build request {brid} is already complete"}
    assert server.rows(sa.select(br.c.priority).where(br.c.id == brid)) == [(0,)]
    reply = await server.rpc("buildrequests/999999", "set_priority", {"priority": 9})
    assert reply.code == 404


@pytest.mark.parametrize("method", ["frobnicate", "Cancel", "claim", "stop"])
@pytest_twisted.ensureDeferred
async def test_other_actions_are_501(server: Api, method: str) -> None:
    _, (brid,) = await new_requests(server)
    for path in (f"buildrequests/{brid}", "buildrequests", f"buildsets/{brid}"):
        reply = await server.rpc(path, method, {})
        assert reply.code == 501, path
        assert reply.json["error"]["code"] == -32601
