# -*- test-case-name: tests.data.test_updates_test_results -*-
"""Test result sets: one per test run of a step, and the sets of a range of commits;
their update methods ``addTestResultSet`` and ``completeTestResultSet``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import Conflict, InvalidParams
from buildbot_rest.data.resolve import BUILD_FORMS, STEP_FORMS, nested
from buildbot_rest.data.transaction import Write, no_row
from buildbot_rest.db import schema as s

trs = s.test_result_sets

#: how many parents the commit-range walk follows, as upstream does
COMMIT_RANGE_DEPTH = 100


def _builder_of_build(buildid: Any) -> Any:
    return sa.select(s.builds.c.builderid).where(s.builds.c.id == buildid).scalar_subquery()


class TestResultSetEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/test_result_sets/n:test_result_setid",)
    unchecked = frozenset({"test_result_setid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [trs.c.id == ids["test_result_setid"]]


class TestResultSetsEndpoint(SQLEndpoint):
    patterns = (
        "/test_result_sets",
        "/builders/n:builderid/test_result_sets",
        "/builders/s:buildername/test_result_sets",
        *nested(BUILD_FORMS, "/test_result_sets"),
        *nested(STEP_FORMS, "/test_result_sets"),
    )

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        # Like upstream, a build's or step's sets are also those of the build's builder.
        if "stepid" in ids:
            buildid = sa.select(s.steps.c.buildid).where(
                s.steps.c.id == ids["stepid"]).scalar_subquery()
            return [trs.c.builderid == _builder_of_build(buildid),
                    trs.c.buildid == buildid, trs.c.stepid == ids["stepid"]]
        if "buildid" in ids:
            return [trs.c.builderid == _builder_of_build(ids["buildid"]),
                    trs.c.buildid == ids["buildid"]]
        if "builderid" in ids:
            return [trs.c.builderid == ids["builderid"]]
        return []


def commit_range(conn: sa.Connection, first: int, last: int,
                 depth: int = COMMIT_RANGE_DEPTH) -> list[int]:
    """The ids of the commits from ``first`` to ``last`` (both included) when ``first``
    is an ancestor of ``last`` at most ``depth`` parents away, else ``[]``."""
    if first == last:
        return [first]
    cc = s.codebase_commits
    chain = (sa.select(cc.c.id, cc.c.parent_commitid, sa.literal(0).label("depth"))
             .where(cc.c.id == last).cte("chain", recursive=True))
    chain = chain.union_all(
        sa.select(cc.c.id, cc.c.parent_commitid, chain.c.depth + 1)
        .join(chain, cc.c.id == chain.c.parent_commitid)
        .where(chain.c.depth < depth))
    ids = [row.id for row in conn.execute(
        sa.select(chain.c.id).order_by(chain.c.depth))]
    # ids[0] is ``last`` itself; walking up, the first time ``first`` is met ends the range.
    if first not in ids[1:]:
        return []
    return ids[:ids.index(first, 1) + 1][::-1]


def _check_commits(conn: sa.Connection, codebaseid: int, commitids: list[int]) -> bool:
    cc = s.codebase_commits
    found = conn.execute(sa.select(sa.func.count()).select_from(cc).where(
        cc.c.id.in_(commitids), cc.c.codebaseid == codebaseid)).scalar()
    return found == len(set(commitids))


def sets_of_commits(commitids: list[int]) -> sa.ColumnElement[bool]:
    """The condition selecting the sets of builds whose source stamps carry the revision
    of one of the commits (each set once, however many source stamps match)."""
    b, br, bss, ss, cc = (s.builds, s.buildrequests, s.buildset_sourcestamps, s.sourcestamps,
                          s.codebase_commits)
    buildids = (
        sa.select(b.c.id)
        .join_from(b, br, br.c.id == b.c.buildrequestid)
        .join(bss, bss.c.buildsetid == br.c.buildsetid)
        .join(ss, ss.c.id == bss.c.sourcestampid)
        .join(cc, cc.c.revision == ss.c.revision)
        .where(cc.c.id.in_(commitids)))
    return trs.c.buildid.in_(buildids)


class CommitRangeTestResultSetsEndpoint(SQLEndpoint):
    """The sets of the builds of the commits from ``commitid1`` to its descendant
    ``commitid2``; empty when ``commitid1`` is not an ancestor of ``commitid2``."""

    patterns = ("/codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/test_result_sets",)

    def where_in(self, conn: sa.Connection, ctx: Context, ids: Mapping[str, Any]
                 ) -> list[Any] | None:
        first, last = ids["commitid1"], ids["commitid2"]
        if not _check_commits(conn, ids["codebaseid"], [first, last]):
            raise ctx.not_found()
        commitids = commit_range(conn, first, last)
        return [sets_of_commits(commitids)] if commitids else None


class TestResultSet(ResourceType):
    name = "test_result_set"
    plural = "test_result_sets"
    fields = (
        Field("test_result_setid", t.Integer(), trs.c.id),
        Field("builderid", t.Integer(), trs.c.builderid),
        Field("buildid", t.Integer(), trs.c.buildid),
        Field("stepid", t.Integer(), trs.c.stepid),
        Field("description", t.NoneOk(t.String()), trs.c.description),
        Field("category", t.String(), trs.c.category),
        Field("value_unit", t.String(), trs.c.value_unit),
        Field("tests_passed", t.NoneOk(t.Integer()), trs.c.tests_passed),
        Field("tests_failed", t.NoneOk(t.Integer()), trs.c.tests_failed),
        Field("complete", t.Boolean(), trs.c.complete),
    )
    key = ("test_result_setid",)
    endpoints = (TestResultSetsEndpoint, CommitRangeTestResultSetsEndpoint,
                 TestResultSetEndpoint)
    updates = ("addTestResultSet", "completeTestResultSet")
    events = (EventKey(("test_result_sets", "{test_result_setid}")),)

    def from_clause(self) -> sa.FromClause:
        return trs

    async def addTestResultSet(self, builderid: int, buildid: int, stepid: int,
                               description: str | None, category: str,
                               value_unit: str) -> int:
        """Add an incomplete test result set of a step; answers its id. NotFound if the
        builder, build or step does not exist; InvalidParams if the step is not of that
        build or the build not of that builder (their sets could not be read)."""
        return await self.transact(
            add_test_result_set_in, builderid=params.check_int("builderid", builderid),
            buildid=params.check_int("buildid", buildid),
            stepid=params.check_int("stepid", stepid),
            description=params.check_text("description", description, nullable=True),
            category=params.check_text("category", category),
            value_unit=params.check_text("value_unit", value_unit))

    async def completeTestResultSet(self, test_result_setid: int,
                                    tests_passed: int | None = None,
                                    tests_failed: int | None = None) -> None:
        """Mark a set complete, with its counts of passed and failed tests when given.
        NotFound if there is no such set, Conflict if it is already complete."""
        await self.transact(
            complete_test_result_set_in,
            params.check_int("test_result_setid", test_result_setid),
            tests_passed=params.check_int("tests_passed", tests_passed, nullable=True),
            tests_failed=params.check_int("tests_failed", tests_failed, nullable=True))


def add_test_result_set_in(write: Write, *, builderid: int, buildid: int, stepid: int,
                           description: str | None, category: str, value_unit: str) -> int:
    """Insert a test result set (``complete=0``, no counts) and publish its ``new``
    event; answers its id. See :meth:`TestResultSet.addTestResultSet` for errors."""
    write.require(s.builders, builderid, "builder", "builderid")
    build = write.require(s.builds, buildid, "build", "buildid", s.builds.c.builderid)
    step = write.require(s.steps, stepid, "step", "stepid", s.steps.c.buildid)
    if build.builderid != builderid:
        raise InvalidParams({"buildid": f"build {buildid} is not a build of builder "
                                        f"{builderid}"})
    if step.buildid != buildid:
        raise InvalidParams({"stepid": f"step {stepid} is not a step of build {buildid}"})
    setid = write.insert(trs, builderid=builderid, buildid=buildid, stepid=stepid,
                         description=description, category=category,
                         value_unit=value_unit, complete=0)
    write.emit_entity("test_result_set", "new", setid)
    return setid


def complete_test_result_set_in(write: Write, setid: int, *, tests_passed: int | None = None,
                                tests_failed: int | None = None) -> None:
    """Mark a set complete (the counts only when given, as upstream) and publish its
    ``completed`` event. NotFound if there is none, Conflict if it is complete."""
    values: dict[str, Any] = {"complete": 1}
    if tests_passed is not None:
        values["tests_passed"] = tests_passed
    if tests_failed is not None:
        values["tests_failed"] = tests_failed
    done = write.conn.execute(trs.update().values(values)
                              .where(trs.c.id == setid, trs.c.complete == 0))
    if done.rowcount == 0:
        if write.entity("test_result_set", setid) is None:
            raise no_row("test result set", "test_result_setid", setid)
        raise Conflict(f"test result set {setid} is already complete")
    write.emit_entity("test_result_set", "completed", setid)


RESOURCE_TYPES = (TestResultSet,)
