"""Projects, codebases, commits (and the commit graph) and branches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest import demo
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.www.conftest import DEMO_BUILDS, DEMO_SEED, Api, _serve

# -- a demo database with a few more rows: inactive projects and a commit graph ----------

#: upstream's own commit graph for its tests (shifted), plus a long chain for the depth
G = 5000
GRAPH = {106: None, 107: 106, 108: 107, 109: 108, 110: 109, 119: 108, 120: 119}
CHAIN = 7000  # 7000 <- 7001 <- ... <- 7149


def _add_extra_rows(conn: sa.Connection) -> None:
    conn.execute(s.projects.insert(), [
        {"id": 10, "name": "Orphans", "name_hash": name_hash("Orphans"), "slug": "orphans"},
        {"id": 11, "name": "Idle", "name_hash": name_hash("Idle"), "slug": "idle"},
    ])
    # a builder of project 11 that no master serves
    conn.execute(s.builders.insert(), [{"id": 100, "name": "idle-builder", "projectid": 11,
                                        "name_hash": name_hash("idle-builder")}])
    conn.execute(s.codebases.insert(), [{"id": 10, "projectid": 10, "name": "graph",
                                         "name_hash": name_hash("graph"), "slug": "graph"}])
    commits = [(G + c, None if p is None else G + p) for c, p in GRAPH.items()]
    commits += [(CHAIN + i, None if i == 0 else CHAIN + i - 1) for i in range(150)]
    conn.execute(s.codebase_commits.insert(), [
        {"id": c, "codebaseid": 10, "author": "a", "committer": None, "comments": "c",
         "when_timestamp": 1700000000 + c, "revision": f"rev{c}", "parent_commitid": p}
        for c, p in commits])
    conn.execute(s.codebase_branches.insert(), [
        {"id": 10, "codebaseid": 10, "name": "main", "name_hash": name_hash("main"),
         "commitid": G + 110, "last_timestamp": 1700000000}])
    # a scheduler whose ``enabled`` is NULL: upstream reads it as disabled
    conn.execute(s.schedulers.insert(), [{"id": 50, "name": "null-enabled",
                                          "name_hash": name_hash("null-enabled"),
                                          "enabled": None}])


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def extra(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Api]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('projects')) / 'extra.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    db = Database(url, pool_size=1)
    db.prepare_sync()
    demo.populate(db.engine, builds=DEMO_BUILDS, seed=DEMO_SEED)
    with db.engine.begin() as conn:
        _add_extra_rows(conn)
    db.engine.dispose()
    yield from _serve(url)


# -- projects -------------------------------------------------------------------------------

def expected_projects(api: Any, active: bool | None = None) -> list[dict[str, Any]]:
    p, b, bm = s.projects, s.builders, s.builder_masters
    served = {pid for (pid,) in api.rows(
        sa.select(b.c.projectid).join_from(b, bm, bm.c.builderid == b.c.id))}
    out = []
    for r in api.rows(sa.select(p).order_by(p.c.name, p.c.id)):
        if active is not None and (r.id in served) != active:
            continue
        out.append({"projectid": r.id, "name": r.name, "slug": r.slug, "active": active,
                    "description": r.description, "description_format": r.description_format,
                    "description_html": r.description_html})
    return out


@pytest_twisted.ensureDeferred
async def test_projects_collection(api):
    r = await api.get("projects")
    assert r.code == 200
    expected = expected_projects(api)
    assert len(expected) == 3
    assert r.json == {"projects": expected, "meta": {"total": len(expected)}}
    r = await api.get("project")
    assert r.json["projects"] == expected


@pytest.mark.parametrize("query,active", [
    ("active=true", True), ("active=false", False), ("active=1", True), ("active__ne=true", False),
    ("active__eq=false", False), ("active__ne=false", True),
])
@pytest_twisted.ensureDeferred
async def test_projects_active(extra, query, active):
    r = await extra.get("projects?" + query)
    assert r.code == 200
    expected = expected_projects(extra, active)
    assert expected  # both kinds exist in this database
    assert r.json == {"projects": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_projects_active_no_duplicates(api):
    # every demo project has several builders on several masters: still one item each
    r = await api.get("projects?active=true")
    ids = [x["projectid"] for x in r.json["projects"]]
    assert len(ids) == len(set(ids)) == 3
    assert r.json["meta"]["total"] == 3


@pytest_twisted.ensureDeferred
async def test_projects_active_paged_and_ordered(extra):
    expected = expected_projects(extra, False)
    r = await extra.get("projects?active=false&order=-projectid&limit=1")
    want = sorted(expected, key=lambda x: -x["projectid"])[:1]
    assert r.json["projects"] == want
    assert r.json["meta"]["total"] == len(expected)
    r = await extra.get("projects?active=false&field=name&field=active")
    assert r.json["projects"] == [{"name": x["name"], "active": False} for x in expected]


@pytest_twisted.ensureDeferred
async def test_project_single(api):
    for project in expected_projects(api):
        r = await api.get(f"projects/{project['projectid']}")
        assert (r.code, r.json) == (200, {"projects": [project], "meta": {}})
    r = await api.get("projects/Widgets")
    assert r.json["projects"] == [x for x in expected_projects(api) if x["name"] == "Widgets"]
    r = await api.get("projects/1?field=slug")
    assert r.json == {"projects": [{"slug": "widgets"}], "meta": {}}


@pytest.mark.parametrize("path", [
    "projects/99", "projects/NoSuchProject", "projects/widgets", "projects/Gizmo%20Servers",
    "projects/1x",
])
@pytest_twisted.ensureDeferred
async def test_project_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest.mark.parametrize("query,predicate", [
    ("name=Widgets", lambda x: x["name"] == "Widgets"),
    ("slug__contains=o", lambda x: "o" in x["slug"]),
    ("description__isnull=true", lambda x: x["description"] is None),
    ("description_format=markdown", lambda x: x["description_format"] == "markdown"),
    ("projectid__lt=3", lambda x: x["projectid"] < 3),
])
@pytest_twisted.ensureDeferred
async def test_projects_filters(api, query, predicate):
    r = await api.get("projects?" + query)
    expected = [x for x in expected_projects(api) if predicate(x)]
    assert expected
    assert r.json == {"projects": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_projects_order_page(api):
    expected = expected_projects(api)
    r = await api.get("projects?order=-projectid&limit=2&offset=1")
    assert r.json["projects"] == sorted(expected, key=lambda x: -x["projectid"])[1:3]
    assert r.json["meta"]["total"] == 3


@pytest.mark.parametrize("query", [
    "active=maybe", "name=Gizmo%00Server", "projectid=x", "order=nosuch", "nosuch=1",
    "field=name&active=true",
])
@pytest_twisted.ensureDeferred
async def test_projects_bad_query(api, query):
    r = await api.get("projects?" + query)
    assert r.code == 400
    assert "error" in r.json


# -- codebases ------------------------------------------------------------------------------

def expected_codebases(api: Any) -> list[dict[str, Any]]:
    return [{"codebaseid": r.id, "projectid": r.projectid, "name": r.name, "slug": r.slug}
            for r in api.rows(sa.select(s.codebases).order_by(s.codebases.c.id))]


@pytest_twisted.ensureDeferred
async def test_codebases(api):
    expected = expected_codebases(api)
    assert expected
    r = await api.get("codebases")
    assert r.json == {"codebases": expected, "meta": {"total": len(expected)}}
    r = await api.get("codebase?projectid=2&name=lib")
    assert r.json["codebases"] == [x for x in expected if x["name"] == "lib"]
    r = await api.get("codebases?order=-codebaseid&limit=1")
    assert r.json["codebases"] == expected[-1:]
    for cb in expected:
        r = await api.get(f"codebases/{cb['codebaseid']}")
        assert (r.code, r.json) == (200, {"codebases": [cb], "meta": {}})
        r = await api.get(f"projects/{cb['projectid']}/codebases/{cb['name']}")
        assert (r.code, r.json) == (200, {"codebases": [cb], "meta": {}})


@pytest.mark.parametrize("path", [
    "codebases/99", "projects/1/codebases/app", "projects/99/codebases/app",
    "projects/2/codebases/App", "projects/2/codebases/nosuch",
])
@pytest_twisted.ensureDeferred
async def test_codebase_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest.mark.parametrize("query", ["name=not%00an+identifier", "projectid=x",
                                   "slug__gt=a&slug__gt=b"])
@pytest_twisted.ensureDeferred
async def test_codebases_bad_query(api, query):
    r = await api.get("codebases?" + query)
    assert r.code == 400


# -- commits --------------------------------------------------------------------------------

def expected_commits(api: Any, codebaseid: int | None = None) -> list[dict[str, Any]]:
    cc = s.codebase_commits
    stmt = sa.select(cc).order_by(cc.c.id)
    if codebaseid is not None:
        stmt = stmt.where(cc.c.codebaseid == codebaseid)
    return [{"commitid": r.id, "codebaseid": r.codebaseid, "author": r.author,
             "committer": r.committer, "comments": r.comments,
             "when_timestamp": r.when_timestamp, "revision": r.revision,
             "parent_commitid": r.parent_commitid} for r in api.rows(stmt)]


@pytest_twisted.ensureDeferred
async def test_commits(api):
    for cb in expected_codebases(api):
        expected = expected_commits(api, cb["codebaseid"])
        assert expected
        r = await api.get(f"codebases/{cb['codebaseid']}/commits")
        assert r.json == {"commits": expected, "meta": {"total": len(expected)}}
        for commit in expected:
            r = await api.get(f"commits/{commit['commitid']}")
            assert (r.code, r.json) == (200, {"commits": [commit], "meta": {}})
            r = await api.get(f"codebases/{cb['codebaseid']}/commits_by_revision/"
                              f"{commit['revision']}")
            assert (r.code, r.json) == (200, {"commits": [commit], "meta": {}})


@pytest_twisted.ensureDeferred
async def test_commits_filters_order(extra):
    expected = expected_commits(extra, 10)
    r = await extra.get("codebases/10/commits?revision=rev5110")
    assert r.json["commits"] == [x for x in expected if x["revision"] == "rev5110"]
    r = await extra.get("codebases/10/commits?parent_commitid__isnull=true")
    assert [x["commitid"] for x in r.json["commits"]] == [G + 106, CHAIN]
    r = await extra.get("codebases/10/commits?order=-when_timestamp&limit=3&offset=1"
                        "&field=commitid&field=when_timestamp")
    newest = sorted(expected, key=lambda x: -x["when_timestamp"])[1:4]
    assert r.json["commits"] == [{"commitid": x["commitid"],
                                  "when_timestamp": x["when_timestamp"]} for x in newest]
    assert r.json["meta"]["total"] == len(expected)
    r = await extra.get("codebases/10/commits?revision__contains=rev51&committer__isnull=true")
    assert [x["commitid"] for x in r.json["commits"]] == [
        x["commitid"] for x in expected if "rev51" in x["revision"]]


@pytest.mark.parametrize("path", [
    "commits/99999", "codebases/99/commits", "codebases/99/commits_by_revision/abc",
    "codebases/1/commits_by_revision/nosuchrev",
])
@pytest_twisted.ensureDeferred
async def test_commit_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_commit_by_revision_of_other_codebase(api):
    commit = expected_commits(api, 2)[0]
    r = await api.get(f"codebases/1/commits_by_revision/{commit['revision']}")
    assert r.code == 404


@pytest.mark.parametrize("query", ["commitid=x", "when_timestamp__lt=soon", "nosuch=1"])
@pytest_twisted.ensureDeferred
async def test_commits_bad_query(api, query):
    r = await api.get("codebases/1/commits?" + query)
    assert r.code == 400


# -- the commit graph -----------------------------------------------------------------------

def _graph(common: int, to1: list[int], to2: list[int]) -> dict[str, Any]:
    return {"commit_graphs": [{"common": common, "to1": to1, "to2": to2}], "meta": {}}


def _g(*ids: int) -> list[int]:
    return [G + i for i in ids]


@pytest.mark.parametrize("id1,id2,expected", [
    # upstream's own cases
    (110, 110, (110, [110], [110])),
    (106, 110, (106, [106], [106, 107, 108, 109, 110])),
    (110, 106, (106, [106, 107, 108, 109, 110], [106])),
    (110, 120, (108, [108, 109, 110], [108, 119, 120])),
    (120, 109, (108, [108, 119, 120], [108, 109])),
    # the range starts at the common commit, also when it has a parent
    (110, 108, (108, [108, 109, 110], [108])),
    (200, 200, None), (110, 200, None), (200, 110, None),
])
@pytest_twisted.ensureDeferred
async def test_commits_common_parent(extra, id1, id2, expected):
    r = await extra.get(f"codebases/10/commit_range/{G + id1}/{G + id2}/commits_common_parent")
    if expected is None:
        assert r.code == 404
    else:
        common, to1, to2 = expected
        assert (r.code, r.json) == (200, _graph(G + common, _g(*to1), _g(*to2)))


@pytest_twisted.ensureDeferred
async def test_commits_common_parent_depth(extra):
    def url(a: int, b: int) -> str:
        return f"codebases/10/commit_range/{CHAIN + a}/{CHAIN + b}/commits_common_parent"
    chain = [CHAIN + i for i in range(150)]
    # 100 parents away is in reach, 101 is not, from either side
    r = await extra.get(url(149, 49))
    assert (r.code, r.json) == (200, _graph(CHAIN + 49, chain[49:], [CHAIN + 49]))
    r = await extra.get(url(49, 149))
    assert (r.code, r.json) == (200, _graph(CHAIN + 49, [CHAIN + 49], chain[49:]))
    assert (await extra.get(url(149, 48))).code == 404
    assert (await extra.get(url(48, 149))).code == 404


@pytest_twisted.ensureDeferred
async def test_commits_common_parent_fields_and_missing_codebase(extra):
    r = await extra.get(f"codebases/10/commit_range/{G + 110}/{G + 120}/commits_common_parent"
                        "?field=common")
    assert r.json == {"commit_graphs": [{"common": G + 108}], "meta": {}}
    r = await extra.get(f"codebases/99/commit_range/{G + 110}/{G + 120}/commits_common_parent")
    assert r.code == 404
    r = await extra.get(f"codebases/10/commit_range/{G + 110}/{G + 120}/commits_common_parent"
                        "?common=1")
    assert r.code == 400


# -- branches -------------------------------------------------------------------------------

def expected_branches(api: Any, codebaseid: int) -> list[dict[str, Any]]:
    br = s.codebase_branches
    return [{"branchid": r.id, "codebaseid": r.codebaseid, "name": r.name,
             "commitid": r.commitid, "last_timestamp": r.last_timestamp}
            for r in api.rows(sa.select(br).where(br.c.codebaseid == codebaseid)
                              .order_by(br.c.id))]


@pytest_twisted.ensureDeferred
async def test_branches(api):
    for cb in expected_codebases(api):
        expected = expected_branches(api, cb["codebaseid"])
        assert expected
        r = await api.get(f"codebases/{cb['codebaseid']}/branches")
        assert r.json == {"branches": expected, "meta": {"total": len(expected)}}
        for branch in expected:
            r = await api.get(f"branches/{branch['branchid']}")
            assert (r.code, r.json) == (200, {"branches": [branch], "meta": {}})
    expected = expected_branches(api, 1)
    r = await api.get("codebases/1/branches?commitid__isnull=true")
    assert r.json["branches"] == [x for x in expected if x["commitid"] is None]
    r = await api.get("codebases/1/branches?name=main&field=branchid&field=name")
    assert r.json["branches"] == [{"branchid": x["branchid"], "name": "main"}
                                  for x in expected if x["name"] == "main"]
    r = await api.get("codebases/1/branches?name=main&field=branchid")
    assert r.code == 400  # filters only on selected fields
    r = await api.get("codebases/1/branches?order=-name&limit=1")
    assert r.json["branches"] == sorted(expected, key=lambda x: x["name"])[-1:]
    # a NULL commitid matches no comparison
    r = await api.get("codebases/1/branches?commitid__ne=0")
    assert r.json["branches"] == [x for x in expected if x["commitid"] is not None]


@pytest.mark.parametrize("path", ["branches/999", "codebases/99/branches"])
@pytest_twisted.ensureDeferred
async def test_branch_missing(api, path):
    r = await api.get(path)
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_branches_bad_query(api):
    assert (await api.get("codebases/1/branches?commitid=x")).code == 400
    assert (await api.get("branches/1?name=main")).code == 400


# -- a scheduler with a NULL ``enabled`` (kept here, where the extra rows are) ------------

@pytest_twisted.ensureDeferred
async def test_scheduler_null_enabled_is_disabled(extra):
    r = await extra.get("schedulers/50")
    assert r.json["schedulers"] == [{"schedulerid": 50, "name": "null-enabled",
                                     "enabled": False, "master": None}]
    r = await extra.get("schedulers?enabled=false")
    assert 50 in [x["schedulerid"] for x in r.json["schedulers"]]
    r = await extra.get("schedulers?enabled=true")
    assert 50 not in [x["schedulerid"] for x in r.json["schedulers"]]
