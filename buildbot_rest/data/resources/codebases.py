# -*- test-case-name: tests.www.test_projects -*-
"""Codebases: the repositories of a project."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash

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

    def from_clause(self) -> sa.FromClause:
        return cb


RESOURCE_TYPES = (Codebase,)
