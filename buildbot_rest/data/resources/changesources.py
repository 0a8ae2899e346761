# -*- test-case-name: tests.www.test_schedulers -*-
"""Change sources, each with the master that runs it embedded (or null)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resources.schedulers import MASTER_ENTITY, embed_masters
from buildbot_rest.db import schema as s

cs = s.changesources
csm = s.changesource_masters


class ChangeSourceEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/changesources/n:changesourceid",
        "/masters/n:masterid/changesources/n:changesourceid",
    )
    unchecked = frozenset({"changesourceid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds = [cs.c.id == ids["changesourceid"]]
        if "masterid" in ids:
            conds.append(csm.c.masterid == ids["masterid"])
        return conds


class ChangeSourcesEndpoint(SQLEndpoint):
    patterns = (
        "/changesources",
        "/masters/n:masterid/changesources",
    )
    root_link = "changesources"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [csm.c.masterid == ids["masterid"]] if "masterid" in ids else []


class ChangeSource(ResourceType):
    name = "changesource"
    plural = "changesources"
    fields = (
        Field("changesourceid", t.Integer(), cs.c.id),
        Field("name", t.String(), cs.c.name),
        Field("master", MASTER_ENTITY),
    )
    key = ("changesourceid",)
    extra_columns = (csm.c.masterid.label("_masterid"),)
    endpoints = (ChangeSourceEndpoint, ChangeSourcesEndpoint)

    def from_clause(self) -> sa.FromClause:
        return cs.outerjoin(csm, csm.c.changesourceid == cs.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        embed_masters(conn, ctx, items)


RESOURCE_TYPES = (ChangeSource,)
