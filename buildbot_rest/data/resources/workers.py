# -*- test-case-name: tests.data.test_updates_workers -*-
"""Workers, with the masters they are connected to and the builders they serve; their
update methods (configured, connected, paused...), events and control actions."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.transaction import Write, no_row
from buildbot_rest.db import schema as s

w = s.workers
cw = s.configured_workers
conn_w = s.connected_workers
bm = s.builder_masters

#: upstream's identifier: what a worker's name must be (at most 50 characters)
IDENTIFIER = re.compile("[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*")


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

    async def action_stop(self, ctx: Context, params_: Mapping[str, Any],
                          kwargs: Mapping[str, Any]) -> None:
        """``stop``: shut the worker down gracefully (once idle)."""
        await self._control(ctx, "stop", params_, kwargs)

    async def action_kill(self, ctx: Context, params_: Mapping[str, Any],
                          kwargs: Mapping[str, Any]) -> None:
        """``kill``: cut the worker's connection now."""
        await self._control(ctx, "kill", params_, kwargs)

    async def action_pause(self, ctx: Context, params_: Mapping[str, Any],
                           kwargs: Mapping[str, Any]) -> None:
        """``pause``: the worker takes no new build."""
        await self._control(ctx, "pause", params_, kwargs)

    async def action_unpause(self, ctx: Context, params_: Mapping[str, Any],
                             kwargs: Mapping[str, Any]) -> None:
        """``unpause``: the worker takes builds again."""
        await self._control(ctx, "unpause", params_, kwargs)

    async def _control(self, ctx: Context, action: str, params_: Mapping[str, Any],
                       kwargs: Mapping[str, Any]) -> None:
        """A worker action, with ``params.reason`` (an optional string). When an active
        master has the worker (connected, or configured on one of its builders), it is
        that master's to act: upstream's ``control/worker/<id>/<action>`` message, with
        the reason (``"no reason"`` if none). Otherwise no master would act on it, and
        the state is set in the database directly (COMPAT "Also")."""
        reason = params.reason(params_)
        rtype: Worker = self.rtype  # type: ignore[assignment]

        def act(write: Write) -> int | None:
            workerid: int = self.entity_in(write.conn, ctx, kwargs)["workerid"]
            if rtype.held_in(write, workerid):
                return workerid
            rtype.act_in(write, workerid, action, reason)
            return None

        held = await ctx.connector.transact(act, user=ctx.user)
        if held is not None:
            ctx.connector.produce(("control", "worker", str(held), action),
                                  {"reason": reason})


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
    actions = ("stop", "kill", "pause", "unpause")
    updates = ("findWorkerId", "workerConfigured", "workerConnected", "workerDisconnected",
               "workerMissing", "set_worker_paused", "set_worker_graceful",
               "deconfigureAllWorkersForMaster")
    events = (EventKey(("workers", "{workerid}")),)

    def from_clause(self) -> sa.FromClause:
        return w

    # -- writes, in a transaction ------------------------------------------------------

    def held_in(self, write: Write, workerid: int) -> bool:
        """Whether an active master has the worker: connected to it, or configured on
        one of the builders it serves (that master consumes the worker's control
        messages)."""
        active = [s.masters.c.active != 0]
        connected = (sa.select(conn_w.c.id)
                     .join_from(conn_w, s.masters, s.masters.c.id == conn_w.c.masterid)
                     .where(conn_w.c.workerid == workerid, *active))
        configured_on = (sa.select(cw.c.id)
                         .join_from(cw, bm, bm.c.id == cw.c.buildermasterid)
                         .join(s.masters, s.masters.c.id == bm.c.masterid)
                         .where(cw.c.workerid == workerid, *active))
        held = write.conn.execute(sa.select(sa.or_(sa.exists(connected),
                                                   sa.exists(configured_on)))).scalar()
        return bool(held)

    def act_in(self, write: Write, workerid: int, action: str, reason: str) -> None:
        """A control action on a worker no active master has, done in the database:
        ``pause`` and ``unpause`` set ``paused`` and ``pause_reason`` (the reason, or
        ``"no reason"``, as the master would store the message's), ``stop`` sets
        ``graceful``, each with ``state_updated``; ``kill`` removes what is left of its
        connections (to inactive masters), with ``disconnected`` if there was any."""
        if action == "pause":
            self.set_paused_in(write, workerid, True, reason)
        elif action == "unpause":
            self.set_paused_in(write, workerid, False, None)
        elif action == "stop":
            self.set_graceful_in(write, workerid, True)
        else:
            gone = write.conn.execute(conn_w.delete().where(conn_w.c.workerid == workerid))
            if gone.rowcount:
                write.emit_entity("worker", "disconnected", workerid)

    def set_paused_in(self, write: Write, workerid: int, paused: bool,
                      pause_reason: str | None) -> None:
        write.conn.execute(w.update().where(w.c.id == workerid)
                           .values(paused=int(paused), pause_reason=pause_reason))
        write.emit_entity("worker", "state_updated", workerid)

    def set_graceful_in(self, write: Write, workerid: int, graceful: bool) -> None:
        write.conn.execute(w.update().where(w.c.id == workerid)
                           .values(graceful=int(graceful)))
        write.emit_entity("worker", "state_updated", workerid)

    def deconfigure_all_in(self, write: Write, masterid: int) -> None:
        """No worker is configured on master ``masterid`` any more."""
        write.conn.execute(cw.delete().where(cw.c.buildermasterid.in_(
            sa.select(bm.c.id).where(bm.c.masterid == masterid))))

    def configured_in(self, write: Write, workerid: int, masterid: int,
                      builderids: list[int]) -> None:
        """The worker is configured on master ``masterid`` for exactly the builders
        ``builderids`` among those the master serves (others are ignored)."""
        links = set()
        if builderids:
            links = set(write.conn.execute(
                sa.select(bm.c.id).where(bm.c.masterid == masterid,
                                         bm.c.builderid.in_(builderids))).scalars())
        old = set(write.conn.execute(
            sa.select(cw.c.buildermasterid).join_from(cw, bm, bm.c.id == cw.c.buildermasterid)
            .where(bm.c.masterid == masterid, cw.c.workerid == workerid)).scalars())
        if old - links:
            write.conn.execute(cw.delete().where(cw.c.workerid == workerid,
                                                 cw.c.buildermasterid.in_(old - links)))
        if links - old:
            write.conn.execute(cw.insert(), [{"workerid": workerid, "buildermasterid": link}
                                             for link in sorted(links - old)])

    def connected_in(self, write: Write, workerid: int, masterid: int,
                     workerinfo: Mapping[str, Any]) -> None:
        """The worker is connected to master ``masterid`` and says ``workerinfo``."""
        link = [conn_w.c.workerid == workerid, conn_w.c.masterid == masterid]
        write.find_or_create(conn_w, link, {"workerid": workerid, "masterid": masterid})
        write.conn.execute(w.update().where(w.c.id == workerid)
                           .values(info=json.dumps(dict(workerinfo))))
        write.emit_entity("worker", "connected", workerid)

    # -- update methods ----------------------------------------------------------------

    async def findWorkerId(self, name: str) -> int:
        """The id of the worker named ``name`` (an identifier of at most 50 characters),
        created (not paused, not graceful, empty info) if there is none."""
        params.check_text("name", name)
        if len(name) > 50 or not IDENTIFIER.fullmatch(name):
            raise InvalidParams({"name": f"worker name {name!r} is not a 50-character "
                                         "identifier"})

        def find(write: Write) -> int:
            workerid, _ = write.find_or_create(
                w, [w.c.name == name],
                {"name": name, "info": "{}", "paused": 0, "pause_reason": None,
                 "graceful": 0})
            assert workerid is not None
            return workerid

        return await self.transact(find)

    async def workerConfigured(self, workerid: int, masterid: int,
                               builderids: list[int]) -> None:
        """Worker ``workerid`` is configured on master ``masterid`` for the builders
        ``builderids`` (those the master serves; no event, as upstream). NotFound for
        a missing worker or master."""
        params.check_int("workerid", workerid)
        params.check_int("masterid", masterid)
        builderids = params.check_list("builderids", builderids, "builder ids")
        for builderid in builderids:
            params.check_int("builderids", builderid)

        def configure(write: Write) -> None:
            write.require(w, workerid, "worker", "workerid")
            write.require(s.masters, masterid, "master", "masterid")
            self.configured_in(write, workerid, masterid, builderids)

        await self.transact(configure)

    async def workerConnected(self, workerid: int, masterid: int,
                              workerinfo: Mapping[str, Any]) -> None:
        """Worker ``workerid`` connected to master ``masterid``, telling ``workerinfo``
        (a JSON object, stored as the worker's info): ``workers/<id>/connected``."""
        params.check_int("workerid", workerid)
        params.check_int("masterid", masterid)
        if not isinstance(workerinfo, Mapping):
            raise InvalidParams({"workerinfo": "must be a JSON object"})
        try:
            json.dumps(dict(workerinfo))
        except (TypeError, ValueError) as e:
            raise InvalidParams({"workerinfo": f"must be a JSON object: {e}"}) from None

        def connect(write: Write) -> None:
            write.require(w, workerid, "worker", "workerid")
            write.require(s.masters, masterid, "master", "masterid")
            self.connected_in(write, workerid, masterid, workerinfo)

        await self.transact(connect)

    async def workerDisconnected(self, workerid: int, masterid: int) -> None:
        """Worker ``workerid`` is no longer connected to master ``masterid``:
        ``workers/<id>/disconnected``."""
        params.check_int("workerid", workerid)
        params.check_int("masterid", masterid)

        def disconnect(write: Write) -> None:
            write.require(w, workerid, "worker", "workerid")
            write.conn.execute(conn_w.delete().where(conn_w.c.workerid == workerid,
                                                     conn_w.c.masterid == masterid))
            write.emit_entity("worker", "disconnected", workerid)

        await self.transact(disconnect)

    async def workerMissing(self, workerid: int, masterid: int,
                            last_connection: Any, notify: Any) -> None:
        """Worker ``workerid`` has not come back for a while (nothing is written):
        ``workers/<id>/missing``, whose message is the worker with upstream's two more
        keys, ``last_connection`` and ``notify`` (as given: upstream's master gives the
        time as text, and the addresses to notify)."""
        params.check_int("workerid", workerid)
        params.check_int("masterid", masterid)

        def missing(write: Write) -> None:
            worker = write.entity("worker", workerid)
            if worker is None:
                raise no_row("worker", "workerid", workerid)
            worker["last_connection"] = last_connection
            worker["notify"] = notify
            write.emit("worker", "missing", worker)

        await self.transact(missing)

    async def set_worker_paused(self, workerid: int, paused: bool,
                                pause_reason: str | None = None) -> None:
        """Pause or unpause worker ``workerid`` (with a reason, or none):
        ``workers/<id>/state_updated``."""
        params.check_int("workerid", workerid)
        params.check_bool("paused", paused)
        params.check_text("pause_reason", pause_reason, nullable=True)

        def pause(write: Write) -> None:
            write.require(w, workerid, "worker", "workerid")
            self.set_paused_in(write, workerid, paused, pause_reason)

        await self.transact(pause)

    async def set_worker_graceful(self, workerid: int, graceful: bool) -> None:
        """Whether worker ``workerid`` shuts down once idle:
        ``workers/<id>/state_updated``."""
        params.check_int("workerid", workerid)
        params.check_bool("graceful", graceful)

        def set_graceful(write: Write) -> None:
            write.require(w, workerid, "worker", "workerid")
            self.set_graceful_in(write, workerid, graceful)

        await self.transact(set_graceful)

    async def deconfigureAllWorkersForMaster(self, masterid: int) -> None:
        """No worker is configured on master ``masterid`` any more (no event)."""
        params.check_int("masterid", masterid)

        def deconfigure(write: Write) -> None:
            write.require(s.masters, masterid, "master", "masterid")
            self.deconfigure_all_in(write, masterid)

        await self.transact(deconfigure)

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
