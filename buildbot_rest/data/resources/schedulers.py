# -*- test-case-name: tests.www.test_schedulers -*-
"""Schedulers, each with the master that runs it embedded (or null)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine, params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import BadRequest
from buildbot_rest.data.resources import forceschedulers
from buildbot_rest.data.resources.masters import Master
from buildbot_rest.data.transaction import Write
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


def try_set_master_in(write: Write, table: sa.Table, link: sa.Table, link_key: str,
                      ident: int, masterid: int | None, what: str) -> bool:
    """Upstream's ``trySet<Scheduler|ChangeSource>Master``: master ``masterid`` runs
    the scheduler or change source ``ident`` (of ``table``; ``link`` is its
    ``*_masters`` table, whose ``link_key`` column names it). True if it does now, False
    if a master already did (this one included, as upstream); ``masterid`` None
    releases it (True). NotFound for a missing one or a missing master."""
    params.check_int(link_key, ident)
    params.check_int("masterid", masterid, nullable=True)
    write.require(table, ident, what, link_key)
    if masterid is None:
        write.conn.execute(link.delete().where(link.c[link_key] == ident))
        return True
    write.require(s.masters, masterid, "master", "masterid")
    _, created = write.find_or_create(link, [link.c[link_key] == ident],
                                      {link_key: ident, "masterid": masterid},
                                      id_column=link.c[link_key])
    return created


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

    async def action_enable(self, ctx: Context, params_: Mapping[str, Any],
                            kwargs: Mapping[str, Any]) -> None:
        """``enable`` with ``params.enabled`` (a boolean, required): the scheduler's
        ``enabled`` column, and its ``updated`` event (upstream's). A master running the
        scheduler reacts to the event. Result: null."""
        enabled = params.boolean(params_, "enabled", required=True)

        def enable(write: Write) -> None:
            schedulerid = self.entity_in(write.conn, ctx, kwargs)["schedulerid"]
            rtype = self.rtype
            assert isinstance(rtype, Scheduler)
            rtype.set_enabled(write, schedulerid, enabled)

        await ctx.connector.transact(enable, user=ctx.user)

    async def action_force(self, ctx: Context, params_: Mapping[str, Any],
                           kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``force`` on the row of one of the configured force schedulers (found by
        name): the same as ``force`` on ``/forceschedulers/<name>`` (an extension:
        upstream has none here). Result: ``{"buildsetid": bsid, "buildrequestids":
        {"<builderid>": brid}}``. 400 if the scheduler is not a force scheduler of this
        server's configuration."""
        scheduler = await ctx.run(self.entity_in, ctx, kwargs)
        entry = forceschedulers.find_configured(ctx, scheduler["name"])
        if entry is None:
            raise BadRequest(f"scheduler {scheduler['schedulerid']} "
                             f"({scheduler['name']}) is not a force scheduler of this "
                             "server's configuration")
        bsid, brids = await forceschedulers.force(ctx, entry, params_)
        return {"buildsetid": bsid,
                "buildrequestids": {str(k): v for k, v in brids.items()}}


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
    actions = ("enable", "force")
    updates = ("schedulerEnable", "findSchedulerId", "trySetSchedulerMaster")
    events = (EventKey(("schedulers", "{schedulerid}")),)

    def set_enabled(self, write: Write, schedulerid: int, enabled: bool) -> None:
        """Store ``enabled`` and publish ``schedulers/<id>/updated`` with the scheduler."""
        write.conn.execute(sch.update().where(sch.c.id == schedulerid)
                           .values(enabled=int(bool(enabled))))
        write.emit_entity("scheduler", "updated", schedulerid)

    async def schedulerEnable(self, schedulerid: int, v: bool) -> None:
        """Enable or disable a scheduler (upstream's update method); NotFound if there
        is none. A master running it reacts to the ``updated`` event."""
        params.check_int("schedulerid", schedulerid)
        params.check_bool("v", v)

        def enable(write: Write) -> None:
            write.require(sch, schedulerid, "scheduler", "schedulerid")
            self.set_enabled(write, schedulerid, v)

        await self.transact(enable)

    async def findSchedulerId(self, name: str) -> int:
        """The id of the scheduler named ``name``, its row created if there is none
        (upstream's, by ``name_hash``)."""
        params.check_text("name", name, column=sch.c.name)
        return await self.transact(lambda write: write.find_or_create_named(sch, name))

    async def trySetSchedulerMaster(self, schedulerid: int, masterid: int | None) -> bool:
        """Master ``masterid`` runs scheduler ``schedulerid`` (see
        :func:`try_set_master_in`): True if it does now, False if a master already did;
        None releases it."""
        return await self.transact(try_set_master_in, sch, sm, "schedulerid", schedulerid,
                                   masterid, "scheduler")

    def from_clause(self) -> sa.FromClause:
        return sch.outerjoin(sm, sm.c.schedulerid == sch.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        embed_masters(conn, ctx, items)


RESOURCE_TYPES = (Scheduler,)
