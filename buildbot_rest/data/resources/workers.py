# -*- test-case-name: tests.www.test_workers -*-
"""Workers, with the masters they are connected to and the builders they serve."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

w = s.workers
cw = s.configured_workers
conn_w = s.connected_workers
bm = s.builder_masters


def configured(ids: Mapping[str, Any]) -> list[Any]:
    """The worker (workers.id) is configured on the path's master and/or builder."""
    conds = [cw.c.workerid == w.c.id, bm.c.id == cw.c.buildermasterid]
    if "masterid" in ids:
        conds.append(bm.c.masterid == ids["masterid"])
    if "builderid" in ids:
        conds.append(bm.c.builderid == ids["builderid"])
    if len(conds) == 2:
        return []
    return [sa.exists().where(*conds)]


class WorkerEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/workers/n:workerid",
        "/workers/i:name",
        "/masters/n:masterid/workers/n:workerid",
        "/masters/n:masterid/workers/i:name",
        "/masters/n:masterid/builders/n:builderid/workers/n:workerid",
        "/masters/n:masterid/builders/n:builderid/workers/i:name",
        "/builders/n:builderid/workers/n:workerid",
        "/builders/n:builderid/workers/i:name",
    )
    unchecked = frozenset({"workerid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds = [w.c.id == ids["workerid"]] if "workerid" in ids else [w.c.name == ids["name"]]
        return conds + configured(ids)


class WorkersEndpoint(SQLEndpoint):
    patterns = (
        "/workers",
        "/masters/n:masterid/workers",
        "/masters/n:masterid/builders/n:builderid/workers",
        "/builders/n:builderid/workers",
    )
    root_link = "workers"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return configured(ids)


_MASTER_ID = t.Entity("master_id", {"masterid": t.Integer()})
_MASTER_BUILDER = t.Entity("master_builder", {"masterid": t.Integer(), "builderid": t.Integer()})


class Worker(ResourceType):
    name = "worker"
    plural = "workers"
    fields = (
        Field("workerid", t.Integer(), w.c.id),
        Field("name", t.String(), w.c.name),
        Field("connected_to", t.List(_MASTER_ID)),
        Field("configured_on", t.List(_MASTER_BUILDER)),
        Field("workerinfo", t.JsonObject(), w.c.info),
        Field("paused", t.Boolean(), w.c.paused),
        Field("pause_reason", t.NoneOk(t.String()), w.c.pause_reason),
        Field("graceful", t.Boolean(), w.c.graceful),
    )
    key = ("workerid",)
    endpoints = (WorkerEndpoint, WorkersEndpoint)

    def from_clause(self) -> sa.FromClause:
        return w

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        # Under a master or builder path, the lists only hold that master's or builder's
        # rows (connected_to is restricted by master only), as upstream has it.
        path: dict[str, Any] = {}
        if ctx is not None and isinstance(ctx.endpoint, (WorkerEndpoint, WorkersEndpoint)):
            path = ctx.kwargs
        masterid, builderid = path.get("masterid"), path.get("builderid")
        ids = [i["workerid"] for i in items]
        connected: dict[int, list[dict[str, int]]] = defaultdict(list)
        configured_on: dict[int, list[dict[str, int]]] = defaultdict(list)
        for chunk in chunked(ids):
            stmt = (sa.select(cw.c.workerid, bm.c.masterid, bm.c.builderid)
                    .join_from(cw, bm, bm.c.id == cw.c.buildermasterid)
                    .where(cw.c.workerid.in_(chunk)).order_by(cw.c.id))
            if masterid is not None:
                stmt = stmt.where(bm.c.masterid == masterid)
            if builderid is not None:
                stmt = stmt.where(bm.c.builderid == builderid)
            for workerid, mid, bid in conn.execute(stmt):
                configured_on[workerid].append({"masterid": mid, "builderid": bid})
            links = (sa.select(conn_w.c.workerid, conn_w.c.masterid)
                     .where(conn_w.c.workerid.in_(chunk)).order_by(conn_w.c.id))
            if masterid is not None:
                links = links.where(conn_w.c.masterid == masterid)
            for workerid, mid in conn.execute(links):
                connected[workerid].append({"masterid": mid})
        for item in items:
            item["connected_to"] = connected[item["workerid"]]
            item["configured_on"] = configured_on[item["workerid"]]


RESOURCE_TYPES = (Worker,)
