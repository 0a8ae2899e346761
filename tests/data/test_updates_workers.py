"""Update methods of workers: what they store, their events (the worker as a GET answers
it; ``missing`` with upstream's two more keys), their errors, on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.data.resources.masters import find_or_create_master_in
from buildbot_rest.db import schema as s
from tests.data.conftest import Recorder


async def _setup(rec: Recorder) -> dict[str, Any]:
    masterid = await rec.connector.transact(find_or_create_master_in, "m1")
    other = await rec.connector.transact(find_or_create_master_in, "m2")
    await rec.updates.updateBuilderList(masterid, ["b1", "b2", "b3"])
    await rec.updates.updateBuilderList(other, ["b1"])
    ids = {"masterid": masterid, "other": other,
           "workerid": await rec.updates.findWorkerId("w1")}
    for name in ("b1", "b2", "b3"):
        ids[name] = await rec.updates.findBuilderId(name)
    rec.take()
    return ids


async def _worker(rec: Recorder, workerid: int) -> dict[str, Any]:
    got: dict[str, Any] = await rec.connector.get(f"workers/{workerid}")
    return got


@pytest_twisted.ensureDeferred
async def test_find_worker_id(recorder: Recorder) -> None:
    workerid = await recorder.updates.findWorkerId("linux-worker_01")
    assert await recorder.updates.findWorkerId("linux-worker_01") == workerid
    assert recorder.rows(sa.select(s.workers)) == [
        (workerid, "linux-worker_01", "{}", 0, None, 0)]
    assert await _worker(recorder, workerid) == {
        "workerid": workerid, "name": "linux-worker_01", "connected_to": [],
        "configured_on": [], "workerinfo": {}, "paused": False, "pause_reason": None,
        "graceful": False}
    for bad in ("with space", "1abc", "", "x" * 51, "a.b", "a\n", 7, None):
        with pytest.raises(InvalidParams, match="name"):
            await recorder.updates.findWorkerId(bad)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_worker_configured(recorder: Recorder) -> None:
    ids = await _setup(recorder)
    workerid, masterid = ids["workerid"], ids["masterid"]
    # b3 of the other master is not served by it: ignored, as upstream
    await recorder.updates.workerConfigured(workerid, masterid, [ids["b1"], ids["b2"]])
    await recorder.updates.workerConfigured(workerid, ids["other"], [ids["b1"], ids["b3"]])
    assert (await _worker(recorder, workerid))["configured_on"] == [
        {"masterid": masterid, "builderid": ids["b1"]},
        {"masterid": masterid, "builderid": ids["b2"]},
        {"masterid": ids["other"], "builderid": ids["b1"]}]
    await recorder.updates.workerConfigured(workerid, masterid, [ids["b2"], ids["b3"]])
    assert sorted(map(tuple, (d.values() for d in
                             (await _worker(recorder, workerid))["configured_on"]))) == sorted(
        [(masterid, ids["b2"]), (masterid, ids["b3"]), (ids["other"], ids["b1"])])
    await recorder.updates.deconfigureAllWorkersForMaster(masterid)
    assert (await _worker(recorder, workerid))["configured_on"] == [
        {"masterid": ids["other"], "builderid": ids["b1"]}]
    await recorder.updates.workerConfigured(workerid, ids["other"], [])
    assert recorder.rows(sa.select(s.configured_workers)) == []
    assert recorder.take() == []
    for call in (lambda: recorder.updates.workerConfigured(999, masterid, []),
                 lambda: recorder.updates.workerConfigured(workerid, 999, []),
                 lambda: recorder.updates.deconfigureAllWorkersForMaster(999)):
        with pytest.raises(NotFound):
            await call()
    with pytest.raises(InvalidParams, match="builderids"):
        await recorder.updates.workerConfigured(workerid, masterid, ["b1"])
    with pytest.raises(InvalidParams, match="builderids"):
        await recorder.updates.workerConfigured(workerid, masterid, 3)


@pytest_twisted.ensureDeferred
async def test_worker_connected_and_disconnected(recorder: Recorder) -> None:
    ids = await _setup(recorder)
    workerid, masterid = ids["workerid"], ids["masterid"]
    info = {"admin": "me <me@example.org>", "version": "4.3.0", "numcpus": 8}
    await recorder.updates.workerConnected(workerid, masterid, info)
    await recorder.updates.workerConnected(workerid, masterid, info)  # again: one row
    got = await _worker(recorder, workerid)
    assert got["connected_to"] == [{"masterid": masterid}]
    assert got["workerinfo"] == info
    assert recorder.rows(sa.select(s.workers.c.info)) == [(json.dumps(info),)]
    assert recorder.take() == [(("workers", str(workerid), "connected"), got)] * 2
    await recorder.updates.workerConnected(workerid, ids["other"], {})
    await recorder.updates.workerDisconnected(workerid, masterid)
    got = await _worker(recorder, workerid)
    assert got["connected_to"] == [{"masterid": ids["other"]}]
    assert recorder.keys() == [f"workers/{workerid}/connected",
                               f"workers/{workerid}/disconnected"]
    for call in (lambda: recorder.updates.workerConnected(999, masterid, {}),
                 lambda: recorder.updates.workerConnected(workerid, 999, {}),
                 lambda: recorder.updates.workerDisconnected(999, masterid)):
        with pytest.raises(NotFound):
            await call()
    for bad in (None, "{}", {"x": object()}):
        with pytest.raises(InvalidParams, match="workerinfo"):
            await recorder.updates.workerConnected(workerid, masterid, bad)
    assert recorder.take() == []
    assert recorder.rows(sa.select(s.workers.c.info)) == [("{}",)]


@pytest_twisted.ensureDeferred
async def test_worker_missing_adds_upstreams_keys(recorder: Recorder) -> None:
    ids = await _setup(recorder)
    workerid = ids["workerid"]
    await recorder.updates.workerMissing(workerid=workerid, masterid=ids["masterid"],
                                         last_connection="Tue Nov 14 22:13:20 2023",
                                         notify=["admin@example.org"])
    message = dict(await _worker(recorder, workerid),
                   last_connection="Tue Nov 14 22:13:20 2023", notify=["admin@example.org"])
    assert recorder.take() == [(("workers", str(workerid), "missing"), message)]
    with pytest.raises(NotFound):
        await recorder.updates.workerMissing(workerid=999, masterid=ids["masterid"],
                                             last_connection="", notify=False)


@pytest_twisted.ensureDeferred
async def test_paused_and_graceful(recorder: Recorder) -> None:
    workerid = (await _setup(recorder))["workerid"]
    await recorder.updates.set_worker_paused(workerid, True, "disk full")
    paused = await _worker(recorder, workerid)
    assert (paused["paused"], paused["pause_reason"]) == (True, "disk full")
    await recorder.updates.set_worker_paused(workerid, False)
    unpaused = await _worker(recorder, workerid)
    assert (unpaused["paused"], unpaused["pause_reason"]) == (False, None)
    await recorder.updates.set_worker_graceful(workerid, True)
    graceful = await _worker(recorder, workerid)
    assert graceful["graceful"] is True
    key = ("workers", str(workerid), "state_updated")
    assert recorder.take() == [(key, paused), (key, unpaused), (key, graceful)]
    assert recorder.rows(sa.select(s.workers.c.paused, s.workers.c.pause_reason,
                                   s.workers.c.graceful)) == [(0, None, 1)]
    for call, error in [
        (lambda: recorder.updates.set_worker_paused(999, True), NotFound),
        (lambda: recorder.updates.set_worker_graceful(999, True), NotFound),
        (lambda: recorder.updates.set_worker_paused(workerid, 1), InvalidParams),
        (lambda: recorder.updates.set_worker_paused(workerid, True, 5), InvalidParams),
        (lambda: recorder.updates.set_worker_graceful(workerid, "yes"), InvalidParams),
    ]:
        with pytest.raises(error):
            await call()
    assert recorder.take() == []
