# -*- test-case-name: tests.data.test_updates_projects -*-
"""Commits of a codebase, and the graph between two commits (their first common
ancestor and the ranges from it); adding a commit, and its event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint, SQLEndpoint
from buildbot_rest.data.errors import Conflict, InvalidParams
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

cc = s.codebase_commits

#: how many parents the graph walks back from each commit
DEPTH = 100


class CommitEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/commits/n:commitid",)
    unchecked = frozenset({"commitid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [cc.c.id == ids["commitid"]]


class CommitByRevisionEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/codebases/n:codebaseid/commits_by_revision/s:revision",)

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [cc.c.codebaseid == ids["codebaseid"], cc.c.revision == ids["revision"]]


class CommitsEndpoint(SQLEndpoint):
    patterns = ("/codebases/n:codebaseid/commits",)

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [cc.c.codebaseid == ids["codebaseid"]]


class Commit(ResourceType):
    name = "commit"
    plural = "commits"
    fields = (
        Field("commitid", t.Integer(), cc.c.id),
        Field("codebaseid", t.Integer(), cc.c.codebaseid),
        Field("author", t.String(), cc.c.author),
        Field("committer", t.NoneOk(t.String()), cc.c.committer),
        Field("comments", t.String(), cc.c.comments),
        Field("when_timestamp", t.Integer(), cc.c.when_timestamp),
        Field("revision", t.String(), cc.c.revision),
        Field("parent_commitid", t.NoneOk(t.Integer()), cc.c.parent_commitid),
    )
    key = ("commitid",)
    endpoints = (CommitEndpoint, CommitByRevisionEndpoint, CommitsEndpoint)
    updates = ("add_commit",)
    events = (EventKey(("commits", "{commitid}")),
              EventKey(("codebases", "{codebaseid}", "commits", "{commitid}")))

    def from_clause(self) -> sa.FromClause:
        return cc

    async def add_commit(self, *, codebaseid: int, author: str, committer: str | None = None,
                         files: list[str] | None = None, comments: str, when_timestamp: int,
                         revision: str, parent_commitid: int | None = None) -> int:
        """Record a commit of codebase ``codebaseid`` (``files`` is not stored, as
        upstream), then publish ``commits/<id>/new`` and
        ``codebases/<codebaseid>/commits/<id>/new`` with it; its id. NotFound for a
        missing codebase or parent commit; Conflict if the codebase has that revision
        already."""
        params.check_int("codebaseid", codebaseid)
        for name, value, nullable, length in (("author", author, False, 255),
                                              ("committer", committer, True, 255),
                                              ("revision", revision, False, 70)):
            params.check_text(name, value, max_length=length, nullable=nullable)
        params.check_text("comments", comments)
        params.check_int("when_timestamp", when_timestamp)
        params.check_int("parent_commitid", parent_commitid, nullable=True)
        if files is not None and not all(
                isinstance(f, str) for f in params.check_list("files", files, "file names")):
            raise InvalidParams({"files": "must be a list of file names"})

        def add(write: Write) -> int:
            write.require(s.codebases, codebaseid, "codebase", "codebaseid")
            if parent_commitid is not None:
                write.require(cc, parent_commitid, "commit", "commitid")
            if write.conn.execute(sa.select(cc.c.id).where(
                    cc.c.codebaseid == codebaseid, cc.c.revision == revision)
                    ).first() is not None:
                raise Conflict(f"codebase {codebaseid} has a commit {revision} already")
            try:
                with write.savepoint():
                    commitid = write.insert(
                        cc, codebaseid=codebaseid, author=author, committer=committer,
                        comments=comments, when_timestamp=when_timestamp, revision=revision,
                        parent_commitid=parent_commitid)
            except sa.exc.IntegrityError:
                raise Conflict(f"codebase {codebaseid} has a commit {revision} "
                               "already") from None
            write.emit_entity("commit", "new", commitid)
            return commitid

        return await self.transact(add)


def ancestry(conn: sa.Connection, commitid: int, depth: int = DEPTH) -> tuple[bool, list[int]]:
    """Whether the commit exists, and the commit followed by up to ``depth`` of its
    ancestors, nearest first (one recursive query)."""
    one = sa.literal_column("1", sa.Integer)
    start = (sa.select(cc.c.id, cc.c.parent_commitid, one.label("depth"))
             .where(cc.c.id == commitid).cte("ancestry", recursive=True))
    step = (sa.select(cc.c.id, cc.c.parent_commitid, (start.c.depth + 1).label("depth"))
            .join_from(cc, start, cc.c.id == start.c.parent_commitid)
            .where(start.c.depth < depth))
    walk = start.union_all(step)
    rows = conn.execute(sa.select(walk.c.parent_commitid).order_by(walk.c.depth)).all()
    chain = [commitid]
    for (parent,) in rows:
        if parent is None:
            break
        chain.append(parent)
    return bool(rows), chain


def common_parent(conn: sa.Connection, commitid1: int,
                  commitid2: int) -> dict[str, Any] | None:
    """``{common, to1, to2}`` for two commits: their first common ancestor, and the
    commit ids from it to each of them, both ends included; None if there is none
    within reach."""
    exists1, chain1 = ancestry(conn, commitid1)
    if commitid1 == commitid2:
        if not exists1:
            return None
        return {"common": commitid1, "to1": [commitid1], "to2": [commitid1]}
    positions = {c: i for i, c in reversed(list(enumerate(chain1)))}
    _, chain2 = ancestry(conn, commitid2)
    for j, commit in enumerate(chain2):
        i = positions.get(commit)
        if i is not None:
            return {"common": commit, "to1": chain1[i::-1], "to2": chain2[j::-1]}
    return None


class CommitGraphEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = (
        "/codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/commits_common_parent",
    )

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        ids = ctx.resolve_in(conn, kwargs, self.unchecked)
        graph = common_parent(conn, ids["commitid1"], ids["commitid2"])
        return None if graph is None else spec.project(graph)


class CommitGraph(ResourceType):
    name = "commit_graph"
    plural = "commit_graphs"
    fields = (
        Field("common", t.Integer()),
        Field("to1", t.List(t.Integer())),
        Field("to2", t.List(t.Integer())),
    )
    endpoints = (CommitGraphEndpoint,)


RESOURCE_TYPES = (Commit, CommitGraph)
