# -*- test-case-name: tests.data.test_updates_masters -*-
"""Change sources, each with the master that runs it embedded (or null); their update
methods (found by name, claimed by a master)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resources.schedulers import (
    MASTER_ENTITY,
    embed_masters,
    try_set_master_in,
)
from buildbot_rest.data.transaction import Write
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
    updates = ("findChangeSourceId", "trySetChangeSourceMaster")

    def from_clause(self) -> sa.FromClause:
        return cs.outerjoin(csm, csm.c.changesourceid == cs.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        embed_masters(conn, ctx, items)

    def release_all_in(self, write: Write, masterid: int) -> None:
        """Master ``masterid`` runs no change source any more."""
        write.conn.execute(csm.delete().where(csm.c.masterid == masterid))

    async def findChangeSourceId(self, name: str) -> int:
        """The id of the change source named ``name``, created if there is none."""
        params.check_text("name", name)

        def find(write: Write) -> int:
            return write.find_or_create_named(cs, name)

        return await self.transact(find)

    async def trySetChangeSourceMaster(self, changesourceid: int,
                                       masterid: int | None) -> bool:
        """Master ``masterid`` runs change source ``changesourceid`` (see
        :func:`~buildbot_rest.data.resources.schedulers.try_set_master_in`): True if it
        does now, False if a master already did; None releases it."""
        return await self.transact(try_set_master_in, cs, csm, "changesourceid",
                                   changesourceid, masterid, "change source")


RESOURCE_TYPES = (ChangeSource,)
