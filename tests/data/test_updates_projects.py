"""Update methods of projects, codebases, commits and branches: what they store, their
events (the entity as a GET answers it, under upstream's keys), their errors, on both
backends."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data.errors import Conflict, InvalidParams, NotFound
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash, shorten
from tests.data.conftest import Recorder


@pytest_twisted.ensureDeferred
async def test_find_project_id(recorder: Recorder) -> None:
    assert await recorder.updates.find_project_id("web site", auto_create=False) is None
    projectid = await recorder.updates.find_project_id("web site")
    assert await recorder.updates.find_project_id("web site", False) == projectid
    long_name = "p" * 80
    longid = await recorder.updates.find_project_id(long_name)
    assert recorder.rows(sa.select(s.projects).order_by(s.projects.c.id)) == [
        (projectid, "web site", name_hash("web site"), "web site", None, None, None),
        (longid, long_name, name_hash(long_name), shorten(long_name, 50), None, None, None)]
    assert recorder.take() == []
    with pytest.raises(InvalidParams, match="name"):
        await recorder.updates.find_project_id(None)
    with pytest.raises(InvalidParams, match="auto_create"):
        await recorder.updates.find_project_id("x", auto_create="no")


@pytest_twisted.ensureDeferred
async def test_update_project_info(recorder: Recorder) -> None:
    projectid = await recorder.updates.find_project_id("web")
    await recorder.updates.update_project_info(projectid, "web-slug", "The site", "markdown",
                                               "<p>The site</p>")
    got = await recorder.connector.get(f"projects/{projectid}")
    assert got == {"projectid": projectid, "name": "web", "slug": "web-slug", "active": None,
                   "description": "The site", "description_format": "markdown",
                   "description_html": "<p>The site</p>"}
    assert recorder.take() == [(("projects", str(projectid), "update"), got)]
    for args, error in [((999, "s", None, None, None), NotFound),
                        ((projectid, "s" * 51, None, None, None), InvalidParams),
                        ((projectid, None, None, None, None), InvalidParams),
                        ((projectid, "s", 1, None, None), InvalidParams)]:
        with pytest.raises(error):
            await recorder.updates.update_project_info(*args)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_codebases(recorder: Recorder) -> None:
    p1 = await recorder.updates.find_project_id("p1")
    p2 = await recorder.updates.find_project_id("p2")
    assert await recorder.updates.find_codebase_id(projectid=p1, name="main",
                                                   auto_create=False) is None
    cbid = await recorder.updates.find_codebase_id(projectid=p1, name="main")
    assert await recorder.updates.find_codebase_id(projectid=p1, name="main") == cbid
    other = await recorder.updates.find_codebase_id(projectid=p2, name="main")
    assert other != cbid
    assert recorder.rows(sa.select(s.codebases).where(s.codebases.c.id == cbid)) == [
        (cbid, p1, "main", name_hash("main"), "main")]
    await recorder.updates.update_codebase_info(codebaseid=cbid, projectid=p1, slug="m")
    got = await recorder.connector.get(f"codebases/{cbid}")
    assert got == {"codebaseid": cbid, "projectid": p1, "name": "main", "slug": "m"}
    assert recorder.take() == [(("codebases", str(cbid), "update"), got)]
    # project p2 has a "main" already
    with pytest.raises(Conflict):
        await recorder.updates.update_codebase_info(codebaseid=cbid, projectid=p2, slug="m")
    with pytest.raises(NotFound):
        await recorder.updates.update_codebase_info(codebaseid=999, projectid=p1, slug="m")
    with pytest.raises(NotFound):
        await recorder.updates.update_codebase_info(codebaseid=cbid, projectid=999, slug="m")
    with pytest.raises(NotFound):
        await recorder.updates.find_codebase_id(projectid=999, name="main")
    with pytest.raises(InvalidParams, match="slug"):
        await recorder.updates.update_codebase_info(codebaseid=cbid, projectid=p1,
                                                    slug="x" * 51)
    assert recorder.take() == []


async def _codebase(rec: Recorder) -> int:
    projectid = await rec.updates.find_project_id("p")
    codebaseid: int = await rec.updates.find_codebase_id(projectid=projectid, name="main")
    return codebaseid


@pytest_twisted.ensureDeferred
async def test_add_commit(recorder: Recorder) -> None:
    cbid = await _codebase(recorder)
    first = await recorder.updates.add_commit(
        codebaseid=cbid, author="A <a@example.org>", comments="first", when_timestamp=100,
        revision="aaaa")
    second = await recorder.updates.add_commit(
        codebaseid=cbid, author="B", committer="C", files=["x.py"], comments="second",
        when_timestamp=200, revision="bbbb", parent_commitid=first)
    assert recorder.rows(sa.select(s.codebase_commits).order_by(s.codebase_commits.c.id)) == [
        (first, cbid, "A <a@example.org>", None, "first", 100, "aaaa", None),
        (second, cbid, "B", "C", "second", 200, "bbbb", first)]
    events = recorder.take()
    for commitid, pair in zip((first, second), (events[:2], events[2:]), strict=True):
        got = await recorder.connector.get(f"commits/{commitid}")
        assert pair == [(("commits", str(commitid), "new"), got),
                        (("codebases", str(cbid), "commits", str(commitid), "new"), got)]
    base: dict[str, Any] = {"codebaseid": cbid, "author": "A", "comments": "c",
                            "when_timestamp": 1, "revision": "cccc"}
    changes: list[tuple[dict[str, Any], type[Exception]]] = [
                          ({"revision": "aaaa"}, Conflict),
                          ({"codebaseid": 999}, NotFound),
                          ({"parent_commitid": 999}, NotFound),
                          ({"revision": "r" * 71}, InvalidParams),
                          ({"author": "a" * 256}, InvalidParams),
                          ({"author": None}, InvalidParams),
                          ({"when_timestamp": "now"}, InvalidParams),
                          ({"files": "x.py"}, InvalidParams)]
    for change, error in changes:
        with pytest.raises(error):
            await recorder.updates.add_commit(**{**base, **change})
    assert recorder.take() == []
    assert len(recorder.rows(sa.select(s.codebase_commits))) == 2


@pytest_twisted.ensureDeferred
async def test_update_branch(recorder: Recorder) -> None:
    cbid = await _codebase(recorder)
    c1 = await recorder.updates.add_commit(codebaseid=cbid, author="a", comments="",
                                           when_timestamp=1, revision="r1")
    c2 = await recorder.updates.add_commit(codebaseid=cbid, author="a", comments="",
                                           when_timestamp=2, revision="r2")
    recorder.take()
    await recorder.updates.update_branch(codebaseid=cbid, name="main", commitid=c1,
                                         last_timestamp=10)
    (branchid,) = recorder.rows(sa.select(s.codebase_branches.c.id))[0]
    got = await recorder.connector.get(f"branches/{branchid}")
    assert got == {"branchid": branchid, "codebaseid": cbid, "name": "main", "commitid": c1,
                   "last_timestamp": 10}
    assert recorder.take() == [(("branches", str(branchid), "update"), got)]
    await recorder.updates.update_branch(codebaseid=cbid, name="main", commitid=c2,
                                         last_timestamp=20)
    await recorder.updates.update_branch(codebaseid=cbid, name="main", last_timestamp=30)
    assert recorder.rows(sa.select(s.codebase_branches)) == [
        (branchid, cbid, "main", name_hash("main"), None, 30)]
    assert recorder.keys() == [f"branches/{branchid}/update"] * 2
    changes: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"codebaseid": 999}, NotFound), ({"commitid": 999}, NotFound),
        ({"name": "n" * 256}, InvalidParams), ({"last_timestamp": None}, InvalidParams)]
    for change, error in changes:
        args = {"codebaseid": cbid, "name": "main", "last_timestamp": 1, **change}
        with pytest.raises(error):
            await recorder.updates.update_branch(**args)
    assert recorder.take() == []
