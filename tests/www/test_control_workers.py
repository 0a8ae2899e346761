"""The worker actions over JSON-RPC (``stop``, ``kill``, ``pause``, ``unpause``) on every
single-worker path, on both backends: upstream's control message when an active master has
the worker; the state set in the database otherwise (COMPAT "Also"); every error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.www.conftest import Api, own_server


def _fill(api: Api) -> dict[str, int]:
    """Masters, a builder and workers of the tests' own next to the demo rows."""
    ids: dict[str, int] = {}
    with api.db.engine.begin() as conn:
        def add(table: sa.Table, **values: Any) -> int:
            key = conn.execute(table.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        for name, active in (("ctl-active", 1), ("ctl-gone", 0)):
            ids[name] = add(s.masters, name=name, name_hash=name_hash(name), active=active,
                            last_active=1)
        ids["builder"] = add(s.builders, name="ctl-b", name_hash=name_hash("ctl-b"))
        link = add(s.builder_masters, builderid=ids["builder"], masterid=ids["ctl-active"])
        gone_link = add(s.builder_masters, builderid=ids["builder"],
                        masterid=ids["ctl-gone"])
        for name in ("held", "configured", "orphan", "lonely"):
            ids[name] = add(s.workers, name=f"ctl-{name}", info="{}", paused=0, graceful=0)
        # held: connected to the active master (configured on the gone one only)
        add(s.connected_workers, masterid=ids["ctl-active"], workerid=ids["held"])
        add(s.configured_workers, buildermasterid=gone_link, workerid=ids["held"])
        # configured: on the active master, not connected
        add(s.configured_workers, buildermasterid=link, workerid=ids["configured"])
        add(s.connected_workers, masterid=ids["ctl-gone"], workerid=ids["orphan"])
        add(s.configured_workers, buildermasterid=gone_link, workerid=ids["orphan"])
    return ids


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, int]]]:
    yield from own_server(request, tmp_path_factory, "control_workers", _fill, writable=True)


def _state(api: Api, workerid: int) -> tuple[Any, ...]:
    w = s.workers
    return tuple(api.rows(sa.select(w.c.paused, w.c.pause_reason, w.c.graceful)
                          .where(w.c.id == workerid))[0])


ACTIONS = ("stop", "kill", "pause", "unpause")


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("who", ["held", "configured"])
@pytest_twisted.ensureDeferred
async def test_a_worker_an_active_master_has_gets_the_control_message(
        server: tuple[Api, dict[str, int]], action: str, who: str) -> None:
    api, ids = server
    workerid = ids[who]
    control = api.record("control", None, None, None)
    workers = api.record("workers", None, None)
    before = _state(api, workerid)
    masterid = ids["ctl-active" if who == "configured" else "ctl-gone"]
    calls: list[tuple[str, dict[str, Any], str]] = [
        (f"workers/{workerid}", {"reason": "maintenance"}, "maintenance"),
        (f"workers/ctl-{who}", {}, "no reason"),
        (f"worker/{workerid}", {"reason": None}, "no reason"),
        (f"masters/{masterid}/workers/{workerid}", {"reason": ""}, ""),
        (f"masters/{masterid}/builders/{ids['builder']}/workers/ctl-{who}",
         {"reason": "x"}, "x"),
    ]
    for path, params, reason in calls:
        reply = await api.rpc(path, action, params)
        assert (reply.code, reply.json["result"]) == (200, None), path
        assert control[-1] == (("control", "worker", str(workerid), action),
                               {"reason": reason})
    assert len(control) == 5
    assert workers == []
    assert _state(api, workerid) == before


@pytest_twisted.ensureDeferred
async def test_pause_and_unpause_without_a_master_set_the_state(
        server: tuple[Api, dict[str, int]]) -> None:
    api, ids = server
    control = api.record("control", None, None, None)
    for who in ("orphan", "lonely"):
        workerid = ids[who]
        events = api.record("workers", str(workerid), None)
        reply = await api.rpc(f"workers/{workerid}", "pause", {"reason": "disk full"})
        assert (reply.code, reply.json["result"]) == (200, None)
        got = (await api.get(f"workers/{workerid}")).json["workers"][0]
        assert (got["paused"], got["pause_reason"]) == (True, "disk full")
        assert events == [(("workers", str(workerid), "state_updated"), got)]
        await api.rpc(f"workers/ctl-{who}", "pause", {})
        assert _state(api, workerid)[:2] == (1, "no reason")
        reply = await api.rpc(f"workers/{workerid}", "unpause", {"reason": "ignored"})
        assert reply.code == 200
        got = (await api.get(f"workers/{workerid}")).json["workers"][0]
        assert (got["paused"], got["pause_reason"]) == (False, None)
        assert events[-1] == (("workers", str(workerid), "state_updated"), got)
        assert len(events) == 3
    assert control == []


@pytest_twisted.ensureDeferred
async def test_stop_without_a_master_sets_graceful(
        server: tuple[Api, dict[str, int]]) -> None:
    api, ids = server
    workerid = ids["lonely"]
    events = api.record("workers", str(workerid), None)
    reply = await api.rpc(f"workers/{workerid}", "stop", {"reason": "retire"})
    assert (reply.code, reply.json["result"]) == (200, None)
    got = (await api.get(f"workers/{workerid}")).json["workers"][0]
    assert got["graceful"] is True
    assert _state(api, workerid)[2] == 1
    assert events == [(("workers", str(workerid), "state_updated"), got)]


@pytest_twisted.ensureDeferred
async def test_kill_without_a_master_drops_stale_connections(
        server: tuple[Api, dict[str, int]]) -> None:
    api, ids = server
    control = api.record("control", None, None, None)
    orphan, lonely = ids["orphan"], ids["lonely"]
    events = api.record("workers", None, None)
    reply = await api.rpc(f"masters/{ids['ctl-gone']}/workers/{orphan}", "kill", {})
    assert (reply.code, reply.json["result"]) == (200, None)
    got = (await api.get(f"workers/{orphan}")).json["workers"][0]
    assert got["connected_to"] == []
    assert events == [(("workers", str(orphan), "disconnected"), got)]
    # nothing left to cut: nothing happens
    for workerid in (orphan, lonely):
        reply = await api.rpc(f"workers/{workerid}", "kill", {})
        assert (reply.code, reply.json["result"]) == (200, None)
    assert len(events) == 1
    assert control == []


@pytest.mark.parametrize("path", [
    "workers/999999", "workers/no-such-worker", "workers/99999999999999999999999",
    "masters/999999/workers/{held}",
    # a worker that exists, on a path whose master or builder does not have it
    "masters/{ctl-active}/workers/{held}", "builders/{builder}/workers/ctl-lonely",
    "masters/{ctl-gone}/builders/{builder}/workers/{configured}",
])
@pytest.mark.parametrize("action", ACTIONS)
@pytest_twisted.ensureDeferred
async def test_a_missing_worker_is_404(server: tuple[Api, dict[str, int]], path: str,
                                       action: str) -> None:
    api, ids = server
    control = api.record("control", None, None, None)
    reply = await api.rpc(path.format(**ids), action, {"reason": "r"})
    assert reply.code == 404
    assert reply.json["error"]["code"] == -32600
    assert control == []


@pytest.mark.parametrize(("reason", "message"), [
    (5, "invalid params: reason: must be a string, not a number"),
    (True, "invalid params: reason: must be a string, not a boolean"),
    (["a"], "invalid params: reason: must be a string, not an array"),
    ("a\0b", "invalid params: reason: must not contain NUL characters"),
])
@pytest.mark.parametrize("action", ACTIONS)
@pytest_twisted.ensureDeferred
async def test_a_bad_reason_is_400(server: tuple[Api, dict[str, int]], action: str,
                                   reason: Any, message: str) -> None:
    api, ids = server
    control = api.record("control", None, None, None)
    before = _state(api, ids["lonely"])
    for who in ("held", "lonely"):
        reply = await api.rpc(f"workers/{ids[who]}", action, {"reason": reason})
        assert reply.code == 400
        assert reply.json["error"] == {"code": -32602, "message": message}
    assert control == []
    assert _state(api, ids["lonely"]) == before


@pytest.mark.parametrize("method", ["Pause", "STOP", "graceful", "shutdown", "enable"])
@pytest_twisted.ensureDeferred
async def test_other_methods_are_501(server: tuple[Api, dict[str, int]], method: str) -> None:
    api, ids = server
    for path in (f"workers/{ids['held']}", "workers/999999", "workers"):
        reply = await api.rpc(path, method, {})
        assert reply.code == 501, path
        assert reply.json["error"] == {"code": -32601,
                                       "message": f"action: {method} is not supported"}
