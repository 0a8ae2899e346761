"""Test result sets and test results over HTTP, and the test result sets of a commit range."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server
from tests.www.test_paths import assert_not_found

trs, tr = s.test_result_sets, s.test_results

SET_FIELDS = ["test_result_setid", "builderid", "buildid", "stepid", "description", "category",
              "value_unit", "tests_passed", "tests_failed", "complete"]


def set_rows(api: Api, *where: Any) -> list[dict[str, Any]]:
    """The expected entities of the sets matching ``where``, by id."""
    rows = api.rows(sa.select(trs).where(*where).order_by(trs.c.id))
    return [dict(zip(SET_FIELDS, (r.id, r.builderid, r.buildid, r.stepid, r.description,
                                  r.category, r.value_unit, r.tests_passed, r.tests_failed,
                                  bool(r.complete)), strict=True)) for r in rows]


def result_rows(api: Api, setid: int) -> list[dict[str, Any]]:
    names, paths = s.test_names, s.test_code_paths
    rows = api.rows(
        sa.select(tr, names.c.name, paths.c.path)
        .outerjoin_from(tr, names, sa.and_(names.c.id == tr.c.test_nameid,
                                           names.c.builderid == tr.c.builderid))
        .outerjoin(paths, sa.and_(paths.c.id == tr.c.test_code_pathid,
                                  paths.c.builderid == tr.c.builderid))
        .where(tr.c.test_result_setid == setid).order_by(tr.c.id))
    return [{"test_resultid": r.id, "builderid": r.builderid,
             "test_result_setid": r.test_result_setid, "test_name": r.name,
             "test_code_path": r.path, "line": r.line, "duration_ns": r.duration_ns,
             "value": r.value} for r in rows]


def first_set(api: Api) -> Any:
    return api.rows(sa.select(trs).order_by(trs.c.id).limit(1))[0]


# -- test result sets -----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_sets_collection(api):
    r = await api.get("test_result_sets")
    assert r.code == 200
    expected = set_rows(api)
    assert expected, "the demo data has test result sets"
    assert r.json == {"test_result_sets": expected, "meta": {"total": len(expected)}}
    assert list(r.json["test_result_sets"][0]) == sorted(SET_FIELDS)  # keys sorted on the wire


@pytest_twisted.ensureDeferred
async def test_sets_filters_order_and_paging(api):
    everything = set_rows(api)
    r = await api.get("test_result_sets?complete=true&order=-tests_passed")
    want = sorted([x for x in everything if x["complete"]],
                  key=lambda x: (-x["tests_passed"], x["test_result_setid"]))
    assert r.json == {"test_result_sets": want, "meta": {"total": len(want)}}
    r = await api.get("test_result_sets?complete=false")
    assert r.json == {"test_result_sets": [], "meta": {"total": 0}}
    r = await api.get("test_result_sets?tests_failed__gt=0&field=test_result_setid"
                      "&field=tests_failed")
    assert r.json["test_result_sets"] == [
        {"test_result_setid": x["test_result_setid"], "tests_failed": x["tests_failed"]}
        for x in everything if x["tests_failed"]]
    r = await api.get("test_result_sets?order=-test_result_setid&limit=2&offset=1")
    assert r.json["test_result_sets"] == everything[::-1][1:3]
    assert r.json["meta"]["total"] == len(everything)
    r = await api.get("test_result_sets?description__contains=pytest")
    assert r.json["meta"]["total"] == 0  # contains is case-sensitive
    r = await api.get("test_result_sets?description__contains=Pytest")
    assert r.json == {"test_result_sets": everything, "meta": {"total": len(everything)}}


@pytest_twisted.ensureDeferred
async def test_sets_bad_input_is_400(api):
    for query, error in [
            ("complete=maybe", "invalid filter value for complete"),
            ("tests_passed=abc", "invalid filter value for tests_passed"),
            ("order=nosuch", "no such field 'nosuch'"),
            ("nosuch=1", "unrecognized query parameter 'nosuch'"),
            ("buildid__lt=1&buildid__lt=2",
             "invalid filter buildid__lt: operator 'lt' takes one value"),
            ("limit=-1", "invalid limit: must not be negative"),
            ("field=buildid&order=stepid", "cannot order on un-selected fields")]:
        r = await api.get(f"test_result_sets?{query}")
        assert (r.code, r.json) == (400, {"error": error}), query


@pytest_twisted.ensureDeferred
async def test_sets_of_builder_build_and_step(api):
    one = first_set(api)
    builder = api.rows(sa.select(s.builders.c.name).where(s.builders.c.id == one.builderid))
    expected = set_rows(api, trs.c.builderid == one.builderid)
    for path in (f"builders/{one.builderid}", f"builders/{builder[0][0]}"):
        r = await api.get(f"{path}/test_result_sets")
        assert r.code == 200
        assert r.json["test_result_sets"] == expected
    r = await api.get(f"builds/{one.buildid}/test_result_sets")
    assert r.json["test_result_sets"] == set_rows(api, trs.c.buildid == one.buildid)
    r = await api.get(f"steps/{one.stepid}/test_result_sets?complete=true")
    assert r.json["test_result_sets"] == set_rows(api, trs.c.stepid == one.stepid)


@pytest_twisted.ensureDeferred
async def test_sets_of_parents_without_sets(api):
    build = api.rows(sa.select(sa.func.min(s.builds.c.id)).where(
        s.builds.c.id.not_in(sa.select(trs.c.buildid))))[0][0]
    step = api.rows(sa.select(sa.func.min(s.steps.c.id)).where(
        s.steps.c.id.not_in(sa.select(trs.c.stepid))))[0][0]
    for path in (f"builds/{build}", f"steps/{step}"):
        r = await api.get(f"{path}/test_result_sets")
        assert (r.code, r.json) == (200, {"test_result_sets": [], "meta": {"total": 0}})


@pytest_twisted.ensureDeferred
async def test_sets_of_missing_parents_are_404(api):
    # upstream: 500 for a missing build or step (COMPAT #4, #12)
    for path in ("builds/999999", "steps/999999", "builders/999999", "builders/no-such"):
        r = await api.get(f"{path}/test_result_sets")
        assert r.code == 404, path
        assert r.json["error"].startswith("not found")


@pytest_twisted.ensureDeferred
async def test_single_set(api):
    one = set_rows(api)[0]
    r = await api.get(f"test_result_sets/{one['test_result_setid']}")
    assert r.code == 200
    assert r.json == {"test_result_sets": [one], "meta": {}}
    r = await api.get(f"test_result_set/{one['test_result_setid']}?field=category")
    assert r.json == {"test_result_sets": [{"category": one["category"]}], "meta": {}}
    assert_not_found(await api.get("test_result_sets/999999"), {"test_result_setid": 999999})
    r = await api.get(f"test_result_sets/{one['test_result_setid']}?complete=true")
    assert (r.code, r.json) == (400, {"error": "this is not a collection"})
    r = await api.get("test_result_sets/+1")
    assert (r.code, r.json) == (404, {"error": "Invalid path: test_result_sets/+1"})


# -- test results -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_results_of_a_set(api):
    one = first_set(api)
    expected = result_rows(api, one.id)
    assert expected and all(x["test_name"] and x["test_code_path"] for x in expected)
    r = await api.get(f"test_result_sets/{one.id}/results")
    assert r.code == 200
    assert r.json == {"test_results": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_results_filters_and_order(api):
    one = first_set(api)
    expected = result_rows(api, one.id)
    name = expected[-1]["test_name"]
    r = await api.get(f"test_result_sets/{one.id}/results?test_name={name}")
    assert r.json["test_results"] == [x for x in expected if x["test_name"] == name]
    path = expected[0]["test_code_path"]
    r = await api.get(f"test_result_sets/{one.id}/results?test_code_path__contains={path[6:]}"
                      "&order=-duration_ns&field=test_resultid&field=duration_ns"
                      "&field=test_code_path")
    want = sorted((x for x in expected if path[6:] in x["test_code_path"]),
                  key=lambda x: -x["duration_ns"])
    assert r.json["test_results"] == [
        {k: x[k] for k in ("test_resultid", "duration_ns", "test_code_path")} for x in want]
    r = await api.get(f"test_result_sets/{one.id}/results?order=test_name&limit=3")
    assert r.json["test_results"] == sorted(
        expected, key=lambda x: (x["test_name"], x["test_resultid"]))[:3]
    assert r.json["meta"]["total"] == len(expected)
    r = await api.get(f"test_result_sets/{one.id}/results?test_name__isnull=true")
    assert r.json == {"test_results": [], "meta": {"total": 0}}
    for query, error in [
            ("line=x", "invalid filter value for line"),
            ("test_name__gt=a&test_name__gt=b",
             "invalid filter test_name__gt: operator 'gt' takes one value"),
            ("order=nope", "no such field 'nope'")]:
        r = await api.get(f"test_result_sets/{one.id}/results?{query}")
        assert (r.code, r.json) == (400, {"error": error}), query


@pytest_twisted.ensureDeferred
async def test_results_of_a_missing_set_are_404(api):
    # upstream answers [] (COMPAT #12)
    assert_not_found(await api.get("test_result_sets/999999/results"),
                     {"test_result_setid": 999999})


# -- commit ranges ------------------------------------------------------------------------

def _commit_chain(api: Api) -> list[Any]:
    """The commits of the codebase with the longest history, from the oldest."""
    cc = s.codebase_commits
    codebaseid = api.rows(sa.select(cc.c.codebaseid).group_by(cc.c.codebaseid)
                          .order_by(sa.func.count().desc(), cc.c.codebaseid).limit(1))[0][0]
    rows = api.rows(sa.select(cc).where(cc.c.codebaseid == codebaseid))
    by_parent = {r.parent_commitid: r for r in rows}
    chain = [by_parent[None]]
    while chain[-1].id in by_parent:
        chain.append(by_parent[chain[-1].id])
    assert len(chain) >= 4, "the demo data has a linear history"
    return chain


@pytest_twisted.ensureDeferred
async def test_commit_range_missing_parents_are_404(api):
    chain = _commit_chain(api)
    cbid, first, last = chain[0].codebaseid, chain[0].id, chain[-1].id
    other = api.rows(sa.select(s.codebase_commits.c.id).where(
        s.codebase_commits.c.codebaseid != cbid).limit(1))[0][0]
    for codebase, c1, c2 in ((999999, first, last), (cbid, 999999, last),
                             (cbid, first, 999999), (cbid, other, last)):
        r = await api.get(f"codebases/{codebase}/commit_range/{c1}/{c2}/test_result_sets")
        assert_not_found(r, {"codebaseid": codebase, "commitid1": c1, "commitid2": c2})
    r = await api.get(f"codebases/{cbid}/commit_range/{first}/{last}/test_result_sets?x=1")
    assert (r.code, r.json) == (400, {"error": "unrecognized query parameter 'x'"})


@pytest_twisted.ensureDeferred
async def test_commit_range_not_an_ancestor_is_empty(api):
    chain = _commit_chain(api)
    cbid = chain[0].codebaseid
    r = await api.get(f"codebases/{cbid}/commit_range/{chain[-1].id}/{chain[0].id}"
                      "/test_result_sets")
    assert (r.code, r.json) == (200, {"test_result_sets": [], "meta": {"total": 0}})


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def linked(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, int]]]:
    """A demo server of its own whose builds with test result sets ran the revisions of
    some commits (the shared demo data has none). Yields it and the names it made."""
    yield from own_server(request, tmp_path_factory, "linked", _link)


def _link(api: Api) -> dict[str, int]:
    chain = _commit_chain(api)
    sets = api.rows(sa.select(trs.c.id, s.buildrequests.c.buildsetid)
                    .join_from(trs, s.builds, s.builds.c.id == trs.c.buildid)
                    .join(s.buildrequests, s.buildrequests.c.id == s.builds.c.buildrequestid)
                    .order_by(trs.c.id).limit(2))
    (set_a, bs_a), (set_b, bs_b) = sets
    # c2 and c3 were both built in A's buildset, c4 in B's; c0, c1 and c5+ in none.
    c = {f"c{i}": row.id for i, row in enumerate(chain)}
    links = [(chain[2], bs_a), (chain[3], bs_a), (chain[4], bs_b)]
    with api.db.engine.begin() as conn:
        for commit, bsid in links:
            ssid = conn.execute(s.sourcestamps.insert().values(
                ss_hash=f"{commit.id:040x}", revision=commit.revision, repository="r",
                codebase="cb", project="p", created_at=0)).inserted_primary_key[0]
            conn.execute(s.buildset_sourcestamps.insert().values(
                buildsetid=bsid, sourcestampid=ssid))
        # one result whose name is missing and whose code path is another builder's
        builderid = conn.execute(sa.select(trs.c.builderid).where(trs.c.id == set_a)).scalar()
        pathid = conn.execute(s.test_code_paths.insert().values(
            builderid=builderid + 1, path="elsewhere.py")).inserted_primary_key[0]
        odd = conn.execute(tr.insert().values(
            builderid=builderid, test_result_setid=set_a, test_nameid=None,
            test_code_pathid=pathid, line=None, duration_ns=None,
            value="2.5")).inserted_primary_key[0]
    return {"codebaseid": chain[0].codebaseid, "A": set_a, "B": set_b, "odd": odd, **c}


@pytest_twisted.ensureDeferred
async def test_commit_range_sets(linked):
    api, n = linked
    expected = {x["test_result_setid"]: x for x in set_rows(api)}

    async def ids(first: str, last: str, query: str = "") -> list[int]:
        r = await api.get(f"codebases/{n['codebaseid']}/commit_range/{n[first]}/{n[last]}"
                          f"/test_result_sets{query}")
        assert r.code == 200
        for x in r.json["test_result_sets"]:
            assert x == expected[x["test_result_setid"]]
        return [x["test_result_setid"] for x in r.json["test_result_sets"]]

    both = [n["A"], n["B"]]
    assert await ids("c0", "c4") == both
    assert await ids("c2", "c3") == [n["A"]]  # A once, though two of its revisions match
    assert await ids("c3", "c4") == both
    assert await ids("c4", "c4") == [n["B"]]
    assert await ids("c2", "c2") == [n["A"]]
    assert await ids("c0", "c1") == []
    assert await ids("c4", "c2") == []
    assert await ids("c0", "c4", "?order=-test_result_setid") == both[::-1]
    assert await ids("c0", "c4", f"?buildid__ne={expected[n['A']]['buildid']}") == [n["B"]]
    path = (f"codebases/{n['codebaseid']}/commit_range/{n['c0']}/{n['c4']}"
            "/test_result_sets?limit=1")
    r = await api.get(path)
    assert r.json == {"test_result_sets": [expected[n["A"]]], "meta": {
        "total": 2, "links": {"next": f"http://testserver/api/v2/{path}&offset=1"}}}


def test_commit_range_depth(linked):
    from buildbot_rest.data.resources.test_result_sets import commit_range
    api, n = linked
    with api.db.engine.connect() as conn:
        assert commit_range(conn, n["c0"], n["c4"]) == [n[f"c{i}"] for i in range(5)]
        assert commit_range(conn, n["c0"], n["c4"], depth=4) == [n[f"c{i}"] for i in range(5)]
        assert commit_range(conn, n["c0"], n["c4"], depth=3) == []
        assert commit_range(conn, n["c4"], n["c0"]) == []


@pytest_twisted.ensureDeferred
async def test_results_with_names_of_other_builders(linked):
    api, n = linked
    builderid = api.rows(sa.select(trs.c.builderid).where(trs.c.id == n["A"]))[0][0]
    r = await api.get(f"test_result_sets/{n['A']}/results?test_name__isnull=true")
    assert r.json["test_results"] == [{
        "test_resultid": n["odd"], "builderid": builderid,
        "test_result_setid": n["A"], "test_name": None, "test_code_path": None,
        "line": None, "duration_ns": None, "value": "2.5"}]
    r = await api.get(f"test_result_sets/{n['A']}/results?order=-test_name")
    assert r.json["test_results"][-1]["test_resultid"] == n["odd"]  # null last descending
    r = await api.get(f"test_result_sets/{n['A']}/results?order=test_name")
    assert r.json["test_results"][0]["test_resultid"] == n["odd"]  # null first ascending
    assert sorted(r.json["test_results"], key=lambda x: x["test_resultid"]) == result_rows(
        api, n["A"])
