# -*- test-case-name: tests.data.test_updates_projects -*-
"""Projects, found by id or by name; their update methods (found or created by name,
described) and events."""

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
from buildbot_rest.db.hashes import name_hash, shorten

p = s.projects
b = s.builders
bm = s.builder_masters

#: the length of the ``slug`` columns of projects and codebases
SLUG_LENGTH = 50

#: a project is active when one of its builders is served by some master
ACTIVE = sa.exists().where(b.c.projectid == p.c.id, bm.c.builderid == b.c.id)


class ProjectEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/projects/n:projectid",
        "/projects/i:projectname",
    )
    unchecked = frozenset({"projectid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        if "projectid" in ids:
            return [p.c.id == ids["projectid"]]
        return [p.c.name_hash == name_hash(ids["projectname"])]


class ProjectsEndpoint(SQLEndpoint):
    patterns = ("/projects",)
    root_link = "projects"


class Project(ResourceType):
    name = "project"
    plural = "projects"
    fields = (
        Field("projectid", t.Integer(), p.c.id),
        Field("name", t.Identifier(70), p.c.name),
        Field("slug", t.Identifier(70), p.c.slug),
        Field("active", t.NoneOk(t.Boolean()), ACTIVE),
        Field("description", t.NoneOk(t.String()), p.c.description),
        Field("description_format", t.NoneOk(t.String()), p.c.description_format),
        Field("description_html", t.NoneOk(t.String()), p.c.description_html),
    )
    # upstream lists projects by name
    key = ("name", "projectid")
    endpoints = (ProjectEndpoint, ProjectsEndpoint)
    updates = ("find_project_id", "update_project_info")
    events = (EventKey(("projects", "{projectid}")),)

    def from_clause(self) -> sa.FromClause:
        return p

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        # ``active`` is only told when the request filters on it, as upstream does.
        if spec is None or not spec.filters_on("active"):
            for item in items:
                item["active"] = None

    async def find_project_id(self, name: str, auto_create: bool = True) -> int | None:
        """The id of the project named ``name``; if there is none, created (its slug is
        its name, shortened as upstream shortens names to fit 50 characters) when
        ``auto_create``, else None."""
        params.check_text("name", name)
        params.check_bool("auto_create", auto_create)

        def find(write: Write) -> int | None:
            return write.find_or_create_named(
                p, name, values={"slug": shorten(name, SLUG_LENGTH)}, create=auto_create)

        return await self.transact(find)

    async def update_project_info(self, projectid: int, slug: str, description: str | None,
                                  description_format: str | None,
                                  description_html: str | None) -> None:
        """Store a project's slug and description (text, format, HTML), then publish
        ``projects/<id>/update`` with the project. NotFound for a missing project."""
        params.check_int("projectid", projectid)
        check_slug(slug)
        for name, value in (("description", description),
                            ("description_format", description_format),
                            ("description_html", description_html)):
            params.check_text(name, value, nullable=True)

        def update(write: Write) -> None:
            write.update(p, projectid, "project", "projectid", slug=slug,
                         description=description, description_format=description_format,
                         description_html=description_html)
            write.emit_entity("project", "update", projectid)

        await self.transact(update)


def check_slug(slug: Any) -> None:
    """InvalidParams unless ``slug`` is text that fits its column."""
    params.check_text("slug", slug, max_length=SLUG_LENGTH)


RESOURCE_TYPES = (Project,)
