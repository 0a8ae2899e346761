"""The buildset machinery's update methods (addBuildset, maybeBuildsetComplete,
claim/unclaim/completeBuildRequests, rebuildBuildrequest) and find_or_create_sourcestamp:
rows as upstream stores them, events with their keys, order and messages, errors, and
concurrent writers, on both backends."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.data.resources.buildrequests import OWN_MASTER_NAME, complete_in
from buildbot_rest.data.resources.buildsets import (
    add_buildset_in,
    maybe_buildset_complete_in,
    worst_status,
)
from buildbot_rest.data.resources.sourcestamps import find_or_create_sourcestamp
from buildbot_rest.db import hashes
from buildbot_rest.db import schema as s
from tests.data.conftest import Recorder

NOW = 1700000000
STAMP = {"branch": "main", "revision": "abc", "repository": "https://r", "project": "p",
         "codebase": "cb"}


def insert(rec: Recorder, table: sa.Table, **values: Any) -> int:
    with rec.connector.db.engine.begin() as conn:
        key = conn.execute(table.insert().values(**values)).inserted_primary_key
        return int(key[0]) if key else 0


def builder(rec: Recorder, name: str) -> int:
    return insert(rec, s.builders, name=name, name_hash=hashes.name_hash(name))


def master(rec: Recorder, name: str) -> int:
    return insert(rec, s.masters, name=name, name_hash=hashes.name_hash(name), active=1,
                  last_active=NOW)


def build(rec: Recorder, builderid: int, brid: int, masterid: int, number: int) -> int:
    return insert(rec, s.builds, number=number, builderid=builderid, buildrequestid=brid,
                  masterid=masterid, started_at=NOW, locks_duration_s=0,
                  state_string="done")


def d(coro: Any) -> defer.Deferred[Any]:
    return defer.ensureDeferred(coro)


async def get(rec: Recorder, path: str) -> Any:
    return await rec.connector.get(path)


def count(rec: Recorder, table: sa.Table) -> int:
    return int(rec.rows(sa.select(sa.func.count()).select_from(table))[0][0])


# -- addBuildset -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_add_buildset_stores_rows_as_upstream(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    bsid, brids = await recorder.updates.addBuildset(
        waited_for=True, scheduler="sched", sourcestamps=[STAMP], reason="because",
        properties={"a": (1, "src"), "b": ({"x": [1, "y"]}, "other")}, builderids=[b1, b2],
        external_idstring="ext", priority=5)
    assert list(brids) == [b1, b2]
    bs = s.buildsets
    assert recorder.rows(sa.select(
        bs.c.id, bs.c.external_idstring, bs.c.reason, bs.c.submitted_at, bs.c.complete,
        bs.c.complete_at, bs.c.results, bs.c.parent_buildid, bs.c.parent_relationship,
        bs.c.rebuilt_buildid)) == [(bsid, "ext", "because", NOW, 0, None, -1, None, None,
                                     None)]
    assert sorted(recorder.rows(sa.select(
        s.buildset_properties.c.buildsetid, s.buildset_properties.c.property_name,
        s.buildset_properties.c.property_value))) == [
        (bsid, "a", json.dumps([1, "src"])),
        (bsid, "b", json.dumps([{"x": [1, "y"]}, "other"]))]
    ss = s.sourcestamps
    [(ssid, ss_hash, created_at, patchid)] = recorder.rows(
        sa.select(ss.c.id, ss.c.ss_hash, ss.c.created_at, ss.c.patchid))
    assert ss_hash == hashes.ss_hash("main", "abc", "https://r", "p", "cb", None)
    assert (created_at, patchid) == (NOW, None)
    assert recorder.rows(sa.select(s.buildset_sourcestamps.c.buildsetid,
                                   s.buildset_sourcestamps.c.sourcestampid)) == [(bsid, ssid)]
    br = s.buildrequests
    assert recorder.rows(sa.select(
        br.c.id, br.c.buildsetid, br.c.builderid, br.c.priority, br.c.complete, br.c.results,
        br.c.submitted_at, br.c.complete_at, br.c.waited_for).order_by(br.c.id)) == [
        (brids[b1], bsid, b1, 5, 0, -1, NOW, None, 1),
        (brids[b2], bsid, b2, 5, 0, -1, NOW, None, 1)]
    assert count(recorder, s.buildrequest_claims) == 0


@pytest_twisted.ensureDeferred
async def test_add_buildset_events_buildset_first_then_each_request(
        recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    bsid, brids = await recorder.updates.addBuildset(
        waited_for=False, scheduler="sched", sourcestamps=[STAMP], reason="r",
        properties={}, builderids=[b1, b2], parent_relationship="rel")
    events = recorder.take()
    r1, r2 = brids[b1], brids[b2]
    assert ["/".join(k) for k, _ in events] == [
        f"buildsets/{bsid}/new",
        f"buildsets/{bsid}/builders/{b1}/buildrequests/{r1}/new",
        f"buildrequests/{r1}/new", f"builders/{b1}/buildrequests/{r1}/new",
        f"buildsets/{bsid}/builders/{b2}/buildrequests/{r2}/new",
        f"buildrequests/{r2}/new", f"builders/{b2}/buildrequests/{r2}/new"]
    entity = await get(recorder, f"buildsets/{bsid}")
    expected = {k: v for k, v in entity.items() if k != "parent_relationship"}
    expected.update(scheduler="sched", results=None)
    assert events[0][1] == expected
    assert entity["results"] == -1 and entity["parent_relationship"] == "rel"
    assert events[1][1] == events[2][1] == events[3][1] == await get(
        recorder, f"buildrequests/{r1}")
    assert events[4][1] == await get(recorder, f"buildrequests/{r2}")
    assert events[1][1]["properties"] is None and events[1][1]["results"] == -1


@pytest_twisted.ensureDeferred
async def test_add_buildset_without_builders_is_complete_at_once(recorder: Recorder) -> None:
    recorder.connector.clock = lambda: NOW + 7
    bsid, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP])
    assert brids == {}
    assert recorder.keys() == [f"buildsets/{bsid}/new", f"buildsets/{bsid}/complete"]
    assert recorder.rows(sa.select(s.buildsets.c.complete, s.buildsets.c.results,
                                   s.buildsets.c.complete_at)) == [(1, 0, NOW + 7)]


@pytest_twisted.ensureDeferred
async def test_add_buildset_reuses_stamps_and_ids(recorder: Recorder) -> None:
    b1 = builder(recorder, "b1")
    bsid1, _ = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                  builderids=[b1])
    [ssid] = [r[0] for r in recorder.rows(sa.select(s.sourcestamps.c.id))]
    # the same stamp as a dict, as an id, and twice: one stamp, one link
    bsid2, _ = await recorder.updates.addBuildset(
        waited_for=False, sourcestamps=[dict(STAMP), ssid, ssid], builderids=[b1])
    assert count(recorder, s.sourcestamps) == 1
    assert recorder.rows(sa.select(s.buildset_sourcestamps.c.sourcestampid)
                         .where(s.buildset_sourcestamps.c.buildsetid == bsid2)) == [(ssid,)]
    assert bsid2 == bsid1 + 1


@pytest_twisted.ensureDeferred
async def test_a_patch_makes_a_new_stamp_each_time(recorder: Recorder) -> None:
    stamp = dict(STAMP, patch_body="--- a\n+++ b\n", patch_level=1, patch_author="me",
                 patch_subdir="sub")
    await recorder.updates.addBuildset(waited_for=False, sourcestamps=[stamp, stamp])
    p = s.patches
    rows = recorder.rows(sa.select(p.c.id, p.c.patchlevel, p.c.patch_base64,
                                   p.c.patch_author, p.c.patch_comment, p.c.subdir)
                         .order_by(p.c.id))
    body = base64.b64encode(b"--- a\n+++ b\n").decode()
    assert [r[1:] for r in rows] == [(1, body, "me", "", "sub")] * 2
    ss = s.sourcestamps
    stamps = recorder.rows(sa.select(ss.c.patchid, ss.c.ss_hash).order_by(ss.c.id))
    assert stamps == [(pid, hashes.ss_hash("main", "abc", "https://r", "p", "cb", pid))
                      for pid, *_ in rows]
    [bsid] = [r[0] for r in recorder.rows(sa.select(s.buildsets.c.id))]
    entity = await get(recorder, f"buildsets/{bsid}")
    assert [st["patch"]["level"] for st in entity["sourcestamps"]] == [1, 1]


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"builderids": [999]}, NotFound, "builderid 999"),
    ({"sourcestamps": [999]}, NotFound, "ssid 999"),
    ({"sourcestamps": [{"branch": "x", "repository": "", "project": ""}]}, InvalidParams,
     "sourcestamps[0].codebase"),
    ({"sourcestamps": [dict(STAMP, color="red")]}, InvalidParams, "'color'"),
    ({"sourcestamps": [dict(STAMP, patch_body="x")]}, InvalidParams, "patch_level"),
    ({"sourcestamps": ["abc"]}, InvalidParams, "sourcestamps[0]"),
    ({"sourcestamps": []}, InvalidParams, "sourcestamps"),
    ({"properties": {"a": 1}}, InvalidParams, "properties.a"),
    ({"properties": {"a": (1, 2)}}, InvalidParams, "properties.a"),
    ({"properties": {"a": ({1, 2}, "s")}}, InvalidParams, "properties.a"),
    ({"reason": "r" * 257}, InvalidParams, "reason"),
    ({"waited_for": 1}, InvalidParams, "waited_for"),
    ({"priority": "high"}, InvalidParams, "priority"),
    ({"priority": 2**31}, InvalidParams, "priority"),
    ({"builderids": ["b1"]}, InvalidParams, "builderids"),
    ({"parent_buildid": 999}, NotFound, "parent_buildid"),
    ({"rebuilt_buildid": 999}, NotFound, "rebuilt_buildid"),
])
@pytest_twisted.ensureDeferred
async def test_add_buildset_errors_write_nothing(recorder: Recorder, kwargs: dict[str, Any],
                                                  error: type[Exception], text: str) -> None:
    b1 = builder(recorder, "b1")
    args: dict[str, Any] = {"waited_for": False, "sourcestamps": [STAMP],
                            "builderids": [b1]}
    args.update(kwargs)
    with pytest.raises(error) as info:
        await recorder.updates.addBuildset(**args)
    assert text in str(info.value)
    assert recorder.take() == []
    for table in (s.buildsets, s.buildrequests, s.sourcestamps, s.patches):
        assert count(recorder, table) == 0


# -- find_or_create_sourcestamp ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_find_or_create_sourcestamp(recorder: Recorder) -> None:
    def twice(write: Any) -> tuple[int, int, int]:
        first = find_or_create_sourcestamp(write, branch=None, revision=None,
                                           repository="", project="", codebase="")
        again = find_or_create_sourcestamp(write, branch=None, revision=None,
                                           repository="", project="", codebase="")
        other = find_or_create_sourcestamp(write, branch="b", revision=None,
                                           repository="", project="", codebase="")
        return first, again, other

    first, again, other = await recorder.connector.transact(twice)
    assert first == again != other
    assert recorder.rows(sa.select(s.sourcestamps.c.ss_hash)
                         .where(s.sourcestamps.c.id == first)) == [
        (hashes.ss_hash(None, None, "", "", "", None),)]
    assert recorder.take() == []  # upstream publishes nothing about source stamps


# -- maybeBuildsetComplete and completeBuildRequests -------------------------------------------

def test_worst_status_ranks_as_upstream() -> None:
    assert worst_status(0, 6) == 6
    assert worst_status(3, 0) == 0
    assert worst_status(0, -1) == 0
    assert worst_status(None, 2) == 2
    assert worst_status(5, 4) == 5
    assert worst_status(1, 2) == 2
    assert worst_status(None, -1) is None


@pytest_twisted.ensureDeferred
async def test_complete_requests_then_buildset(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    bsid, brids = await recorder.updates.addBuildset(
        waited_for=False, sourcestamps=[STAMP], builderids=[b1, b2])
    r1, r2 = brids[b1], brids[b2]
    recorder.take()
    await recorder.updates.maybeBuildsetComplete(bsid)
    assert recorder.take() == []
    recorder.connector.clock = lambda: NOW + 10
    assert await recorder.updates.completeBuildRequests([r1], 2) is True
    events = recorder.take()
    assert ["/".join(k) for k, _ in events] == [
        f"buildsets/{bsid}/builders/{b1}/buildrequests/{r1}/complete",
        f"buildrequests/{r1}/complete", f"builders/{b1}/buildrequests/{r1}/complete"]
    assert events[0][1] == await get(recorder, f"buildrequests/{r1}")
    assert events[0][1]["complete"] is True and events[0][1]["results"] == 2
    br = s.buildrequests
    assert recorder.rows(sa.select(br.c.complete, br.c.results, br.c.complete_at)
                         .order_by(br.c.id)) == [(1, 2, NOW + 10), (0, -1, None)]
    when = datetime.datetime.fromtimestamp(NOW + 20, datetime.UTC)
    assert await recorder.updates.completeBuildRequests([r2], 3, complete_at=when) is True
    events = recorder.take()
    assert [k[-1] for k, _ in events] == ["complete"] * 4
    assert events[-1][0] == ("buildsets", str(bsid), "complete")
    assert events[-1][1] == await get(recorder, f"buildsets/{bsid}")
    assert recorder.rows(sa.select(s.buildsets.c.complete, s.buildsets.c.results,
                                   s.buildsets.c.complete_at)) == [(1, 2, NOW + 10)]
    assert recorder.rows(sa.select(br.c.complete_at).where(br.c.id == r2)) == [(NOW + 20,)]
    # complete already: False, nothing written or published
    assert await recorder.updates.completeBuildRequests([r1, r2], 0) is False
    await recorder.updates.maybeBuildsetComplete(bsid)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_complete_is_all_or_nothing_and_refuses_retry(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    _, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                  builderids=[b1, b2])
    r1, r2 = brids[b1], brids[b2]
    await recorder.updates.completeBuildRequests([r1], 0)
    recorder.take()
    assert await recorder.updates.completeBuildRequests([r2, r1], 0) is False
    assert await recorder.updates.completeBuildRequests([r2, 999], 0) is False
    assert recorder.rows(sa.select(s.buildrequests.c.complete)
                         .where(s.buildrequests.c.id == r2)) == [(0,)]
    with pytest.raises(InvalidParams, match="RETRY"):
        await recorder.updates.completeBuildRequests([r2], 5)
    with pytest.raises(InvalidParams, match="results"):
        await recorder.updates.completeBuildRequests([r2], 2**15)
    assert await recorder.updates.completeBuildRequests([], 0) is True
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_maybe_buildset_complete_of_a_missing_buildset(recorder: Recorder) -> None:
    with pytest.raises(NotFound):
        await recorder.updates.maybeBuildsetComplete(42)


# -- claims ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_claim_with_the_servers_own_master(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    bsid, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                     builderids=[b1, b2])
    r1, r2 = brids[b1], brids[b2]
    recorder.take()
    assert await recorder.updates.claimBuildRequests([r1, r2]) is True
    [(masterid, name, active, last_active)] = recorder.rows(sa.select(
        s.masters.c.id, s.masters.c.name, s.masters.c.active, s.masters.c.last_active))
    assert (name, active, last_active) == (OWN_MASTER_NAME, 0, NOW)
    c = s.buildrequest_claims
    assert sorted(recorder.rows(sa.select(c.c.brid, c.c.masterid, c.c.claimed_at))) == [
        (r1, masterid, NOW), (r2, masterid, NOW)]
    events = recorder.take()
    assert ["/".join(k) for k, _ in events] == [
        f"buildsets/{bsid}/builders/{b1}/buildrequests/{r1}/claimed",
        f"buildrequests/{r1}/claimed", f"builders/{b1}/buildrequests/{r1}/claimed",
        f"buildsets/{bsid}/builders/{b2}/buildrequests/{r2}/claimed",
        f"buildrequests/{r2}/claimed", f"builders/{b2}/buildrequests/{r2}/claimed"]
    message = events[0][1]
    assert message == await get(recorder, f"buildrequests/{r1}")
    assert (message["claimed"], message["claimed_by_masterid"], message["claimed_at"]) == (
        True, masterid, NOW)
    # a second claim: False, nothing changes
    assert await recorder.updates.claimBuildRequests([r2]) is False
    assert count(recorder, c) == 2
    assert recorder.take() == []
    # unclaim deletes this master's claims and says so
    await recorder.updates.unclaimBuildRequests([r1])
    assert recorder.rows(sa.select(c.c.brid)) == [(r2,)]
    events = recorder.take()
    assert [k[-1] for k, _ in events] == ["unclaimed"] * 3
    assert events[0][1] == await get(recorder, f"buildrequests/{r1}")
    assert events[0][1]["claimed"] is False


@pytest_twisted.ensureDeferred
async def test_claims_are_all_or_nothing(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    _, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                  builderids=[b1, b2])
    r1, r2 = brids[b1], brids[b2]
    await recorder.updates.claimBuildRequests([r1])
    recorder.take()
    assert await recorder.updates.claimBuildRequests([r2, r1]) is False
    assert recorder.rows(sa.select(s.buildrequest_claims.c.brid)) == [(r1,)]
    with pytest.raises(NotFound):
        await recorder.updates.claimBuildRequests([r2, 999])
    with pytest.raises(NotFound):
        await recorder.updates.unclaimBuildRequests([999])
    with pytest.raises(InvalidParams):
        await recorder.updates.claimBuildRequests("12")
    assert await recorder.updates.claimBuildRequests([]) is True
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_claims_of_the_embedding_master(recorder: Recorder) -> None:
    b1 = builder(recorder, "b1")
    mine, other = master(recorder, "host:/mine"), master(recorder, "host:/other")
    _, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                  builderids=[b1])
    r1 = brids[b1]
    _, brids2 = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                   builderids=[b1])
    r2 = brids2[b1]
    recorder.connector.masterid = mine
    when = datetime.datetime.fromtimestamp(NOW - 5, datetime.UTC)
    assert await recorder.updates.claimBuildRequests([r1], claimed_at=when) is True
    insert(recorder, s.buildrequest_claims, brid=r2, masterid=other, claimed_at=NOW)
    c = s.buildrequest_claims
    assert recorder.rows(sa.select(c.c.masterid, c.c.claimed_at).where(c.c.brid == r1)) == [
        (mine, NOW - 5)]
    assert count(recorder, s.masters) == 2  # no row of the server's own
    # unclaim releases only this master's claims (upstream's), but says unclaimed
    await recorder.updates.unclaimBuildRequests([r1, r2])
    assert recorder.rows(sa.select(c.c.brid, c.c.masterid)) == [(r2, other)]


# -- rebuildBuildrequest -----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_rebuild(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    m = master(recorder, "host:/m")
    other = dict(STAMP, codebase="other")
    bsid, brids = await recorder.updates.addBuildset(
        waited_for=True, scheduler="s", sourcestamps=[STAMP, other], reason="first",
        properties={"p": ("v", "Force Build Form")}, builderids=[b1, b2],
        external_idstring="ext", parent_relationship="rel", priority=3)
    r1 = brids[b1]
    first = build(recorder, b1, r1, m, 1)
    build(recorder, b1, r1, m, 2)
    request = await get(recorder, f"buildrequests/{r1}")
    recorder.take()
    bsid2, brids2 = await recorder.updates.rebuildBuildrequest(request)
    assert list(brids2) == [b1]
    events = recorder.take()
    assert events[0][0] == ("buildsets", str(bsid2), "new")
    assert events[0][1]["scheduler"] == "rebuild"
    new = await get(recorder, f"buildsets/{bsid2}")
    old = await get(recorder, f"buildsets/{bsid}")
    assert (new["reason"], new["rebuilt_buildid"], new["external_idstring"],
            new["parent_relationship"]) == ("rebuild", first, "ext", "rel")
    assert [x["ssid"] for x in new["sourcestamps"]] == [x["ssid"] for x in old["sourcestamps"]]
    assert await get(recorder, f"buildsets/{bsid2}/properties") == {
        "p": ["v", "Force Build Form"]}
    br = s.buildrequests
    assert recorder.rows(sa.select(br.c.builderid, br.c.waited_for, br.c.priority)
                         .where(br.c.id == brids2[b1])) == [(b1, 0, 0)]
    # a rebuild of the rebuild keeps the first build it came from
    request2 = await get(recorder, f"buildrequests/{brids2[b1]}")
    build(recorder, b1, brids2[b1], m, 3)
    bsid3, _ = await recorder.updates.rebuildBuildrequest(request2)
    assert (await get(recorder, f"buildsets/{bsid3}"))["rebuilt_buildid"] == first
    # a request that never built: no rebuilt build
    request3 = await get(recorder, f"buildrequests/{brids[b2]}")
    bsid4, _ = await recorder.updates.rebuildBuildrequest(request3)
    assert (await get(recorder, f"buildsets/{bsid4}"))["rebuilt_buildid"] is None
    with pytest.raises(NotFound):
        await recorder.updates.rebuildBuildrequest(dict(request, buildsetid=999))
    with pytest.raises(InvalidParams):
        await recorder.updates.rebuildBuildrequest({"buildrequestid": 1})


# -- concurrent writers ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_concurrent_add_buildset(recorder: Recorder) -> None:
    b1, b2 = builder(recorder, "b1"), builder(recorder, "b2")
    results = await defer.gatherResults([
        d(recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                       properties={"n": (n, "test")}, builderids=[b1, b2]))
        for n in range(32)], consumeErrors=True)
    bsids = [bsid for bsid, _ in results]
    brids = [brid for _, ids in results for brid in ids.values()]
    assert len(set(bsids)) == 32 and len(set(brids)) == 64
    assert count(recorder, s.buildsets) == 32
    assert count(recorder, s.buildrequests) == 64
    assert count(recorder, s.sourcestamps) == 1
    assert count(recorder, s.buildset_sourcestamps) == 32
    assert sorted(json.loads(r[0])[0] for r in recorder.rows(
        sa.select(s.buildset_properties.c.property_value))) == list(range(32))
    keys = recorder.keys()
    assert sorted(k for k in keys if k.startswith("buildsets/") and k.count("/") == 2) == \
        sorted(f"buildsets/{bsid}/new" for bsid in bsids)
    assert len([k for k in keys if k.startswith("buildrequests/")]) == 64


@pytest_twisted.ensureDeferred
async def test_concurrent_claims_one_wins(recorder: Recorder) -> None:
    b1 = builder(recorder, "b1")
    _, brids = await recorder.updates.addBuildset(waited_for=False, sourcestamps=[STAMP],
                                                  builderids=[b1])
    answers = await defer.gatherResults([
        d(recorder.updates.claimBuildRequests([brids[b1]])) for _ in range(8)],
        consumeErrors=True)
    assert sorted(answers) == [False] * 7 + [True]
    assert count(recorder, s.buildrequest_claims) == 1
    assert count(recorder, s.masters) == 1


# -- the building blocks, inside another write -------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_add_buildset_in_composes_with_other_writes(recorder: Recorder) -> None:
    b1 = builder(recorder, "b1")

    def write(w: Any) -> tuple[bool, bool]:
        ssid = find_or_create_sourcestamp(w, branch="b", revision="r", repository="x",
                                          project="", codebase="")
        bsid, brids = add_buildset_in(
            w, scheduler="force", sourcestamps=[ssid], reason="r", properties={},
            builderids=[b1], submitted_at=NOW - 100)
        early = maybe_buildset_complete_in(w, bsid)
        complete_in(w, list(brids.values()), 0)
        late = maybe_buildset_complete_in(w, bsid)
        return early, late

    early, late = await recorder.connector.transact(write)
    assert (early, late) == (False, False)  # complete_in completed the buildset already
    assert recorder.rows(sa.select(s.buildsets.c.submitted_at, s.buildsets.c.complete)) == [
        (NOW - 100, 1)]
    assert recorder.rows(sa.select(s.buildrequests.c.submitted_at)) == [(NOW - 100,)]
    events = [key[-1] for key, _ in recorder.take()]
    assert events == ["new"] * 4 + ["complete"] * 4


@pytest_twisted.ensureDeferred
async def test_the_last_requests_completed_at_once_complete_the_buildset_once(
        recorder: Recorder) -> None:
    # two writes complete the last two requests of a buildset at the same time: one of
    # them must see both complete (the buildset row is locked while it looks)
    builders = [builder(recorder, f"b{i}") for i in range(2)]
    for _ in range(8):
        bsid, brids = await recorder.updates.addBuildset(
            waited_for=False, scheduler="s", reason="r", builderids=builders,
            sourcestamps=[{"branch": "main", "revision": "r1", "repository": "",
                           "project": "", "codebase": ""}])
        recorder.take()
        await defer.gatherResults([
            d(recorder.updates.completeBuildRequests([brids[b]], 0)) for b in builders])
        assert recorder.rows(sa.select(s.buildsets.c.complete, s.buildsets.c.results)
                             .where(s.buildsets.c.id == bsid)) == [(1, 0)]
        assert recorder.keys().count(f"buildsets/{bsid}/complete") == 1
