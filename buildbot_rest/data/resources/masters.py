# -*- test-case-name: tests.data.test_updates_masters -*-
"""Masters: the build masters that share this database; their update methods (a master
started, stopped or expired, with upstream's housekeeping) and events; finding a master
by name or creating it (:func:`find_or_create_master_in`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

if TYPE_CHECKING:
    from buildbot_rest.data.resources.builders import Builder
    from buildbot_rest.data.resources.changesources import ChangeSource
    from buildbot_rest.data.resources.workers import Worker

m = s.masters
bm = s.builder_masters

#: a master that has not said it is alive for this long is expired (upstream's 10 min)
EXPIRE_SECONDS = 10 * 60

#: upstream's results code of a build or step to be tried again
RETRY = 5


def serves(builderid: Any) -> sa.ColumnElement[bool]:
    """The master (masters.id) serves the builder."""
    return sa.exists().where(bm.c.masterid == m.c.id, bm.c.builderid == builderid)


# -- writing -------------------------------------------------------------------------------

def find_or_create_master_in(write: Write, name: str) -> int:
    """The id of the master named ``name``, its row created (inactive, last active now,
    as upstream's ``findMasterId``) if there is none."""
    return write.find_or_create_named(m, name, values={"active": 0,
                                                       "last_active": write.now})


def _release_claims_in(write: Write, masterid: int, brids: list[int]) -> None:
    """Master ``masterid``'s claims on the requests ``brids`` deleted (those still
    incomplete), each with its ``unclaimed`` event."""
    brc, br = s.buildrequest_claims, s.buildrequests
    for brid in brids:
        done = write.conn.execute(brc.delete().where(
            brc.c.brid == brid, brc.c.masterid == masterid,
            brc.c.brid.in_(sa.select(br.c.id).where(br.c.id == brid, br.c.complete == 0))))
        if done.rowcount:
            write.emit_entity("buildrequest", "unclaimed", brid)


# -- endpoints and the resource type --------------------------------------------------------

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


#: a master that was just deactivated: (masterid, name, whether it was active before)
_Deactivated = tuple[int, str, bool]


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
    updates = ("findMasterId", "masterActive", "masterStopped", "expireMasters")
    events = (EventKey(("masters", "{masterid}")),)

    def from_clause(self) -> sa.FromClause:
        return m

    # -- writes, in a transaction ------------------------------------------------------

    def set_state_in(self, write: Write, masterid: int, active: bool) -> bool:
        """Store whether the master is active (an active one is alive now: its
        ``last_active`` is refreshed); a master marked inactive no longer runs its
        schedulers. Whether its state changed; NotFound if there is no such master."""
        row = write.require(m, masterid, "master", "masterid", m.c.active)
        values: dict[str, Any] = {"active": int(active)}
        if active:
            values["last_active"] = write.now
        else:
            write.conn.execute(s.scheduler_masters.delete()
                               .where(s.scheduler_masters.c.masterid == masterid))
        write.conn.execute(m.update().where(m.c.id == masterid).values(**values))
        return bool(row.active) != active

    def housekeeping_in(self, write: Write, masterid: int) -> None:
        """What upstream does in the database for a master that is gone (after
        :meth:`set_state_in` marked it inactive and released its schedulers): its
        workers are no longer configured on it, its builders no longer served by it
        (builder ``stopped`` events), its change sources released. (Its builds are
        finished apart, see :meth:`finish_builds`.)"""
        cast("Worker", write.rtype("worker")).deconfigure_all_in(write, masterid)
        cast("Builder", write.rtype("builder")).update_builder_list_in(write, masterid, [])
        # (its schedulers were released with its state: set_state_in)
        cast("ChangeSource", write.rtype("changesource")).release_all_in(write, masterid)

    def deactivate_in(self, write: Write, masterid: int, name: str,
                      housekeeping: bool = False) -> _Deactivated | None:
        """Mark a master inactive; if it was active (or ``housekeeping``), do its
        housekeeping. What :meth:`after_deactivation` needs, or None (nothing done)."""
        changed = self.set_state_in(write, masterid, False)
        if not changed and not housekeeping:
            return None
        self.housekeeping_in(write, masterid)
        return masterid, name, changed

    # -- after the transaction ---------------------------------------------------------

    async def finish_builds(self, masterid: int) -> None:
        """Upstream's rest of the housekeeping, through the update methods of builds,
        steps, logs and build requests (each its own write): the master's unfinished
        builds end with RETRY, their running steps too, and their open logs are
        finished; then its claims on unfinished requests are given up, so that another
        master may take them (upstream means to, but its call gives up the claims of
        the master that runs the housekeeping, not the dead one's: theirs stay)."""
        connector = cast(Any, self.connector)
        updates = connector.updates

        def running(conn: sa.Connection) -> list[tuple[int, int | None, int | None]]:
            b, st, lg = s.builds, s.steps, s.logs
            stmt = (sa.select(b.c.id, st.c.id, lg.c.id)
                    .select_from(b.outerjoin(st, sa.and_(st.c.buildid == b.c.id,
                                                         st.c.results.is_(None)))
                                 .outerjoin(lg, sa.and_(lg.c.stepid == st.c.id,
                                                        lg.c.complete == 0)))
                    .where(b.c.masterid == masterid, b.c.complete_at.is_(None))
                    .order_by(b.c.id, st.c.id, lg.c.id))
            return [(row[0], row[1], row[2]) for row in conn.execute(stmt)]

        def claimed(conn: sa.Connection) -> list[int]:
            brc, br = s.buildrequest_claims, s.buildrequests
            stmt = (sa.select(brc.c.brid).join_from(brc, br, br.c.id == brc.c.brid)
                    .where(brc.c.masterid == masterid, br.c.complete == 0)
                    .order_by(brc.c.brid))
            return [row[0] for row in conn.execute(stmt)]

        ctx = connector.context()
        rows = await ctx.run(running)
        builds: dict[int, dict[int, list[int]]] = {}
        for buildid, stepid, logid in rows:
            steps = builds.setdefault(buildid, {})
            if stepid is not None:
                logs = steps.setdefault(stepid, [])
                if logid is not None:
                    logs.append(logid)
        for buildid, steps in builds.items():
            for stepid, logids in steps.items():
                for logid in logids:
                    await updates.finishLog(logid=logid)
                await updates.finishStep(stepid=stepid, results=RETRY, hidden=False)
            await updates.finishBuild(buildid=buildid, results=RETRY)
        brids = await ctx.run(claimed)
        if brids:
            await self.transact(_release_claims_in, masterid, brids)

    async def after_deactivation(self, deactivated: _Deactivated) -> None:
        """Finish the builds of a deactivated master; then, if it was active, publish
        ``masters/<id>/stopped`` (last, as upstream)."""
        masterid, name, changed = deactivated
        await self.finish_builds(masterid)
        if changed:
            message = {"masterid": masterid, "name": name, "active": False}
            assert self.connector is not None
            for key in self.routing_keys(message, "stopped"):
                self.connector.produce(key, message)

    # -- update methods ----------------------------------------------------------------

    async def findMasterId(self, name: str) -> int:
        """The id of the master named ``name``, its row created (inactive) if there is
        none. Upstream offers this in its database layer only (``db.masters``); a
        program that embeds the server needs it to become a master."""
        params.check_text("name", name, column=m.c.name)
        return await self.transact(find_or_create_master_in, name)

    async def masterActive(self, name: str, masterid: int) -> None:
        """The master is alive (upstream's heartbeat): ``active`` set, ``last_active``
        now; ``masters/<id>/started`` when it was inactive. NotFound if there is no
        such master."""
        params.check_text("name", name)
        params.check_int("masterid", masterid)

        def activate(write: Write) -> None:
            if self.set_state_in(write, masterid, True):
                write.emit("master", "started",
                           {"masterid": masterid, "name": name, "active": True})

        await self.transact(activate)

    async def masterStopped(self, name: str, masterid: int) -> None:
        """The master stopped: if it was active, it is marked inactive, its housekeeping
        done and ``masters/<id>/stopped`` published. NotFound if there is no such
        master."""
        params.check_text("name", name)
        params.check_int("masterid", masterid)
        deactivated = await self.transact(self.deactivate_in, masterid, name)
        if deactivated is not None:
            await self.after_deactivation(deactivated)

    async def expireMasters(self, forceHouseKeeping: bool = False) -> None:
        """Deactivate every master not seen alive for 10 minutes, as
        :meth:`masterStopped` does; with ``forceHouseKeeping``, the housekeeping of
        those that were inactive already is done again (without an event)."""
        params.check_bool("forceHouseKeeping", forceHouseKeeping)

        def expire(write: Write) -> list[_Deactivated]:
            old = write.conn.execute(
                sa.select(m.c.id, m.c.name).where(m.c.last_active < write.now - EXPIRE_SECONDS)
                .order_by(m.c.id)).all()
            done = [self.deactivate_in(write, masterid, name, forceHouseKeeping)
                    for masterid, name in old]
            return [d for d in done if d is not None]

        for deactivated in await self.transact(expire):
            await self.after_deactivation(deactivated)


RESOURCE_TYPES = (Master,)
