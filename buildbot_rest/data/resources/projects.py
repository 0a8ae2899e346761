# -*- test-case-name: tests.www.test_projects -*-
"""Projects, found by id or by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash

p = s.projects
b = s.builders
bm = s.builder_masters

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

    def from_clause(self) -> sa.FromClause:
        return p

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        # ``active`` is only told when the request filters on it, as upstream does.
        if spec is None or not spec.filters_on("active"):
            for item in items:
                item["active"] = None


RESOURCE_TYPES = (Project,)
