"""The ``stop`` and ``rebuild`` actions of builds over HTTP, on every path that names one
build: the control message for an active master, the database effect for a build no
active master runs (finished CANCELLED, with upstream's events in upstream's order), the
rebuild's new buildset, and every error, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import hashes
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server

NOW = 1800000000


def _fill(api: Api) -> dict[str, int]:
    """An inactive master beside the demo's active ones."""
    name = "gone.example.org:/srv/buildbot/master"
    with api.db.engine.begin() as conn:
        key = conn.execute(s.masters.insert().values(
            name=name, name_hash=hashes.name_hash(name), active=0,
            last_active=NOW)).inserted_primary_key
    assert key is not None
    active = api.rows(sa.select(sa.func.min(s.masters.c.id)).where(s.masters.c.active == 1))
    return {"inactive": int(key[0]), "active": int(active[0][0])}


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, int]]]:
    yield from own_server(request, tmp_path_factory, "control_builds", _fill, writable=True)


def _insert(api: Api, table: sa.Table, **values: Any) -> int:
    with api.db.engine.begin() as conn:
        key = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


async def _running_build(api: Api, masterid: int, builderid: int = 1) -> dict[str, Any]:
    """A new running build of a new request, by ``masterid``: one finished step, one
    running step with an open log and a finished one."""
    bsid = _insert(api, s.buildsets, submitted_at=NOW, complete=0, results=-1,
                   reason="test")
    brid = _insert(api, s.buildrequests, buildsetid=bsid, builderid=builderid, priority=0,
                   complete=0, results=-1, submitted_at=NOW)
    updates = api.connector.updates
    api.connector.masterid = masterid
    try:
        buildid, number = await updates.addBuild(builderid, brid, None)
    finally:
        api.connector.masterid = None
    await updates.generateNewBuildEvent(buildid)
    done, _, _ = await updates.addStep(buildid, "checkout")
    await updates.startStep(done)
    await updates.finishStep(done, 0, False)
    running, _, _ = await updates.addStep(buildid, "compile")
    await updates.startStep(running)
    closed = await updates.addLog(running, "short", "t")
    await updates.finishLog(closed)
    open_log = await updates.addLog(running, "stdio", "s")
    return {"buildid": buildid, "number": number, "builderid": builderid, "brid": brid,
            "bsid": bsid, "steps": [done, running], "open_log": open_log,
            "closed_log": closed}


def _paths(api: Api, build: dict[str, Any]) -> list[str]:
    name = api.rows(sa.select(s.builders.c.name)
                    .where(s.builders.c.id == build["builderid"]))[0][0]
    return [f"builds/{build['buildid']}",
            f"builders/{build['builderid']}/builds/{build['number']}",
            f"builders/{name}/builds/{build['number']}",
            f"build/{build['buildid']}"]


def _build_row(api: Api, buildid: int) -> dict[str, Any]:
    return dict(api.rows(sa.select(s.builds).where(s.builds.c.id == buildid))[0]._mapping)


# -- stop ----------------------------------------------------------------------------------

@pytest.mark.parametrize("form", range(4))
@pytest_twisted.ensureDeferred
async def test_stop_on_an_active_master_publishes_the_control_message(
        server: tuple[Api, dict[str, int]], form: int) -> None:
    api, masters = server
    build = await _running_build(api, masters["active"])
    before = _build_row(api, build["buildid"])
    control = api.record("control", None, None, None)
    others = api.record(None, None, None)
    reply = await api.rpc(_paths(api, build)[form], "stop",
                          {"reason": "user said so", "results": 2})
    assert (reply.code, reply.json) == (200, {"id": 1, "jsonrpc": "2.0", "result": None})
    assert control == [(("control", "builds", str(build["buildid"]), "stop"),
                        {"reason": "user said so"})]
    assert others == []
    assert _build_row(api, build["buildid"]) == before


@pytest_twisted.ensureDeferred
async def test_stop_without_reason_says_no_reason(server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    build = await _running_build(api, masters["active"])
    control = api.record("control", None, None, None)
    for params in ({}, {"reason": None}):
        reply = await api.rpc(f"builds/{build['buildid']}", "stop", params)
        assert reply.code == 200
    assert [m for _, m in control] == [{"reason": "no reason"}] * 2


@pytest.mark.parametrize("form", range(3))
@pytest_twisted.ensureDeferred
async def test_stop_on_an_inactive_master_cancels_in_the_database(
        server: tuple[Api, dict[str, int]], form: int) -> None:
    api, masters = server
    build = await _running_build(api, masters["inactive"])
    buildid, (done, running) = build["buildid"], build["steps"]
    done_before = dict(api.rows(sa.select(s.steps).where(s.steps.c.id == done))[0]._mapping)
    control = api.record("control", None, None, None)
    short = api.record(None, None, None)
    build_events = api.record("builders", None, "builds", None, None)
    reply = await api.rpc(_paths(api, build)[form], "stop", {"reason": "stuck"})
    assert (reply.code, reply.json["result"]) == (200, None)
    assert control == []
    # upstream's order: logs, steps, the build, its request, its buildset
    assert ["/".join(k) for k, _ in short] == [
        f"logs/{build['open_log']}/finished", f"steps/{running}/finished",
        f"builds/{buildid}/update", f"builds/{buildid}/finished",
        f"buildrequests/{build['brid']}/complete", f"buildsets/{build['bsid']}/complete"]
    assert ["/".join(k) for k, _ in build_events] == [
        f"builders/{build['builderid']}/builds/{build['number']}/update",
        f"builders/{build['builderid']}/builds/{build['number']}/finished"]
    row = _build_row(api, buildid)
    assert (row["results"], row["state_string"]) == (6, "cancelled (stuck)")
    assert row["complete_at"] is not None
    # messages are what a GET answers now
    assert short[3][1] == (await api.get(f"builds/{buildid}")).json["builds"][0]
    assert short[1][1] == (await api.get(f"steps/{running}")).json["steps"][0]
    steps = {r.id: r for r in api.rows(sa.select(s.steps).where(s.steps.c.buildid == buildid))}
    assert dict(steps[done]._mapping) == done_before
    assert (steps[running].results, steps[running].hidden) == (6, 0)
    assert steps[running].complete_at == row["complete_at"]
    logs = dict(api.rows(sa.select(s.logs.c.id, s.logs.c.complete)
                         .where(s.logs.c.stepid == running)))
    assert logs == {build["open_log"]: 1, build["closed_log"]: 1}
    request = api.rows(sa.select(s.buildrequests).where(s.buildrequests.c.id == build["brid"]))
    assert (request[0].complete, request[0].results) == (1, 6)
    buildset = api.rows(sa.select(s.buildsets).where(s.buildsets.c.id == build["bsid"]))
    assert (buildset[0].complete, buildset[0].results) == (1, 6)


@pytest_twisted.ensureDeferred
async def test_stop_on_a_finished_build_does_nothing(
        server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    for masterid in masters.values():
        build = await _running_build(api, masterid)
        await api.connector.updates.finishBuild(build["buildid"], 0)
        before = _build_row(api, build["buildid"])
        seen = [api.record("control", None, None, None), api.record(None, None, None)]
        reply = await api.rpc(f"builds/{build['buildid']}", "stop", {})
        assert (reply.code, reply.json["result"]) == (200, None)
        assert seen == [[], []]
        assert _build_row(api, build["buildid"]) == before


@pytest_twisted.ensureDeferred
async def test_a_second_stop_of_a_cancelled_build_does_nothing(
        server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    build = await _running_build(api, masters["inactive"])
    await api.rpc(f"builds/{build['buildid']}", "stop", {})
    before = _build_row(api, build["buildid"])
    assert before["state_string"] == "cancelled (no reason)"
    seen = api.record(None, None, None)
    assert (await api.rpc(f"builds/{build['buildid']}", "stop", {})).code == 200
    assert seen == []
    assert _build_row(api, build["buildid"]) == before


@pytest.mark.parametrize("reason", [5, True, ["x"], {"a": 1}, "a\0b"])
@pytest_twisted.ensureDeferred
async def test_a_bad_reason_is_400(server: tuple[Api, dict[str, int]], reason: Any) -> None:
    api, masters = server
    build = await _running_build(api, masters["inactive"])
    seen = api.record(None, None, None)
    reply = await api.rpc(f"builds/{build['buildid']}", "stop", {"reason": reason})
    assert reply.code == 400
    assert reply.json["error"]["code"] == -32602
    assert "reason" in reply.json["error"]["message"]
    assert seen == []
    assert _build_row(api, build["buildid"])["complete_at"] is None


MISSING = ["builds/999999", "builders/1/builds/999", "builders/999999/builds/1",
           "builders/no-such-builder/builds/1", "build/999999",
           "builds/99999999999999999999999"]


@pytest.mark.parametrize("method", ["stop", "rebuild"])
@pytest.mark.parametrize("path", MISSING)
@pytest_twisted.ensureDeferred
async def test_a_missing_build_is_404(server: tuple[Api, dict[str, int]], method: str,
                                      path: str) -> None:
    api, _ = server
    reply = await api.rpc(path, method, {})
    assert reply.code == 404
    assert reply.json["error"]["code"] == -32600


@pytest.mark.parametrize("method", ["Stop", "STOP", "REBUILD", "Rebuild", "cancel",
                                    "action_stop"])
@pytest_twisted.ensureDeferred
async def test_unknown_methods_are_501(server: tuple[Api, dict[str, int]],
                                       method: str) -> None:
    api, _ = server
    for path in ("builds/1", "builders/1/builds/1", "builds/999999"):
        reply = await api.rpc(path, method, {})
        assert reply.code == 501
        assert reply.json["error"] == {"code": -32601,
                                       "message": f"action: {method} is not supported"}


# -- rebuild -------------------------------------------------------------------------------

@pytest.mark.parametrize("form", range(3))
@pytest_twisted.ensureDeferred
async def test_rebuild_adds_a_buildset_for_the_builder(
        server: tuple[Api, dict[str, int]], form: int) -> None:
    api, _ = server
    row = api.rows(sa.select(s.builds).where(s.builds.c.complete_at.is_not(None))
                   .order_by(s.builds.c.id).limit(1))[0]
    build = {"buildid": row.id, "builderid": row.builderid, "number": row.number}
    request = api.rows(sa.select(s.buildrequests)
                       .where(s.buildrequests.c.id == row.buildrequestid))[0]
    old_stamps = {ssid for (ssid,) in api.rows(
        sa.select(s.buildset_sourcestamps.c.sourcestampid)
        .where(s.buildset_sourcestamps.c.buildsetid == request.buildsetid))}
    seen = api.record(None, None, None)
    reply = await api.rpc(_paths(api, build)[form], "rebuild", {})
    assert reply.code == 200
    bsid, brids = reply.json["result"]
    assert list(brids) == [str(row.builderid)]
    new_request = api.rows(sa.select(s.buildrequests)
                           .where(s.buildrequests.c.id == brids[str(row.builderid)]))[0]
    assert (new_request.buildsetid, new_request.builderid) == (bsid, row.builderid)
    buildset = api.rows(sa.select(s.buildsets).where(s.buildsets.c.id == bsid))[0]
    assert buildset.reason == "rebuild"
    assert buildset.rebuilt_buildid is not None
    stamps = {ssid for (ssid,) in api.rows(
        sa.select(s.buildset_sourcestamps.c.sourcestampid)
        .where(s.buildset_sourcestamps.c.buildsetid == bsid))}
    assert stamps == old_stamps
    assert f"buildsets/{bsid}/new" in ["/".join(k) for k, _ in seen]


@pytest_twisted.ensureDeferred
async def test_rebuild_of_a_build_whose_request_is_gone_is_409(
        server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    build = await _running_build(api, masters["active"])
    gone = 99999999
    # the build stays, pointing nowhere, as a damaged database may have it: written
    # without the foreign key checks
    if api.db.engine.dialect.name == "sqlite":
        plain = sqlite3.connect(str(api.db.engine.url.database))
        with plain:
            plain.execute("UPDATE builds SET buildrequestid = ? WHERE id = ?",
                          (gone, build["buildid"]))
        plain.close()
    else:
        try:
            with api.db.engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                conn.execute(s.builds.update().where(s.builds.c.id == build["buildid"])
                             .values(buildrequestid=gone))
        except sa.exc.DBAPIError:
            pytest.skip("the test database user cannot write without foreign key checks")
    reply = await api.rpc(f"builds/{build['buildid']}", "rebuild", {})
    assert reply.code == 409
    assert reply.json["error"]["message"] == (
        f"build {build['buildid']} has no build request to rebuild (build request {gone} "
        "is gone)")
