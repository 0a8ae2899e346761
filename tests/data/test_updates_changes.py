"""addChange: the change, its files, properties and source stamp as upstream stores them,
its parent, its ``new`` event, its errors, and concurrent change sources, on both
backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.db import hashes
from buildbot_rest.db import schema as s
from tests.data.conftest import Recorder

NOW = 1700000000
ch = s.changes


def count(rec: Recorder, table: sa.Table) -> int:
    return int(rec.rows(sa.select(sa.func.count()).select_from(table))[0][0])


@pytest_twisted.ensureDeferred
async def test_add_change_stores_rows_as_upstream(recorder: Recorder) -> None:
    changeid = await recorder.updates.addChange(
        files=["a.c", "dir/b.h"], comments="fix", author="Ann <a@x>", committer="Bob",
        revision="abc123", when_timestamp=1600000000, branch="main", category="cat",
        revlink="https://r/abc123", properties={"p": [1, "two"], "q": None},
        repository="https://r", codebase="cb", project="proj", src="git")
    assert isinstance(changeid, int)
    ss = s.sourcestamps
    [(ssid, ss_hash, created_at, patchid, branch, revision)] = recorder.rows(sa.select(
        ss.c.id, ss.c.ss_hash, ss.c.created_at, ss.c.patchid, ss.c.branch, ss.c.revision))
    assert ss_hash == hashes.ss_hash("main", "abc123", "https://r", "proj", "cb", None)
    assert (created_at, patchid, branch, revision) == (NOW, None, "main", "abc123")
    assert recorder.rows(sa.select(
        ch.c.changeid, ch.c.author, ch.c.committer, ch.c.comments, ch.c.branch,
        ch.c.revision, ch.c.revlink, ch.c.when_timestamp, ch.c.category, ch.c.repository,
        ch.c.codebase, ch.c.project, ch.c.sourcestampid, ch.c.parent_changeids)) == [
        (changeid, "Ann <a@x>", "Bob", "fix", "main", "abc123", "https://r/abc123",
         1600000000, "cat", "https://r", "cb", "proj", ssid, None)]
    assert sorted(recorder.rows(sa.select(s.change_files.c.changeid,
                                          s.change_files.c.filename))) == [
        (changeid, "a.c"), (changeid, "dir/b.h")]
    cp = s.change_properties
    assert sorted(recorder.rows(sa.select(cp.c.changeid, cp.c.property_name,
                                          cp.c.property_value))) == [
        (changeid, "p", json.dumps([[1, "two"], "Change"])),
        (changeid, "q", json.dumps([None, "Change"]))]
    assert count(recorder, s.change_users) == 0
    events = recorder.take()
    assert [k for k, _ in events] == [("changes", str(changeid), "new")]
    entity = await recorder.connector.get(f"changes/{changeid}")
    assert events[0][1] == entity
    assert entity["properties"] == {"p": [[1, "two"], "Change"], "q": [None, "Change"]}
    assert entity["sourcestamp"]["ssid"] == ssid


@pytest_twisted.ensureDeferred
async def test_add_change_defaults(recorder: Recorder) -> None:
    changeid = await recorder.updates.addChange()
    assert recorder.rows(sa.select(
        ch.c.author, ch.c.committer, ch.c.comments, ch.c.branch, ch.c.revision,
        ch.c.revlink, ch.c.when_timestamp, ch.c.category, ch.c.repository, ch.c.codebase,
        ch.c.project)) == [("", None, "", None, None, "", NOW, None, "", "", "")]
    assert count(recorder, s.change_files) == count(recorder, s.change_properties) == 0
    entity = await recorder.connector.get(f"changes/{changeid}")
    assert (entity["files"], entity["properties"], entity["parent_changeids"]) == (
        [], {}, [])
    # a float time is truncated, as upstream's conversions do
    other = await recorder.updates.addChange(when_timestamp=1600000000.9, revlink=None)
    assert recorder.rows(sa.select(ch.c.when_timestamp, ch.c.revlink)
                         .where(ch.c.changeid == other)) == [(1600000000, None)]


@pytest_twisted.ensureDeferred
async def test_parent_is_the_latest_change_of_the_same_line(recorder: Recorder) -> None:
    line = {"branch": "main", "repository": "r", "project": "p", "codebase": "c"}
    first = await recorder.updates.addChange(revision="1", **line)
    second = await recorder.updates.addChange(revision="2", **line)
    third = await recorder.updates.addChange(revision="3", **line)
    other_branch = await recorder.updates.addChange(revision="4", **dict(line, branch="x"))
    other_codebase = await recorder.updates.addChange(revision="5",
                                                      **dict(line, codebase="d"))
    no_branch = await recorder.updates.addChange(revision="6", **dict(line, branch=None))
    no_branch2 = await recorder.updates.addChange(revision="7", **dict(line, branch=None))
    rows = dict(recorder.rows(sa.select(ch.c.changeid, ch.c.parent_changeids)))
    assert rows == {first: None, second: first, third: second, other_branch: None,
                    other_codebase: None, no_branch: None, no_branch2: no_branch}
    entity = await recorder.connector.get(f"changes/{third}")
    assert entity["parent_changeids"] == [second]


@pytest_twisted.ensureDeferred
async def test_the_same_revision_shares_its_source_stamp(recorder: Recorder) -> None:
    a = await recorder.updates.addChange(revision="r1", repository="x")
    b = await recorder.updates.addChange(revision="r1", repository="x", author="other")
    c = await recorder.updates.addChange(revision="r2", repository="x")
    stamps = dict(recorder.rows(sa.select(ch.c.changeid, ch.c.sourcestampid)))
    assert stamps[a] == stamps[b] != stamps[c]
    assert count(recorder, s.sourcestamps) == 2


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"author": "a" * 256}, "author"),
    ({"branch": "b" * 256}, "branch"),
    ({"repository": None}, "repository"),
    ({"project": None}, "project"),
    ({"files": "a.c"}, "files"),
    ({"files": ["a", 3]}, "files[1]"),
    ({"files": ["f" * 1025]}, "files[0]"),
    ({"properties": {"p": {1, 2}}}, "properties.p"),
    ({"properties": ["p"]}, "properties"),
    ({"when_timestamp": "yesterday"}, "when_timestamp"),
    ({"when_timestamp": 2**40}, "when_timestamp"),
    ({"category": lambda change: "x"}, "category"),
    ({"comments": "nul\0"}, "comments"),
])
@pytest_twisted.ensureDeferred
async def test_add_change_errors_write_nothing(recorder: Recorder, kwargs: dict[str, Any],
                                               name: str) -> None:
    with pytest.raises(InvalidParams) as info:
        await recorder.updates.addChange(**kwargs)
    assert name in info.value.errors
    assert recorder.take() == []
    for table in (ch, s.sourcestamps, s.change_files, s.change_properties):
        assert count(recorder, table) == 0


@pytest_twisted.ensureDeferred
async def test_concurrent_changes(recorder: Recorder) -> None:
    ids = await defer.gatherResults([
        defer.ensureDeferred(recorder.updates.addChange(
            revision=f"r{n % 4}", branch="main", repository="r", files=[f"f{n}"],
            properties={"n": n}))
        for n in range(32)], consumeErrors=True)
    assert len(set(ids)) == 32
    assert count(recorder, ch) == 32
    assert count(recorder, s.change_files) == 32
    assert count(recorder, s.sourcestamps) == 4
    assert sorted(recorder.keys()) == sorted(f"changes/{i}/new" for i in ids)
    # each change's files and properties are its own
    for changeid, filename in recorder.rows(sa.select(s.change_files.c.changeid,
                                                      s.change_files.c.filename)):
        [(text,)] = recorder.rows(sa.select(s.change_properties.c.property_value)
                                  .where(s.change_properties.c.changeid == changeid))
        assert filename == f"f{json.loads(text)[0]}"
