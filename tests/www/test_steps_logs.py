"""Steps and logs over HTTP: every path form, missing parents, filters in SQL."""

from __future__ import annotations

import json

import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s


def expected_steps(api, buildid):
    st = s.steps
    rows = api.rows(sa.select(st).where(st.c.buildid == buildid).order_by(st.c.number))
    return [{
        "stepid": r.id, "number": r.number, "name": r.name, "buildid": r.buildid,
        "started_at": r.started_at, "locks_acquired_at": r.locks_acquired_at,
        "complete": r.complete_at is not None, "complete_at": r.complete_at,
        "results": r.results, "state_string": r.state_string,
        "urls": json.loads(r.urls_json), "hidden": bool(r.hidden),
    } for r in rows]


def build_of(api, buildid):
    b, bl = s.builds, s.builders
    return api.rows(sa.select(b.c.number, bl.c.id, bl.c.name)
                    .join_from(b, bl, bl.c.id == b.c.builderid).where(b.c.id == buildid))[0]


def step_with_urls(api):
    st = s.steps
    return api.rows(sa.select(st.c.id, st.c.buildid, st.c.number, st.c.name)
                    .where(st.c.urls_json != "[]").order_by(st.c.id).limit(1))[0]


@pytest_twisted.ensureDeferred
async def test_steps_of_a_build_every_form(api):
    _, buildid, _, _ = step_with_urls(api)
    number, builderid, buildername = build_of(api, buildid)
    expected = expected_steps(api, buildid)
    assert any(step["urls"] for step in expected)
    for path in (f"builds/{buildid}/steps", f"builders/{builderid}/builds/{number}/steps",
                 f"builders/{buildername}/builds/{number}/steps"):
        r = await api.get(path)
        assert r.code == 200, path
        assert r.json == {"steps": expected, "meta": {"total": len(expected)}}, path


@pytest_twisted.ensureDeferred
async def test_steps_missing_build_is_404(api):
    for path in ("builds/99999/steps", "builders/1/builds/99999/steps",
                 "builders/99999/builds/1/steps", "builders/nosuch/builds/1/steps"):
        r = await api.get(path)
        assert r.code == 404, path
        assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_step_single_every_form(api):
    stepid, buildid, number, name = step_with_urls(api)
    build_number, builderid, buildername = build_of(api, buildid)
    [expected] = [x for x in expected_steps(api, buildid) if x["stepid"] == stepid]
    paths = [f"steps/{stepid}"]
    for build in (f"builds/{buildid}", f"builders/{builderid}/builds/{build_number}",
                  f"builders/{buildername}/builds/{build_number}"):
        paths += [f"{build}/steps/{name}", f"{build}/steps/{number}"]
    for path in paths:
        r = await api.get(path)
        assert (r.code, r.json) == (200, {"steps": [expected], "meta": {}}), path
    for path in ("steps/99999", f"builds/{buildid}/steps/nosuch", f"builds/{buildid}/steps/999",
                 "builds/99999/steps/0", f"builders/{builderid}/builds/99999/steps/0"):
        r = await api.get(path)
        assert r.code == 404, path


@pytest_twisted.ensureDeferred
async def test_step_filters_and_order_in_sql(api):
    _, buildid, _, _ = step_with_urls(api)
    expected = expected_steps(api, buildid)
    started = sorted(x["started_at"] for x in expected)[1]
    r = await api.get(f"builds/{buildid}/steps?started_at__gt={started}&order=-number")
    want = [x for x in expected if x["started_at"] > started][::-1]
    assert r.code == 200 and r.json["steps"] == want
    r = await api.get(f"builds/{buildid}/steps?complete=true&field=name&field=complete"
                      f"&limit=2&offset=1")
    complete = [x for x in expected if x["complete"]]
    assert r.json["steps"] == [{"name": x["name"], "complete": True} for x in complete[1:3]]
    assert r.json["meta"]["total"] == len(complete)
    r = await api.get(f"builds/{buildid}/steps?hidden=false&name__contains=t")
    assert r.json["steps"] == [x for x in expected if not x["hidden"] and "t" in x["name"]]
    r = await api.get(f"builds/{buildid}/steps?urls__contains=x")
    assert r.code == 400
    r = await api.get(f"builds/{buildid}/steps?order=-urls")
    assert (r.code, r.json) == (400, {"error": "invalid order -urls: 'urls' is a list, "
                                      "which has no order"})
    r = await api.get(f"steps/{expected[0]['stepid']}?name=x")
    assert (r.code, r.json) == (400, {"error": "this is not a collection"})


def expected_logs(api, stepid):
    lg = s.logs
    rows = api.rows(sa.select(lg).where(lg.c.stepid == stepid).order_by(lg.c.id))
    return [{"logid": r.id, "name": r.name, "slug": r.slug, "stepid": r.stepid,
             "complete": bool(r.complete), "num_lines": r.num_lines, "type": r.type}
            for r in rows]


def step_with_logs(api, min_logs=2):
    lg, st = s.logs, s.steps
    rows = api.rows(sa.select(lg.c.stepid).group_by(lg.c.stepid)
                    .having(sa.func.count() >= min_logs).order_by(lg.c.stepid).limit(1))
    stepid = rows[0][0]
    buildid, number, name = api.rows(sa.select(st.c.buildid, st.c.number, st.c.name)
                                     .where(st.c.id == stepid))[0]
    return stepid, buildid, number, name


def step_forms(api, stepid, buildid, number, name):
    build_number, builderid, buildername = build_of(api, buildid)
    forms = [f"steps/{stepid}"]
    for build in (f"builds/{buildid}", f"builders/{builderid}/builds/{build_number}",
                  f"builders/{buildername}/builds/{build_number}"):
        forms += [f"{build}/steps/{name}", f"{build}/steps/{number}"]
    return forms


@pytest_twisted.ensureDeferred
async def test_logs_every_form(api):
    stepid, buildid, number, name = step_with_logs(api)
    expected = expected_logs(api, stepid)
    assert len(expected) >= 2
    for step in step_forms(api, stepid, buildid, number, name):
        r = await api.get(f"{step}/logs")
        assert r.json == {"logs": expected, "meta": {"total": len(expected)}}, step
        for log in expected:
            r = await api.get(f"{step}/logs/{log['slug']}")
            assert (r.code, r.json) == (200, {"logs": [log], "meta": {}}), step
    r = await api.get(f"logs/{expected[1]['logid']}")
    assert r.json == {"logs": [expected[1]], "meta": {}}


@pytest_twisted.ensureDeferred
async def test_logs_missing(api):
    stepid, buildid, _, _ = step_with_logs(api)
    for path in ("logs/99999", f"steps/{stepid}/logs/nosuch", "steps/99999/logs",
                 "steps/99999/logs/stdio", f"builds/{buildid}/steps/nosuch/logs",
                 f"builds/{buildid}/steps/999/logs/stdio", "builders/nosuch/builds/1/steps/0/logs"):
        r = await api.get(path)
        assert r.code == 404, path
        assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_logs_filters(api):
    stepid, _, _, _ = step_with_logs(api)
    expected = expected_logs(api, stepid)
    r = await api.get(f"steps/{stepid}/logs?type=s")
    assert r.json["logs"] == [x for x in expected if x["type"] == "s"]
    r = await api.get(f"steps/{stepid}/logs?order=-num_lines&field=slug&field=num_lines")
    want = sorted(expected, key=lambda x: (-x["num_lines"], x["logid"]))
    assert r.json["logs"] == [{"slug": x["slug"], "num_lines": x["num_lines"]} for x in want]
    r = await api.get(f"steps/{stepid}/logs?type=a%00")
    assert r.code == 400
    r = await api.get(f"steps/{stepid}/logs?complete=true&limit=1")
    assert r.json["meta"]["total"] == sum(x["complete"] for x in expected)
