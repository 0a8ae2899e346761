# -*- test-case-name: tests.data.test_resources -*-
"""Masters: the build masters that share this database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

m = s.masters
bm = s.builder_masters


def serves(builderid: Any) -> sa.ColumnElement[bool]:
    """The master (masters.id) serves the builder."""
    return sa.exists().where(bm.c.masterid == m.c.id, bm.c.builderid == builderid)


class MasterEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/masters/n:masterid", "/builders/n:builderid/masters/n:masterid")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds = [m.c.id == ids["masterid"]]
        if "builderid" in ids:
            conds.append(serves(ids["builderid"]))
        return conds


class MastersEndpoint(SQLEndpoint):
    patterns = ("/masters", "/builders/n:builderid/masters")
    root_link = "masters"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [serves(ids["builderid"])] if "builderid" in ids else []


class Master(ResourceType):
    name = "master"
    plural = "masters"
    fields = (
        Field("masterid", t.Integer(), m.c.id),
        Field("name", t.String(), m.c.name),
        Field("active", t.Boolean(), m.c.active),
        Field("last_active", t.DateTime(), m.c.last_active),
    )
    key = ("masterid",)
    endpoints = (MasterEndpoint, MastersEndpoint)

    def from_clause(self) -> sa.FromClause:
        return m


RESOURCE_TYPES = (Master,)
