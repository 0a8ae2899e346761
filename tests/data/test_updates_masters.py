"""Update methods of masters, builders and change sources: what they store, the events they
publish (upstream's keys and messages), their errors, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor, task

from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.data.resources.masters import find_or_create_master_in
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.data.conftest import Recorder

NOW = 1700000000


async def _master(rec: Recorder, name: str, *, active: bool = False) -> int:
    masterid: int = await rec.connector.transact(find_or_create_master_in, name)
    if active:
        await rec.updates.masterActive(name=name, masterid=masterid)
    rec.take()
    return masterid


def _insert(rec: Recorder, table: sa.Table, **values: Any) -> int:
    with rec.connector.db.engine.begin() as conn:
        key = conn.execute(table.insert().values(**values)).inserted_primary_key
    return int(key[0]) if key and key[0] is not None else 0


# -- masters ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_find_or_create_master_stores_an_inactive_master(recorder: Recorder) -> None:
    first = await _master(recorder, "m1")
    assert await _master(recorder, "m1") == first
    assert recorder.rows(sa.select(s.masters)) == [
        (first, "m1", name_hash("m1"), 0, NOW)]
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_master_active_starts_once_and_refreshes_last_active(recorder: Recorder) -> None:
    masterid = await _master(recorder, "m1")
    await recorder.updates.masterActive(name="m1", masterid=masterid)
    assert recorder.take() == [(("masters", str(masterid), "started"),
                                {"masterid": masterid, "name": "m1", "active": True})]
    recorder.connector.clock = lambda: NOW + 60
    await recorder.updates.masterActive(name="m1", masterid=masterid)
    assert recorder.take() == []
    assert recorder.rows(sa.select(s.masters.c.active, s.masters.c.last_active)) == [
        (1, NOW + 60)]


@pytest_twisted.ensureDeferred
async def test_master_methods_refuse_missing_masters_and_bad_arguments(
        recorder: Recorder) -> None:
    with pytest.raises(NotFound):
        await recorder.updates.masterActive(name="x", masterid=99)
    with pytest.raises(NotFound):
        await recorder.updates.masterStopped(name="x", masterid=99)
    with pytest.raises(InvalidParams, match="masterid"):
        await recorder.updates.masterActive(name="x", masterid="1")
    with pytest.raises(InvalidParams, match="name"):
        await recorder.updates.masterStopped(name=None, masterid=1)
    with pytest.raises(InvalidParams, match="forceHouseKeeping"):
        await recorder.updates.expireMasters(forceHouseKeeping="yes")
    assert recorder.take() == []


async def _served_master(rec: Recorder) -> dict[str, Any]:
    """An active master serving two builders, with a worker configured on them, a
    scheduler and a change source; and another master serving one of the builders."""
    masterid = await _master(rec, "m1", active=True)
    other = await _master(rec, "m2", active=True)
    await rec.updates.updateBuilderList(masterid=masterid, builderNames=["b1", "b2"])
    await rec.updates.updateBuilderList(masterid=other, builderNames=["b1"])
    b1 = await rec.updates.findBuilderId("b1")
    b2 = await rec.updates.findBuilderId("b2")
    workerid = await rec.updates.findWorkerId("w1")
    await rec.updates.workerConfigured(workerid=workerid, masterid=masterid,
                                       builderids=[b1, b2])
    await rec.updates.workerConfigured(workerid=workerid, masterid=other, builderids=[b1])
    await rec.updates.workerConnected(workerid=workerid, masterid=masterid, workerinfo={})
    schedulerid = _insert(rec, s.schedulers, name="s1", name_hash=name_hash("s1"), enabled=1)
    _insert(rec, s.scheduler_masters, schedulerid=schedulerid, masterid=masterid)
    changesourceid = await rec.updates.findChangeSourceId("cs1")
    assert await rec.updates.trySetChangeSourceMaster(changesourceid, masterid) is True
    rec.take()
    return {"masterid": masterid, "other": other, "b1": b1, "b2": b2, "workerid": workerid,
            "schedulerid": schedulerid, "changesourceid": changesourceid}


@pytest_twisted.ensureDeferred
async def test_master_stopped_does_the_housekeeping(recorder: Recorder) -> None:
    ids = await _served_master(recorder)
    masterid = ids["masterid"]
    await recorder.updates.masterStopped(name="m1", masterid=masterid)
    assert recorder.take() == [
        (("builders", str(ids["b1"]), "stopped"),
         {"builderid": ids["b1"], "masterid": masterid, "name": "b1"}),
        (("builders", str(ids["b2"]), "stopped"),
         {"builderid": ids["b2"], "masterid": masterid, "name": "b2"}),
        (("masters", str(masterid), "stopped"),
         {"masterid": masterid, "name": "m1", "active": False}),
    ]
    assert recorder.rows(sa.select(s.masters.c.id, s.masters.c.active)
                         .order_by(s.masters.c.id)) == [(masterid, 0), (ids["other"], 1)]
    bm = s.builder_masters
    assert recorder.rows(sa.select(bm.c.builderid, bm.c.masterid)) == [(ids["b1"], ids["other"])]
    # the worker stays configured on the other master only; its connection row stays
    # (upstream does not clear connected_workers)
    worker = await recorder.connector.get(f"workers/{ids['workerid']}")
    assert worker["configured_on"] == [{"masterid": ids["other"], "builderid": ids["b1"]}]
    assert worker["connected_to"] == [{"masterid": masterid}]
    assert recorder.rows(sa.select(s.scheduler_masters)) == []
    assert recorder.rows(sa.select(s.changesource_masters)) == []
    # stopping again changes nothing and says nothing
    await recorder.updates.masterStopped(name="m1", masterid=masterid)
    assert recorder.take() == []


def _running_build(rec: Recorder, masterid: int, builderid: int) -> dict[str, Any]:
    """A running build of master ``masterid`` (and a finished one), with a finished and a
    running step, logs open and complete, and two requests it claimed."""
    ss = _insert(rec, s.sourcestamps, ss_hash="x", branch=None, revision=None,
                 repository="", codebase="", project="", created_at=NOW)
    bsid = _insert(rec, s.buildsets, submitted_at=NOW, complete=0, results=-1)
    _insert(rec, s.buildset_sourcestamps, buildsetid=bsid, sourcestampid=ss)
    brids = [_insert(rec, s.buildrequests, buildsetid=bsid, builderid=builderid,
                     priority=0, complete=0, results=-1, submitted_at=NOW)
             for _ in range(2)]
    for brid in brids:
        _insert(rec, s.buildrequest_claims, brid=brid, masterid=masterid, claimed_at=NOW)
    buildid = _insert(rec, s.builds, number=1, builderid=builderid,
                      buildrequestid=brids[0], masterid=masterid, started_at=NOW,
                      state_string="building", locks_duration_s=0)
    _insert(rec, s.builds, number=2, builderid=builderid, buildrequestid=brids[0],
            masterid=masterid, started_at=NOW, complete_at=NOW, results=0,
            state_string="done", locks_duration_s=0)
    done = _insert(rec, s.steps, number=0, name="done", buildid=buildid,
                   started_at=NOW, complete_at=NOW, results=0, state_string="",
                   urls_json="[]", hidden=0)
    running = _insert(rec, s.steps, number=1, name="running", buildid=buildid,
                      started_at=NOW, state_string="", urls_json="[]", hidden=0)
    open_log = _insert(rec, s.logs, name="stdio", slug="stdio", stepid=running,
                       complete=0, num_lines=0, type="s")
    _insert(rec, s.logs, name="done", slug="done", stepid=running, complete=1,
            num_lines=0, type="s")
    _insert(rec, s.logs, name="old", slug="old", stepid=done, complete=0, num_lines=0,
            type="s")
    return {"brids": brids, "buildid": buildid, "running": running, "open_log": open_log}


@pytest_twisted.ensureDeferred
async def test_master_stopped_finishes_builds_through_update_methods(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    masterid = await _master(recorder, "m1", active=True)
    builderid = await recorder.updates.findBuilderId("b1")
    ids = _running_build(recorder, masterid, builderid)
    brids, buildid, running, open_log = (ids["brids"], ids["buildid"], ids["running"],
                                         ids["open_log"])
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(name: str) -> Any:
        async def method(**kw: Any) -> None:
            calls.append((name, kw))
        return method

    methods = recorder.updates._methods
    for name in ("finishLog", "finishStep", "finishBuild"):
        monkeypatch.setitem(methods, name, fake(name))
    await recorder.updates.masterStopped(name="m1", masterid=masterid)
    assert calls == [
        ("finishLog", {"logid": open_log}),
        ("finishStep", {"stepid": running, "results": 5, "hidden": False}),
        ("finishBuild", {"buildid": buildid, "results": 5}),
    ]
    # its claims on incomplete requests are given up, so that another master takes them
    # (upstream's housekeeping gives up its own master's instead: the dead one's stay)
    assert recorder.rows(sa.select(s.buildrequest_claims)) == []
    keys = recorder.keys()
    assert [k for k in keys if k.startswith("buildrequests/")] == [
        f"buildrequests/{brid}/unclaimed" for brid in brids]
    assert keys[-1] == f"masters/{masterid}/stopped"


@pytest_twisted.ensureDeferred
async def test_master_stopped_finishes_builds_with_retry(recorder: Recorder) -> None:
    # with the update methods of builds, steps, logs and requests themselves
    masterid = await _master(recorder, "m1", active=True)
    await recorder.updates.updateBuilderList(masterid, ["b1"])
    builderid = await recorder.updates.findBuilderId("b1")
    ids = _running_build(recorder, masterid, builderid)
    recorder.take()
    await recorder.updates.masterStopped(name="m1", masterid=masterid)
    b, st, lg = s.builds, s.steps, s.logs
    assert recorder.rows(sa.select(b.c.results, b.c.complete_at)
                         .where(b.c.id == ids["buildid"])) == [(5, NOW)]
    assert recorder.rows(sa.select(st.c.results).where(st.c.id == ids["running"])) == [(5,)]
    assert recorder.rows(sa.select(lg.c.complete).where(lg.c.id == ids["open_log"])) == [(1,)]
    keys = recorder.keys()
    assert keys[0] == f"builders/{builderid}/stopped"
    assert f"builds/{ids['buildid']}/finished" in keys
    assert keys[-1] == f"masters/{masterid}/stopped"


@pytest_twisted.ensureDeferred
async def test_expire_masters(recorder: Recorder) -> None:
    old = await _master(recorder, "old", active=True)
    stale = await _master(recorder, "stale")  # inactive already
    await recorder.updates.updateBuilderList(masterid=stale, builderNames=["b"])
    recorder.connector.clock = lambda: NOW + 300
    fresh = await _master(recorder, "fresh", active=True)
    recorder.connector.clock = lambda: NOW + 601
    await recorder.updates.expireMasters()
    assert recorder.keys() == [f"masters/{old}/stopped"]
    assert recorder.rows(sa.select(s.masters.c.id, s.masters.c.active)
                         .order_by(s.masters.c.id)) == [(old, 0), (stale, 0), (fresh, 1)]
    # the stale master's builder list is only cleared when housekeeping is forced
    assert len(recorder.rows(sa.select(s.builder_masters))) == 1
    await recorder.updates.expireMasters(forceHouseKeeping=True)
    builderid = await recorder.updates.findBuilderId("b")
    assert recorder.take() == [(("builders", str(builderid), "stopped"),
                                {"builderid": builderid, "masterid": stale, "name": "b"})]
    assert recorder.rows(sa.select(s.builder_masters)) == []


# -- builders --------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_find_builder_id(recorder: Recorder) -> None:
    builderid = await recorder.updates.findBuilderId("linux build")
    assert await recorder.updates.findBuilderId("linux build") == builderid
    assert recorder.rows(sa.select(s.builders)) == [
        (builderid, "linux build", None, None, None, None, name_hash("linux build"))]
    assert recorder.take() == []
    with pytest.raises(InvalidParams, match="name"):
        await recorder.updates.findBuilderId(3)


@pytest_twisted.ensureDeferred
async def test_concurrent_find_builder_id_gives_one_id(recorder: Recorder) -> None:
    ids = await defer.gatherResults(
        [defer.ensureDeferred(recorder.updates.findBuilderId("same")) for _ in range(16)])
    assert len(set(ids)) == 1
    assert len(recorder.rows(sa.select(s.builders))) == 1


@pytest_twisted.ensureDeferred
async def test_find_builder_id_finds_a_row_another_transaction_inserts(
        recorder: Recorder) -> None:
    # The other transaction holds its new row uncommitted while ours looks: on
    # PostgreSQL ours finds nothing, its insert waits on the unique index and fails once
    # the other commits, and the row is found again; SQLite makes ours wait at BEGIN.
    conn = recorder.connector.db.engine.connect()
    try:
        transaction = conn.begin()
        key = conn.execute(s.builders.insert().values(
            name="x", name_hash=name_hash("x"))).inserted_primary_key
        assert key is not None
        found = defer.ensureDeferred(recorder.updates.findBuilderId("x"))
        await task.deferLater(reactor, 0.5)
        assert not found.called
        transaction.commit()
    finally:
        conn.close()
    assert await found == key[0]
    assert len(recorder.rows(sa.select(s.builders))) == 1


@pytest_twisted.ensureDeferred
async def test_update_builder_info(recorder: Recorder) -> None:
    builderid = await recorder.updates.findBuilderId("b1")
    projectid = await recorder.updates.find_project_id("p")
    await recorder.updates.updateBuilderInfo(builderid, "desc", "markdown", "<p>desc</p>",
                                             projectid, ["fast", "linux", "fast"])
    got = await recorder.connector.get(f"builders/{builderid}")
    assert got["tags"] == ["fast", "linux"]
    assert (got["description"], got["description_format"], got["description_html"],
            got["projectid"]) == ("desc", "markdown", "<p>desc</p>", projectid)
    assert recorder.take() == [(("builders", str(builderid), "update"), got)]
    tags = s.tags
    assert recorder.rows(sa.select(tags.c.name, tags.c.name_hash).order_by(tags.c.id)) == [
        ("fast", name_hash("fast")), ("linux", name_hash("linux"))]
    linux = recorder.rows(sa.select(tags.c.id).where(tags.c.name == "linux"))[0][0]
    # tags by id too; the old tags are replaced, the project cleared
    await recorder.updates.updateBuilderInfo(builderid, None, None, None, None,
                                             [linux, "new"])
    got = await recorder.connector.get(f"builders/{builderid}")
    assert (got["tags"], got["projectid"], got["description"]) == (["linux", "new"], None,
                                                                   None)
    assert recorder.take() == [(("builders", str(builderid), "update"), got)]


@pytest_twisted.ensureDeferred
async def test_update_builder_info_errors_roll_back(recorder: Recorder) -> None:
    builderid = await recorder.updates.findBuilderId("b1")
    for args, error in [
        ((999, None, None, None, None, []), NotFound),
        ((builderid, None, None, None, 999, []), NotFound),
        ((builderid, "d", None, None, None, ["created?", 999]), NotFound),
        ((builderid, 3, None, None, None, []), InvalidParams),
        ((builderid, None, None, None, "1", []), InvalidParams),
        ((builderid, None, None, None, None, "tag"), InvalidParams),
        ((builderid, None, None, None, None, [None]), InvalidParams),
    ]:
        with pytest.raises(error):
            await recorder.updates.updateBuilderInfo(*args)
    assert recorder.rows(sa.select(s.tags)) == []
    assert recorder.rows(sa.select(s.builders.c.description)) == [(None,)]
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_update_builder_list(recorder: Recorder) -> None:
    masterid = await _master(recorder, "m1", active=True)
    await recorder.updates.updateBuilderList(masterid, ["b2", "b1", "b2"])
    b2 = await recorder.updates.findBuilderId("b2")
    b1 = await recorder.updates.findBuilderId("b1")
    assert recorder.take() == [
        (("builders", str(b2), "started"), {"builderid": b2, "masterid": masterid,
                                            "name": "b2"}),
        (("builders", str(b1), "started"), {"builderid": b1, "masterid": masterid,
                                            "name": "b1"}),
    ]
    await recorder.updates.updateBuilderList(masterid, ["b1", "b3"])
    b3 = await recorder.updates.findBuilderId("b3")
    assert recorder.take() == [
        (("builders", str(b2), "stopped"), {"builderid": b2, "masterid": masterid,
                                            "name": "b2"}),
        (("builders", str(b3), "started"), {"builderid": b3, "masterid": masterid,
                                            "name": "b3"}),
    ]
    bm = s.builder_masters
    assert recorder.rows(sa.select(bm.c.builderid, bm.c.masterid).order_by(bm.c.builderid)
                         ) == [(b1, masterid), (b3, masterid)]
    assert (await recorder.connector.get(f"builders/{b1}"))["masterids"] == [masterid]
    with pytest.raises(NotFound):
        await recorder.updates.updateBuilderList(999, ["b1"])
    with pytest.raises(InvalidParams, match="builderNames"):
        await recorder.updates.updateBuilderList(masterid, "b1")
    with pytest.raises(InvalidParams, match="builderNames"):
        await recorder.updates.updateBuilderList(masterid, [1])
    assert recorder.take() == []


# -- change sources --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_change_sources(recorder: Recorder) -> None:
    m1 = await _master(recorder, "m1")
    m2 = await _master(recorder, "m2")
    csid = await recorder.updates.findChangeSourceId("poller")
    assert await recorder.updates.findChangeSourceId("poller") == csid
    assert recorder.rows(sa.select(s.changesources)) == [
        (csid, "poller", name_hash("poller"))]
    assert await recorder.updates.trySetChangeSourceMaster(csid, m1) is True
    # taken: by another master, or by the same one again (upstream's answer)
    assert await recorder.updates.trySetChangeSourceMaster(csid, m2) is False
    assert await recorder.updates.trySetChangeSourceMaster(csid, m1) is False
    assert recorder.rows(sa.select(s.changesource_masters)) == [(csid, m1)]
    got = await recorder.connector.get(f"changesources/{csid}")
    assert got["master"]["masterid"] == m1
    assert await recorder.updates.trySetChangeSourceMaster(csid, None) is True
    assert recorder.rows(sa.select(s.changesource_masters)) == []
    assert await recorder.updates.trySetChangeSourceMaster(csid, m2) is True
    with pytest.raises(NotFound):
        await recorder.updates.trySetChangeSourceMaster(999, m1)
    with pytest.raises(NotFound):
        await recorder.updates.trySetChangeSourceMaster(csid, 999)
    with pytest.raises(InvalidParams):
        await recorder.updates.trySetChangeSourceMaster(csid, "m1")
    assert recorder.take() == []
