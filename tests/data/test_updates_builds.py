"""Update methods of builds, build properties and build data: what each stores (exact
values, as upstream stores them), the events it publishes (upstream's routing keys, in
order, each message what a GET answers), and its errors, on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.data.errors import BadRequest, InvalidParams, NotFound
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.data.conftest import Recorder

NOW = 1700000000


def insert(rec: Recorder, table: sa.Table, **values: Any) -> int:
    with rec.connector.db.engine.begin() as conn:
        key = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def seed(rec: Recorder, *, active: int = 1) -> dict[str, int]:
    """A master (this process's), two builders, a worker and a build request."""
    ids: dict[str, int] = {}
    ids["masterid"] = insert(rec, s.masters, name="m1:/srv", name_hash=name_hash("m1:/srv"),
                             active=active, last_active=NOW)
    for key, name in (("builderid", "b1"), ("builderid2", "b2")):
        ids[key] = insert(rec, s.builders, name=name, name_hash=name_hash(name))
    ids["workerid"] = insert(rec, s.workers, name="w1", info="{}")
    ids["bsid"] = insert(rec, s.buildsets, submitted_at=NOW, complete=0, results=-1,
                         reason="r")
    ids["brid"] = insert(rec, s.buildrequests, buildsetid=ids["bsid"],
                         builderid=ids["builderid"], priority=0, complete=0, results=-1,
                         submitted_at=NOW)
    rec.connector.masterid = ids["masterid"]
    return ids


async def new_build(rec: Recorder, ids: dict[str, int], *, worker: bool = True) -> int:
    buildid, _ = await rec.updates.addBuild(ids["builderid"], ids["brid"],
                                            ids["workerid"] if worker else None)
    rec.take()
    return int(buildid)


async def get(rec: Recorder, path: str) -> Any:
    return await rec.connector.get(path)


def build_row(rec: Recorder, buildid: int) -> dict[str, Any]:
    row = rec.rows(sa.select(s.builds).where(s.builds.c.id == buildid))[0]
    return dict(row._mapping)


# -- addBuild ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_add_build_stores_upstream_values_and_publishes_nothing(
        recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid, number = await recorder.updates.addBuild(ids["builderid"], ids["brid"],
                                                      ids["workerid"])
    assert number == 1
    assert build_row(recorder, buildid) == {
        "id": buildid, "number": 1, "builderid": ids["builderid"],
        "buildrequestid": ids["brid"], "workerid": ids["workerid"],
        "masterid": ids["masterid"], "started_at": NOW, "complete_at": None,
        "locks_duration_s": 0, "state_string": "created", "results": None}
    assert recorder.take() == []
    # numbers go on per builder; another builder starts at 1
    assert (await recorder.updates.addBuild(ids["builderid"], ids["brid"], None))[1] == 2
    assert (await recorder.updates.addBuild(ids["builderid2"], ids["brid"], None))[1] == 1


@pytest_twisted.ensureDeferred
async def test_add_build_needs_this_process_master(recorder: Recorder) -> None:
    ids = seed(recorder)
    recorder.connector.masterid = None
    with pytest.raises(BadRequest, match=r"connector\.masterid"):
        await recorder.updates.addBuild(ids["builderid"], ids["brid"], ids["workerid"])
    assert recorder.rows(sa.select(s.builds)) == []


@pytest_twisted.ensureDeferred
async def test_add_build_refuses_missing_parents(recorder: Recorder) -> None:
    ids = seed(recorder)
    for args, what in (((999, ids["brid"], None), "no builder with builderid 999"),
                       ((ids["builderid"], 999, None), "no build request with buildrequestid 999"),
                       ((ids["builderid"], ids["brid"], 999), "no worker with workerid 999")):
        with pytest.raises(NotFound, match=what):
            await recorder.updates.addBuild(*args)
    recorder.connector.masterid = 999
    with pytest.raises(NotFound, match="no master with masterid 999"):
        await recorder.updates.addBuild(ids["builderid"], ids["brid"], None)
    assert recorder.rows(sa.select(s.builds)) == []


@pytest.mark.parametrize(("args", "name"), [
    (("1", 1, None), "builderid"),
    ((True, 1, None), "builderid"),
    ((1, None, None), "buildrequestid"),
    ((1, 1, 1.5), "workerid"),
    ((1, 1, 2**70), "workerid"),
])
@pytest_twisted.ensureDeferred
async def test_add_build_refuses_bad_types(recorder: Recorder, args: tuple[Any, ...],
                                           name: str) -> None:
    seed(recorder)
    with pytest.raises(InvalidParams) as e:
        await recorder.updates.addBuild(*args)
    assert list(e.value.errors) == [name]


@pytest_twisted.ensureDeferred
async def test_concurrent_add_build_gets_distinct_numbers(recorder: Recorder) -> None:
    ids = seed(recorder)
    results = await defer.gatherResults([
        defer.ensureDeferred(recorder.updates.addBuild(ids["builderid"], ids["brid"], None))
        for _ in range(32)])
    assert sorted(number for _, number in results) == list(range(1, 33))
    assert len({buildid for buildid, _ in results}) == 32
    numbers = recorder.rows(sa.select(s.builds.c.number).order_by(s.builds.c.number))
    assert [n for (n,) in numbers] == list(range(1, 33))


# -- events of builds ----------------------------------------------------------------------

def build_keys(ids: dict[str, int], buildid: int, number: int, event: str,
               workerid: Any) -> list[str]:
    return [f"builders/{ids['builderid']}/builds/{number}/{event}",
            f"builds/{buildid}/{event}",
            f"workers/{workerid}/builds/{buildid}/{event}"]


@pytest_twisted.ensureDeferred
async def test_build_events_carry_the_build_as_get_answers(recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    steps = [
        ("new", recorder.updates.generateNewBuildEvent, (buildid,)),
        ("update", recorder.updates.setBuildStateString, (buildid, "building")),
        ("update", recorder.updates.add_build_locks_duration, (buildid, 7)),
        ("finished", recorder.updates.finishBuild, (buildid, 2)),
    ]
    for event, method, args in steps:
        recorder.connector.clock = lambda: NOW + 10
        assert await method(*args) is None
        events = recorder.take()
        assert ["/".join(k) for k, _ in events] == build_keys(ids, buildid, 1, event,
                                                              ids["workerid"])
        current = await get(recorder, f"builds/{buildid}")
        assert current["properties"] == {}
        assert all(m == current for _, m in events)
    assert build_row(recorder, buildid) | {"id": 0} == {
        "id": 0, "number": 1, "builderid": ids["builderid"], "buildrequestid": ids["brid"],
        "workerid": ids["workerid"], "masterid": ids["masterid"], "started_at": NOW,
        "complete_at": NOW + 10, "locks_duration_s": 7, "state_string": "building",
        "results": 2}


@pytest_twisted.ensureDeferred
async def test_a_build_without_worker_is_published_under_workers_none(
        recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids, worker=False)
    await recorder.updates.generateNewBuildEvent(buildid)
    assert recorder.keys() == build_keys(ids, buildid, 1, "new", "None")


@pytest_twisted.ensureDeferred
async def test_locks_duration_adds_up(recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await recorder.updates.add_build_locks_duration(buildid, 3)
    await recorder.updates.add_build_locks_duration(buildid, 4)
    assert build_row(recorder, buildid)["locks_duration_s"] == 7


@pytest.mark.parametrize(("method", "args"), [
    ("generateNewBuildEvent", ()),
    ("setBuildStateString", ("x",)),
    ("add_build_locks_duration", (1,)),
    ("finishBuild", (0,)),
    ("setBuildProperty", ("p", 1, "src")),
    ("setBuildProperties", ({"p": (1, "src")},)),
    ("setBuildData", ("n", b"v", "src")),
])
@pytest_twisted.ensureDeferred
async def test_a_missing_build_is_not_found(recorder: Recorder, method: str,
                                            args: tuple[Any, ...]) -> None:
    seed(recorder)
    with pytest.raises(NotFound, match="no build with buildid 999"):
        await getattr(recorder.updates, method)(999, *args)
    assert recorder.take() == []


@pytest.mark.parametrize(("method", "args", "name"), [
    ("generateNewBuildEvent", ("1",), "buildid"),
    ("setBuildStateString", (1, None), "state_string"),
    ("setBuildStateString", (1, b"x"), "state_string"),
    ("add_build_locks_duration", (1, "3"), "duration_s"),
    ("finishBuild", (1, None), "results"),
    ("finishBuild", (1, False), "results"),
])
@pytest_twisted.ensureDeferred
async def test_bad_types_are_invalid_params(recorder: Recorder, method: str,
                                            args: tuple[Any, ...], name: str) -> None:
    ids = seed(recorder)
    await new_build(recorder, ids)
    with pytest.raises(InvalidParams) as e:
        await getattr(recorder.updates, method)(*args)
    assert list(e.value.errors) == [name]
    assert recorder.take() == []


# -- properties ----------------------------------------------------------------------------

def property_rows(rec: Recorder, buildid: int) -> list[tuple[str, str, str]]:
    bp = s.build_properties
    return [tuple(r) for r in rec.rows(sa.select(bp.c.name, bp.c.value, bp.c.source)
                                       .where(bp.c.buildid == buildid).order_by(bp.c.name))]


@pytest_twisted.ensureDeferred
async def test_set_build_properties_upserts_and_publishes_the_changed_ones(
        recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await recorder.updates.setBuildProperties(
        buildid, {"a": (1, "s1"), "b": ({"x": [1, "é"]}, "s2"), "c": ("t", "s3")})
    assert property_rows(recorder, buildid) == [
        ("a", "1", "s1"), ("b", json.dumps({"x": [1, "é"]}), "s2"), ("c", '"t"', "s3")]
    events = recorder.take()
    assert events == [(("builds", str(buildid), "properties", "update"),
                       {"a": [1, "s1"], "b": [{"x": [1, "é"]}, "s2"], "c": ["t", "s3"]})]
    # only what changed (value or source) is published; nothing when nothing changed
    await recorder.updates.setBuildProperties(
        buildid, {"a": (1, "s1"), "b": ({"x": [1, "é"]}, "other"), "c": ("u", "s3"),
                  "d": (None, "s4")})
    assert recorder.take() == [(("builds", str(buildid), "properties", "update"),
                                {"b": [{"x": [1, "é"]}, "other"], "c": ["u", "s3"],
                                 "d": [None, "s4"]})]
    await recorder.updates.setBuildProperties(buildid, {"a": (1, "s1")})
    assert recorder.take() == []
    assert property_rows(recorder, buildid) == [
        ("a", "1", "s1"), ("b", json.dumps({"x": [1, "é"]}), "other"), ("c", '"u"', "s3"),
        ("d", "null", "s4")]
    assert await get(recorder, f"builds/{buildid}/properties") == {
        "a": [1, "s1"], "b": [{"x": [1, "é"]}, "other"], "c": ["u", "s3"],
        "d": [None, "s4"]}


@pytest_twisted.ensureDeferred
async def test_set_build_property_publishes_under_the_property_name(
        recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await recorder.updates.setBuildProperty(buildid, "branch", "main", "Change")
    await recorder.updates.setBuildProperty(buildid, "branch", "main", "Change")
    message = {"branch": ["main", "Change"]}
    key = ("builds", str(buildid), "properties", "update")
    # published each time, as upstream, but not under upstream's literal "name"
    assert recorder.take() == [(key, message), (key, message)]
    assert property_rows(recorder, buildid) == [("branch", '"main"', "Change")]
    await recorder.updates.setBuildProperty(buildid, "branch", ["a", 2], "Other")
    assert property_rows(recorder, buildid) == [("branch", '["a", 2]', "Other")]


@pytest.mark.parametrize(("args", "name"), [
    (("p", object(), "s"), "p"),
    (("p", float("nan"), "s"), "p"),
    (("p", {1: {2}}, "s"), "p"),
    ((3, 1, "s"), "name"),
    (("p", 1, None), "source"),
    (("x" * 257, 1, "s"), "name"),
    (("p", 1, "s" * 257), "source"),
])
@pytest_twisted.ensureDeferred
async def test_property_values_must_be_json(recorder: Recorder, args: tuple[Any, ...],
                                            name: str) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    with pytest.raises(InvalidParams) as e:
        await recorder.updates.setBuildProperty(buildid, *args)
    assert list(e.value.errors) == [name]
    with pytest.raises(InvalidParams):
        await recorder.updates.setBuildProperties(buildid, {"ok": (1, "s"),
                                                            args[0]: args[1:]})
    with pytest.raises(InvalidParams):
        await recorder.updates.setBuildProperties(buildid, {"p": 1})
    assert property_rows(recorder, buildid) == []
    assert recorder.take() == []


# -- build data ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_set_build_data_inserts_and_replaces(recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await recorder.updates.setBuildData(buildid, "report", b"\x00\x01abc", "Step")
    await recorder.updates.setBuildData(buildid, "other", b"", "Step")
    bd = s.build_data

    def rows() -> list[tuple[Any, ...]]:
        return [(r.name, bytes(r.value), r.length, r.source) for r in recorder.rows(
            sa.select(bd).where(bd.c.buildid == buildid).order_by(bd.c.name))]

    assert rows() == [("other", b"", 0, "Step"), ("report", b"\x00\x01abc", 5, "Step")]
    await recorder.updates.setBuildData(buildid, "report", bytearray(b"xy"), "Again")
    assert rows() == [("other", b"", 0, "Step"), ("report", b"xy", 2, "Again")]
    assert recorder.take() == []
    assert await get(recorder, f"builds/{buildid}/data/report/value") == b"xy"


@pytest.mark.parametrize(("args", "name"), [
    (("n", "text", "s"), "value"),
    (("n", None, "s"), "value"),
    ((None, b"v", "s"), "name"),
    (("n", b"v", 5), "source"),
])
@pytest_twisted.ensureDeferred
async def test_set_build_data_refuses_bad_types(recorder: Recorder, args: tuple[Any, ...],
                                                name: str) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    with pytest.raises(InvalidParams) as e:
        await recorder.updates.setBuildData(buildid, *args)
    assert list(e.value.errors) == [name]
    assert recorder.rows(sa.select(s.build_data)) == []


@pytest_twisted.ensureDeferred
async def test_concurrent_set_build_data_keeps_one_row(recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await defer.gatherResults([
        defer.ensureDeferred(recorder.updates.setBuildData(buildid, "n", bytes([i]), "s"))
        for i in range(8)])
    assert len(recorder.rows(sa.select(s.build_data))) == 1


class _Properties:
    """The part of upstream's IProperties that setBuildProperties reads."""

    def __init__(self, props: dict[str, tuple[Any, str]]) -> None:
        self.props = props

    def getProperties(self) -> _Properties:
        return self

    def asDict(self) -> dict[str, tuple[Any, str]]:
        return dict(self.props)


@pytest_twisted.ensureDeferred
async def test_set_build_properties_takes_upstreams_properties_object(
        recorder: Recorder) -> None:
    ids = seed(recorder)
    buildid = await new_build(recorder, ids)
    await recorder.updates.setBuildProperties(buildid, _Properties({"a": (1, "s")}))
    assert property_rows(recorder, buildid) == [("a", "1", "s")]
    with pytest.raises(InvalidParams):
        await recorder.updates.setBuildProperties(buildid, [("a", (1, "s"))])
