# -*- test-case-name: tests.www.test_schedulers -*-
"""Schedulers, each with the master that runs it embedded (or null)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resources.masters import Master
from buildbot_rest.db import schema as s

sch = s.schedulers
sm = s.scheduler_masters

#: the type of an embedded ``master`` field (upstream's master entity, or null)
MASTER_ENTITY = t.NoneOk(t.Entity("master", {f.name: f.type for f in Master.fields}))


def embed_masters(conn: sa.Connection, ctx: Any, items: list[dict[str, Any]]) -> None:
    """Replace each item's ``_masterid`` by its ``master``: the whole master entity, with
    a ``link`` to it, or None."""
    masterids = sorted({i["_masterid"] for i in items if i["_masterid"] is not None})
    masters: dict[int, dict[str, Any]] = {}
    if masterids:
        rtype = ctx.connector.rtypes["master"]
        for chunk in chunked(masterids):
            for m in engine.fetch_embedded(conn, ctx, rtype, [s.masters.c.id.in_(chunk)]):
                m["link"] = f"{ctx.base_url}api/v2/masters/{m['masterid']}"
                masters[m["masterid"]] = m
    for item in items:
        master = masters.get(item.pop("_masterid"))
        item["master"] = dict(master) if master is not None else None


class SchedulerEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/schedulers/n:schedulerid",
        "/masters/n:masterid/schedulers/n:schedulerid",
    )
    unchecked = frozenset({"schedulerid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds = [sch.c.id == ids["schedulerid"]]
        if "masterid" in ids:
            conds.append(sm.c.masterid == ids["masterid"])
        return conds


class SchedulersEndpoint(SQLEndpoint):
    patterns = (
        "/schedulers",
        "/masters/n:masterid/schedulers",
    )
    root_link = "schedulers"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [sm.c.masterid == ids["masterid"]] if "masterid" in ids else []


class Scheduler(ResourceType):
    name = "scheduler"
    plural = "schedulers"
    fields = (
        Field("schedulerid", t.Integer(), sch.c.id),
        Field("name", t.String(), sch.c.name),
        # a NULL column reads as disabled, as upstream reads it
        Field("enabled", t.Boolean(), sa.func.coalesce(sch.c.enabled, 0) != 0),
        Field("master", MASTER_ENTITY),
    )
    key = ("schedulerid",)
    extra_columns = (sm.c.masterid.label("_masterid"),)
    endpoints = (SchedulerEndpoint, SchedulersEndpoint)

    def from_clause(self) -> sa.FromClause:
        return sch.outerjoin(sm, sm.c.schedulerid == sch.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        embed_masters(conn, ctx, items)


RESOURCE_TYPES = (Scheduler,)
