# -*- test-case-name: tests.www.test_projects -*-
"""Branches of a codebase and the commit each one points at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

br = s.codebase_branches


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

    def from_clause(self) -> sa.FromClause:
        return br


RESOURCE_TYPES = (Branch,)
