"""The update methods of test result sets and test results: what they store, their
events, their errors, and COMPAT 34 (durations beyond the 32-bit column)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]
import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import ILogObserver, globalLogPublisher

from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import Conflict, InvalidParams, NotFound
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.mq import SimpleMQ
from tests.data.conftest import Recorder
from tests.data.test_updates_logs import make_step

INT32_MAX = 2**31 - 1


def set_rows(recorder: Any) -> list[tuple[Any, ...]]:
    t = s.test_result_sets
    return [tuple(r) for r in recorder.rows(
        sa.select(t.c.id, t.c.builderid, t.c.buildid, t.c.stepid, t.c.description,
                  t.c.category, t.c.value_unit, t.c.tests_passed, t.c.tests_failed,
                  t.c.complete).order_by(t.c.id))]


def result_rows(recorder: Any) -> list[tuple[Any, ...]]:
    t = s.test_results
    return [tuple(r) for r in recorder.rows(
        sa.select(t.c.builderid, t.c.test_result_setid, t.c.test_nameid, t.c.test_code_pathid,
                  t.c.line, t.c.duration_ns, t.c.value).order_by(t.c.id))]


def names(recorder: Any, table: sa.Table, column: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in recorder.rows(
        sa.select(table.c.id, table.c.builderid, table.c[column]).order_by(table.c.id))]


async def new_set(recorder: Any, ids: dict[str, int]) -> int:
    setid: int = await recorder.updates.addTestResultSet(
        ids["builderid"], ids["buildid"], ids["stepid"], "unit tests", "pass_fail", "boolean")
    return setid


@pytest_twisted.ensureDeferred
async def test_add_and_complete_a_set(recorder: Recorder) -> None:
    ids = make_step(recorder)
    setid = await new_set(recorder, ids)
    other = await recorder.updates.addTestResultSet(
        ids["builderid"], ids["buildid"], ids["stepid"], None, "perf", "ms")
    assert set_rows(recorder) == [
        (setid, ids["builderid"], ids["buildid"], ids["stepid"], "unit tests", "pass_fail",
         "boolean", None, None, 0),
        (other, ids["builderid"], ids["buildid"], ids["stepid"], None, "perf", "ms", None,
         None, 0),
    ]
    first = await recorder.connector.get(f"test_result_sets/{setid}")
    assert first["complete"] is False
    events = recorder.take()
    assert [k for k, _ in events] == [("test_result_sets", str(setid), "new"),
                                      ("test_result_sets", str(other), "new")]
    assert events[0][1] == first
    assert await recorder.updates.completeTestResultSet(setid, 10, 2) is None
    # counts only when given, as upstream
    await recorder.updates.completeTestResultSet(other, tests_failed=3)
    assert [r[7:] for r in set_rows(recorder)] == [(10, 2, 1), (None, 3, 1)]
    done = await recorder.connector.get(f"test_result_sets/{setid}")
    assert done | {"complete": False, "tests_passed": None, "tests_failed": None} == first
    events = recorder.take()
    assert events[0] == (("test_result_sets", str(setid), "completed"), done)
    assert events[1][0] == ("test_result_sets", str(other), "completed")


@pytest_twisted.ensureDeferred
async def test_set_errors(recorder: Recorder) -> None:
    ids = make_step(recorder)
    other = make_step(recorder, builder="b2")
    b, bd, st = ids["builderid"], ids["buildid"], ids["stepid"]
    for args, error, match in (
            ((999, bd, st), NotFound, "no builder with builderid 999"),
            ((b, 999, st), NotFound, "no build with buildid 999"),
            ((b, bd, 999), NotFound, "no step with stepid 999"),
            ((other["builderid"], bd, st), InvalidParams, "buildid"),
            ((b, bd, other["stepid"]), InvalidParams, "stepid"),
            (("1", bd, st), InvalidParams, "builderid")):
        with pytest.raises(error, match=match):
            await recorder.updates.addTestResultSet(*args, "d", "c", "u")
    with pytest.raises(InvalidParams, match="category"):
        await recorder.updates.addTestResultSet(b, bd, st, "d", None, "u")
    with pytest.raises(InvalidParams, match="value_unit"):
        await recorder.updates.addTestResultSet(b, bd, st, "d", "c", 3)
    assert set_rows(recorder) == []
    setid = await new_set(recorder, ids)
    await recorder.updates.completeTestResultSet(setid)
    recorder.take()
    with pytest.raises(Conflict, match="already complete"):
        await recorder.updates.completeTestResultSet(setid, 1, 1)
    with pytest.raises(NotFound, match="no test result set with test_result_setid 999"):
        await recorder.updates.completeTestResultSet(999)
    with pytest.raises(InvalidParams, match="tests_passed"):
        await recorder.updates.completeTestResultSet(setid, "1")
    assert set_rows(recorder)[0][7:] == (None, None, 1)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_add_test_results(recorder: Recorder) -> None:
    ids = make_step(recorder)
    b2 = make_step(recorder, builder="b2")
    setid = await new_set(recorder, ids)
    set2 = await new_set(recorder, b2)
    builderid = ids["builderid"]
    recorder.take()
    await recorder.updates.addTestResults(builderid, setid, [
        {"test_name": "test_a", "value": "1"},
        {"test_name": "test_b", "test_code_path": "t/b.py", "line": 10, "duration_ns": 5,
         "value": "0"},
        {"test_code_path": "t/c.py", "value": "1"},
        {"test_name": "test_a", "test_code_path": "t/b.py", "line": None, "value": "x"},
        {"test_name": "\u00e9\u4e2d", "test_code_path": None, "value": "1"},
    ])
    # interned per builder: the same name on another builder is another row
    await recorder.updates.addTestResults(b2["builderid"], set2, [
        {"test_name": "test_a", "value": "1"}])
    await recorder.updates.addTestResults(builderid, setid, [
        {"test_name": "test_b", "test_code_path": "t/c.py", "value": "2"}])
    await recorder.updates.addTestResults(builderid, setid, [])
    tn = names(recorder, s.test_names, "name")
    assert [r[1:] for r in tn] == [(builderid, "test_a"), (builderid, "test_b"),
                                   (builderid, "\u00e9\u4e2d"), (b2["builderid"], "test_a")]
    tp = names(recorder, s.test_code_paths, "path")
    assert [r[1:] for r in tp] == [(builderid, "t/b.py"), (builderid, "t/c.py")]
    a, bn, u, a2 = (r[0] for r in tn)
    pb, pc = (r[0] for r in tp)
    assert result_rows(recorder) == [
        (builderid, setid, a, None, None, None, "1"),
        (builderid, setid, bn, pb, 10, 5, "0"),
        (builderid, setid, None, pc, None, None, "1"),
        (builderid, setid, a, pb, None, None, "x"),
        (builderid, setid, u, None, None, None, "1"),
        (b2["builderid"], set2, a2, None, None, None, "1"),
        (builderid, setid, bn, pc, None, None, "2"),
    ]
    assert recorder.take() == []  # declared, never sent (as upstream)
    items, total = await recorder.connector.get(f"test_result_sets/{setid}/results")
    assert total == 6
    assert [(i["test_name"], i["test_code_path"], i["line"], i["duration_ns"], i["value"])
            for i in items] == [
        ("test_a", None, None, None, "1"), ("test_b", "t/b.py", 10, 5, "0"),
        (None, "t/c.py", None, None, "1"), ("test_a", "t/b.py", None, None, "x"),
        ("\u00e9\u4e2d", None, None, None, "1"), ("test_b", "t/c.py", None, None, "2")]


@pytest_twisted.ensureDeferred
async def test_a_duration_beyond_32_bits_is_clamped_and_logged_once(recorder: Recorder) -> None:
    ids = make_step(recorder)
    setid = await new_set(recorder, ids)
    seen: list[Any] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    try:
        await recorder.updates.addTestResults(ids["builderid"], setid, [
            {"test_name": "slow", "duration_ns": 3 * 10**9, "value": "1"},
            {"test_name": "slower", "duration_ns": 2**70, "value": "1"},
            {"test_name": "fits", "duration_ns": INT32_MAX, "value": "1"},
            {"test_name": "negative", "duration_ns": -(2**40), "value": "1"},
        ])
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [r[5] for r in result_rows(recorder)] == [INT32_MAX, INT32_MAX, INT32_MAX,
                                                     -(2**31)]
    clamps = [e for e in seen if "duration_ns" in e.get("log_format", "")]
    assert len(clamps) == 1
    assert clamps[0]["count"] == 3


@pytest_twisted.ensureDeferred
async def test_test_results_errors(recorder: Recorder) -> None:
    ids = make_step(recorder)
    other = make_step(recorder, builder="b2")
    setid = await new_set(recorder, ids)
    builderid = ids["builderid"]
    for values, match in (
            ([{"value": "1"}], r"result_values\[0\]: must hold a test_name"),
            ([{"test_name": "a"}], r"result_values\[0\]\.value: required"),
            ([{"test_name": "a", "value": "1"}, {"test_name": 3, "value": "1"}],
             r"result_values\[1\]\.test_name"),
            ([{"test_name": "a", "value": 1}], r"\.value: must be a string"),
            ([{"test_name": "a", "value": "1", "line": 2**31}], r"\.line: is out of range"),
            ([{"test_name": "a", "value": "1", "duration_ns": "5"}], r"\.duration_ns"),
            (["x"], r"result_values\[0\]: must be an object"),
            ({"test_name": "a"}, "result_values: must be a list")):
        with pytest.raises(InvalidParams, match=match):
            await recorder.updates.addTestResults(builderid, setid, values)
    ok = [{"test_name": "a", "value": "1"}]
    with pytest.raises(NotFound, match="no builder with builderid 999"):
        await recorder.updates.addTestResults(999, setid, ok)
    with pytest.raises(NotFound, match="no test result set with test_result_setid 999"):
        await recorder.updates.addTestResults(builderid, 999, ok)
    with pytest.raises(InvalidParams, match="builderid"):
        await recorder.updates.addTestResults(other["builderid"], setid, ok)
    assert result_rows(recorder) == []
    assert names(recorder, s.test_names, "name") == []


@pytest_twisted.ensureDeferred
async def test_concurrent_batches_intern_each_name_once(recorder: Recorder) -> None:
    ids = make_step(recorder)
    setid = await new_set(recorder, ids)
    db = Database(recorder.connector.db.url, pool_size=8)
    db.prepare_sync(create=False)
    db.start()
    batch = [{"test_name": f"test_{i}", "test_code_path": f"t/{i % 7}.py", "value": "1"}
             for i in range(300)]
    try:
        connector = DataConnector(db, config=recorder.connector.config, mq=SimpleMQ())  # type: ignore[arg-type]
        await defer.gatherResults([
            defer.Deferred.fromCoroutine(
                connector.updates.addTestResults(ids["builderid"], setid, batch))
            for _ in range(8)])
    finally:
        db.stop()
    assert len(names(recorder, s.test_names, "name")) == 300
    assert len(names(recorder, s.test_code_paths, "path")) == 7
    assert len(result_rows(recorder)) == 2400
    _, total = await recorder.connector.get(f"test_result_sets/{setid}/results",
                                            {"test_name": "test_5"})
    assert total == 8
