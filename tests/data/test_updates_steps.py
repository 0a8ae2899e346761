"""Update methods of steps: what each stores (exact values, as upstream stores them), its
events (upstream's routing keys in order, each message what a GET of the step answers),
its errors, on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.db import schema as s
from tests.data.conftest import Recorder
from tests.data.test_updates_builds import NOW, new_build, seed

st = s.steps


def step_row(rec: Recorder, stepid: int) -> dict[str, Any]:
    return dict(rec.rows(sa.select(st).where(st.c.id == stepid))[0]._mapping)


async def build(rec: Recorder) -> int:
    return await new_build(rec, seed(rec))


def step_keys(buildid: int, stepid: int, event: str) -> list[str]:
    return [f"builds/{buildid}/steps/{stepid}/{event}", f"steps/{stepid}/{event}"]


async def check_events(rec: Recorder, buildid: int, stepid: int, event: str) -> None:
    events = rec.take()
    assert ["/".join(k) for k, _ in events] == step_keys(buildid, stepid, event)
    current = await rec.connector.get(f"steps/{stepid}")
    assert all(m == current for _, m in events)


@pytest_twisted.ensureDeferred
async def test_add_step_stores_upstream_values(recorder: Recorder) -> None:
    buildid = await build(recorder)
    stepid, number, name = await recorder.updates.addStep(buildid, "compile")
    assert (number, name) == (0, "compile")
    assert step_row(recorder, stepid) == {
        "id": stepid, "number": 0, "name": "compile", "buildid": buildid,
        "started_at": None, "locks_acquired_at": None, "complete_at": None,
        "state_string": "pending", "results": None, "urls_json": "[]", "hidden": 0}
    await check_events(recorder, buildid, stepid, "new")
    assert (await recorder.updates.addStep(buildid, "test"))[1:] == (1, "test")


@pytest_twisted.ensureDeferred
async def test_a_taken_name_gets_upstream_suffix(recorder: Recorder) -> None:
    buildid = await build(recorder)
    long = "x" * 50
    answers = [await recorder.updates.addStep(buildid, n)
               for n in ("sh", "sh", "sh", long, long)]
    assert [(num, name) for _, num, name in answers] == [
        (0, "sh"), (1, "sh_1"), (2, "sh_2"), (3, long), (4, "x" * 48 + "_1")]
    await recorder.updates.addStep(buildid, "sh_1")  # taken by a renamed one
    rows = recorder.rows(sa.select(st.c.name).order_by(st.c.number))
    assert rows[-1][0] == "sh_1_1"


@pytest_twisted.ensureDeferred
async def test_concurrent_add_step_gets_distinct_numbers_and_names(
        recorder: Recorder) -> None:
    buildid = await build(recorder)
    answers = await defer.gatherResults([
        defer.ensureDeferred(recorder.updates.addStep(buildid, "same")) for _ in range(16)])
    assert sorted(num for _, num, _ in answers) == list(range(16))
    assert len({name for _, _, name in answers}) == 16


@pytest_twisted.ensureDeferred
async def test_step_lifecycle_stores_and_publishes(recorder: Recorder) -> None:
    buildid = await build(recorder)
    stepid, _, _ = await recorder.updates.addStep(buildid, "compile")
    recorder.take()

    await recorder.updates.startStep(stepid)
    assert (step_row(recorder, stepid)["started_at"],
            step_row(recorder, stepid)["locks_acquired_at"]) == (NOW, None)
    await check_events(recorder, buildid, stepid, "started")

    await recorder.updates.startStep(stepid, started_at=NOW - 5, locks_acquired=True)
    assert (step_row(recorder, stepid)["started_at"],
            step_row(recorder, stepid)["locks_acquired_at"]) == (NOW - 5, NOW - 5)
    await check_events(recorder, buildid, stepid, "started")

    recorder.connector.clock = lambda: NOW + 3
    await recorder.updates.set_step_locks_acquired_at(stepid)
    assert step_row(recorder, stepid)["locks_acquired_at"] == NOW + 3
    await check_events(recorder, buildid, stepid, "updated")
    await recorder.updates.set_step_locks_acquired_at(stepid, locks_acquired_at=NOW + 1)
    assert step_row(recorder, stepid)["locks_acquired_at"] == NOW + 1
    await check_events(recorder, buildid, stepid, "updated")

    await recorder.updates.setStepStateString(stepid, "compiling")
    assert step_row(recorder, stepid)["state_string"] == "compiling"
    await check_events(recorder, buildid, stepid, "updated")

    await recorder.updates.addStepURL(stepid, "log", "http://x/1")
    await check_events(recorder, buildid, stepid, "updated")
    await recorder.updates.addStepURL(stepid, "log", "http://x/1")  # once only
    await check_events(recorder, buildid, stepid, "updated")
    await recorder.updates.addStepURL(stepid, "é", "http://x/2")
    await check_events(recorder, buildid, stepid, "updated")
    assert step_row(recorder, stepid)["urls_json"] == json.dumps(
        [{"name": "log", "url": "http://x/1"}, {"name": "é", "url": "http://x/2"}])

    recorder.connector.clock = lambda: NOW + 9
    await recorder.updates.finishStep(stepid, 2, True)
    row = step_row(recorder, stepid)
    assert (row["complete_at"], row["results"], row["hidden"]) == (NOW + 9, 2, 1)
    await check_events(recorder, buildid, stepid, "finished")
    step = await recorder.connector.get(f"steps/{stepid}")
    assert step["complete"] is True
    assert step["hidden"] is True
    assert step["urls"] == [{"name": "log", "url": "http://x/1"},
                            {"name": "é", "url": "http://x/2"}]


@pytest_twisted.ensureDeferred
async def test_concurrent_urls_are_all_kept(recorder: Recorder) -> None:
    buildid = await build(recorder)
    stepid, _, _ = await recorder.updates.addStep(buildid, "s")
    await defer.gatherResults([
        defer.ensureDeferred(recorder.updates.addStepURL(stepid, f"u{i}", f"http://{i}"))
        for i in range(10)])
    urls = json.loads(step_row(recorder, stepid)["urls_json"])
    assert sorted(u["name"] for u in urls) == sorted(f"u{i}" for i in range(10))


@pytest.mark.parametrize(("method", "args"), [
    ("startStep", ()),
    ("set_step_locks_acquired_at", ()),
    ("setStepStateString", ("x",)),
    ("addStepURL", ("n", "u")),
    ("finishStep", (0, False)),
])
@pytest_twisted.ensureDeferred
async def test_a_missing_step_is_not_found(recorder: Recorder, method: str,
                                           args: tuple[Any, ...]) -> None:
    await build(recorder)
    with pytest.raises(NotFound, match="no step with stepid 999"):
        await getattr(recorder.updates, method)(999, *args)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_add_step_to_a_missing_build_is_not_found(recorder: Recorder) -> None:
    await build(recorder)
    with pytest.raises(NotFound, match="no build with buildid 999"):
        await recorder.updates.addStep(999, "s")
    assert recorder.rows(sa.select(st)) == []


@pytest.mark.parametrize(("method", "args", "name"), [
    ("addStep", ("1", "s"), "buildid"),
    ("addStep", (1, None), "name"),
    ("addStep", (1, "x" * 51), "name"),
    ("startStep", (1, "now"), "started_at"),
    ("startStep", (1, None, 1), "locks_acquired"),
    ("set_step_locks_acquired_at", (1, 1.5), "locks_acquired_at"),
    ("setStepStateString", (1, 3), "state_string"),
    ("addStepURL", (1, "n", None), "url"),
    ("addStepURL", (1, ["n"], "u"), "name"),
    ("finishStep", (1, "0", False), "results"),
    ("finishStep", (1, 0, None), "hidden"),
])
@pytest_twisted.ensureDeferred
async def test_bad_types_are_invalid_params(recorder: Recorder, method: str,
                                            args: tuple[Any, ...], name: str) -> None:
    buildid = await build(recorder)
    await recorder.updates.addStep(buildid, "s")
    before = recorder.rows(sa.select(st))
    recorder.take()
    with pytest.raises(InvalidParams) as e:
        await getattr(recorder.updates, method)(*args)
    assert list(e.value.errors) == [name]
    assert recorder.rows(sa.select(st)) == before
    assert recorder.take() == []
