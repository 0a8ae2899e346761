# -*- test-case-name: tests.data.test_updates_projects -*-
"""Codebases: the repositories of a project; their update methods (found or created by
name in a project, described) and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import Conflict
from buildbot_rest.data.resources.projects import SLUG_LENGTH, check_slug
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash, shorten

cb = s.codebases


class CodebaseEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/codebases/n:codebaseid",
        "/projects/n:projectid/codebases/i:codebasename",
    )
    unchecked = frozenset({"codebaseid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        if "codebaseid" in ids:
            return [cb.c.id == ids["codebaseid"]]
        name = ids["codebasename"]
        # the hash finds the row by index; the name itself decides
        return [cb.c.projectid == ids["projectid"], cb.c.name_hash == name_hash(name),
                cb.c.name == name]


class CodebasesEndpoint(SQLEndpoint):
    patterns = ("/codebases",)
    root_link = "codebases"


class Codebase(ResourceType):
    name = "codebase"
    plural = "codebases"
    fields = (
        Field("codebaseid", t.Integer(), cb.c.id),
        Field("projectid", t.Integer(), cb.c.projectid),
        Field("name", t.Identifier(70), cb.c.name),
        Field("slug", t.Identifier(70), cb.c.slug),
    )
    key = ("codebaseid",)
    endpoints = (CodebaseEndpoint, CodebasesEndpoint)
    updates = ("find_codebase_id", "update_codebase_info")
    events = (EventKey(("codebases", "{codebaseid}")),)

    def from_clause(self) -> sa.FromClause:
        return cb

    async def find_codebase_id(self, *, projectid: int, name: str,
                               auto_create: bool = True) -> int | None:
        """The id of the codebase named ``name`` in project ``projectid``; if there is
        none, created (its slug is its name, shortened to fit as upstream shortens) when
        ``auto_create``, else None. NotFound for a missing project."""
        params.check_int("projectid", projectid)
        params.check_text("name", name)
        params.check_bool("auto_create", auto_create)

        def find(write: Write) -> int | None:
            write.require(s.projects, projectid, "project", "projectid")
            return write.find_or_create_named(
                cb, name, where=[cb.c.projectid == projectid],
                values={"projectid": projectid, "slug": shorten(name, SLUG_LENGTH)},
                create=auto_create)

        return await self.transact(find)

    async def update_codebase_info(self, *, codebaseid: int, projectid: int,
                                   slug: str) -> None:
        """Move codebase ``codebaseid`` to project ``projectid`` and store its slug, then
        publish ``codebases/<id>/update`` with the codebase. NotFound for a missing
        codebase or project; Conflict when that project has a codebase of that name."""
        params.check_int("codebaseid", codebaseid)
        params.check_int("projectid", projectid)
        check_slug(slug)

        def update(write: Write) -> None:
            row = write.require(cb, codebaseid, "codebase", "codebaseid", cb.c.name_hash)
            write.require(s.projects, projectid, "project", "projectid")
            if write.conn.execute(sa.select(cb.c.id).where(
                    cb.c.projectid == projectid, cb.c.name_hash == row.name_hash,
                    cb.c.id != codebaseid)).first() is not None:
                raise Conflict(f"project {projectid} has a codebase of that name already")
            write.conn.execute(cb.update().where(cb.c.id == codebaseid)
                               .values(projectid=projectid, slug=slug))
            write.emit_entity("codebase", "update", codebaseid)

        await self.transact(update)


RESOURCE_TYPES = (Codebase,)
