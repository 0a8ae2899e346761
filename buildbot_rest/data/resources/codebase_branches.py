# -*- test-case-name: tests.data.test_updates_projects -*-
"""Branches of a codebase and the commit each one points at; moving a branch, and its
event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash

br = s.codebase_branches

#: the length of ``codebase_branches.name``
NAME_LENGTH = 255


class BranchEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/branches/n:branchid",)
    unchecked = frozenset({"branchid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [br.c.id == ids["branchid"]]


class BranchesEndpoint(SQLEndpoint):
    patterns = ("/codebases/n:codebaseid/branches",)

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [br.c.codebaseid == ids["codebaseid"]]


class Branch(ResourceType):
    name = "branch"
    plural = "branches"
    fields = (
        Field("branchid", t.Integer(), br.c.id),
        Field("codebaseid", t.Integer(), br.c.codebaseid),
        Field("name", t.String(), br.c.name),
        # declared Integer upstream, though the column may be NULL
        Field("commitid", t.Integer(), br.c.commitid),
        Field("last_timestamp", t.Integer(), br.c.last_timestamp),
    )
    key = ("branchid",)
    endpoints = (BranchEndpoint, BranchesEndpoint)
    updates = ("update_branch",)
    events = (EventKey(("branches", "{branchid}")),)

    def from_clause(self) -> sa.FromClause:
        return br

    async def update_branch(self, *, codebaseid: int, name: str, commitid: int | None = None,
                            last_timestamp: int) -> None:
        """Branch ``name`` of codebase ``codebaseid`` points at ``commitid`` (or at
        nothing) since ``last_timestamp``: created if new, else updated; then
        ``branches/<id>/update`` with the branch. NotFound for a missing codebase or
        commit."""
        params.check_int("codebaseid", codebaseid)
        params.check_text("name", name, max_length=NAME_LENGTH)
        params.check_int("commitid", commitid, nullable=True)
        params.check_int("last_timestamp", last_timestamp)

        def update(write: Write) -> None:
            write.require(s.codebases, codebaseid, "codebase", "codebaseid")
            if commitid is not None:
                write.require(s.codebase_commits, commitid, "commit", "commitid")
            digest = name_hash(name)
            values = {"name": name, "commitid": commitid, "last_timestamp": last_timestamp}
            branchid, created = write.find_or_create(
                br, [br.c.codebaseid == codebaseid, br.c.name_hash == digest],
                {"codebaseid": codebaseid, "name_hash": digest, **values})
            if not created:
                write.conn.execute(br.update().where(br.c.id == branchid).values(**values))
            write.emit_entity("branch", "update", branchid)

        await self.transact(update)


RESOURCE_TYPES = (Branch,)
