# -*- test-case-name: tests.data.test_resources -*-
"""Builds, with their properties on request (``property=``); their update methods
(``addBuild``, ``setBuildStateString``, ``finishBuild``...) and their actions (``stop``,
``rebuild``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import BadRequest, Conflict
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

b = s.builds

#: upstream's result code of a build stopped by a user (process/results.py)
CANCELLED = 6


def load_properties(conn: sa.Connection, buildids: list[int],
                    names: list[str] | None) -> dict[int, dict[str, list[Any]]]:
    """``{buildid: {name: [value, source]}}`` for the builds; ``names`` None or with
    ``*`` means every property."""
    bp = s.build_properties
    out: dict[int, dict[str, list[Any]]] = defaultdict(dict)
    wanted = None if names is None or "*" in names else names
    for chunk in chunked(buildids):
        stmt = sa.select(bp.c.buildid, bp.c.name, bp.c.value, bp.c.source).where(
            bp.c.buildid.in_(chunk))
        if wanted is not None:
            stmt = stmt.where(bp.c.name.in_(wanted))
        for buildid, name, value, source in conn.execute(stmt):
            out[buildid][name] = [t.loads_json(value), source]
    return out


# -- writing ----------------------------------------------------------------------------

#: the most attempts at a free build number before giving up (each failed one means a
#: concurrent writer took the number; a few are plenty)
NUMBER_ATTEMPTS = 100


def build_row_in(write: Write, buildid: int, *, lock: bool = False) -> sa.Row[Any]:
    """The builds row of ``buildid`` (NotFound if none); ``lock``: locked until the end
    of the transaction (PostgreSQL, MySQL), so that writers of the same build's children
    take turns."""
    return write.require(b, buildid, "build", "buildid", *b.c, lock=lock)


def _next_number(write: Write, builderid: int) -> int:
    highest = write.conn.execute(
        sa.select(sa.func.max(b.c.number)).where(b.c.builderid == builderid)).scalar()
    return 1 if highest is None else int(highest) + 1


def add_build_in(write: Write, builderid: int, buildrequestid: int, workerid: int | None,
                 masterid: int, state_string: str = "created") -> tuple[int, int]:
    """Insert a build (upstream's ``db.builds.addBuild``): number one more than the
    builder's highest (from 1), started now, state ``created``; no event. A number
    taken meanwhile by a concurrent writer is retried with the next one. Answers
    ``(buildid, number)``."""
    write.require(s.builders, builderid, "builder", "builderid")
    write.require(s.buildrequests, buildrequestid, "build request", "buildrequestid")
    if workerid is not None:
        write.require(s.workers, workerid, "worker", "workerid")
    write.require(s.masters, masterid, "master", "masterid")
    number = _next_number(write, builderid)
    for _ in range(NUMBER_ATTEMPTS):
        try:
            with write.savepoint():
                buildid = write.insert(
                    b, number=number, builderid=builderid, buildrequestid=buildrequestid,
                    workerid=workerid, masterid=masterid, started_at=write.now,
                    complete_at=None, locks_duration_s=0, state_string=state_string,
                    results=None)
        except sa.exc.IntegrityError:
            # a concurrent build took the number (it is committed and visible now), or
            # the id sequence lagged behind explicit ids (then the same number again)
            number = max(number, _next_number(write, builderid))
            continue
        return buildid, number
    raise Conflict(f"no free build number for builder {builderid}: too many concurrent "
                   "builds; try again")


def _update_build(write: Write, buildid: int, event: str, **values: Any) -> None:
    write.update(b, buildid, "build", "buildid", **values)
    write.emit_entity("build", event, buildid)


def set_build_state_string_in(write: Write, buildid: int, state_string: str) -> None:
    """Store the build's state string; its ``update`` event."""
    _update_build(write, buildid, "update", state_string=state_string)


def add_build_locks_duration_in(write: Write, buildid: int, duration_s: int) -> None:
    """Add ``duration_s`` to the build's ``locks_duration_s``; its ``update`` event."""
    _update_build(write, buildid, "update",
                  locks_duration_s=b.c.locks_duration_s + duration_s)


def finish_build_in(write: Write, buildid: int, results: int) -> None:
    """Finish the build now with ``results``; its ``finished`` event."""
    _update_build(write, buildid, "finished", complete_at=write.now, results=results)


def cancel_build_in(write: Write, buildid: int, reason: str) -> None:
    """Finish a build that no running master holds as its master would have finished
    it on a user's stop: its open logs finished, its unfinished steps finished
    CANCELLED, its state string ``cancelled (<reason>)``, the build finished CANCELLED,
    then its build request completed CANCELLED (and the buildset, if that was its last
    request), each with its events, in upstream's order."""
    # imported here: those modules import this one
    from buildbot_rest.data.resources.buildrequests import complete_in
    from buildbot_rest.data.resources.steps import finish_open_steps_in

    finish_open_steps_in(write, buildid, CANCELLED)
    set_build_state_string_in(write, buildid, f"cancelled ({reason})")
    finish_build_in(write, buildid, CANCELLED)
    brid = build_row_in(write, buildid).buildrequestid
    if brid is not None:
        # False (nothing written) when it is complete already
        complete_in(write, [brid], CANCELLED)


def master_is_active(write: Write, masterid: int | None) -> bool:
    """Whether the master is active (a running master would act on a control message)."""
    if masterid is None:
        return False
    active = write.conn.execute(
        sa.select(s.masters.c.active).where(s.masters.c.id == masterid)).scalar()
    return bool(active)


class BuildEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = BUILD_FORMS
    unchecked = frozenset({"buildid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [b.c.id == ids["buildid"]]

    async def action_stop(self, ctx: Context, params_: Mapping[str, Any],
                          kwargs: Mapping[str, Any]) -> None:
        """``stop`` with ``params.reason`` (a string, default "no reason"; upstream's
        ``results`` parameter is ignored, as upstream ignores it). A running build whose
        master is active: upstream's control message ``control/builds/<id>/stop``
        ``{reason}`` for that master to act on. A running build whose master is not
        active (nobody would act): finished CANCELLED in the database
        (:func:`cancel_build_in`). A finished build: nothing. Result: null."""
        reason = params.reason(params_)

        def stop(write: Write) -> None:
            buildid = self.entity_in(write.conn, ctx, kwargs)["buildid"]
            # locked: of two concurrent stops, the second sees the build finished
            build = build_row_in(write, buildid, lock=True)
            if build.complete_at is not None:
                return
            if master_is_active(write, build.masterid):
                write.produce(("control", "builds", str(buildid), "stop"), {"reason": reason})
            else:
                cancel_build_in(write, buildid, reason)

        await ctx.connector.transact(stop, user=ctx.user)

    async def action_rebuild(self, ctx: Context, params_: Mapping[str, Any],
                             kwargs: Mapping[str, Any]) -> list[Any]:
        """``rebuild``: a new buildset for the build's builder on the same source
        stamps, with the original buildset's properties (upstream's
        ``rebuildBuildrequest``). Result: ``[bsid, {"<builderid>": brid}]``; 409 when
        the build has no build request to rebuild."""
        from buildbot_rest.data.resources.buildrequests import rebuild_in

        def rebuild(write: Write) -> tuple[int, dict[int, int]]:
            build = self.entity_in(write.conn, ctx, kwargs)
            brid = build["buildrequestid"]
            request = None if brid is None else write.entity("buildrequest", brid)
            if request is None:
                raise Conflict(f"build {build['buildid']} has no build request to rebuild"
                               + ("" if brid is None else f" (build request {brid} is gone)"))
            return rebuild_in(write, request)

        bsid, brids = await ctx.connector.transact(rebuild, user=ctx.user)
        return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]


class BuildsEndpoint(SQLEndpoint):
    patterns = (
        "/builds",
        "/builders/n:builderid/builds",
        "/builders/s:buildername/builds",
        "/buildrequests/n:buildrequestid/builds",
        "/changes/n:changeid/builds",
        "/workers/n:workerid/builds",
    )
    root_link = "builds"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds: list[Any] = []
        if "builderid" in ids:
            conds.append(b.c.builderid == ids["builderid"])
        if "buildrequestid" in ids:
            conds.append(b.c.buildrequestid == ids["buildrequestid"])
        if "workerid" in ids:
            conds.append(b.c.workerid == ids["workerid"])
        if "changeid" in ids:
            # builds of the buildsets that contain the change's source stamp
            ch, bss, br = s.changes, s.buildset_sourcestamps, s.buildrequests
            conds.append(b.c.buildrequestid.in_(
                sa.select(br.c.id)
                .join_from(br, bss, bss.c.buildsetid == br.c.buildsetid)
                .join(ch, ch.c.sourcestampid == bss.c.sourcestampid)
                .where(ch.c.changeid == ids["changeid"])))
        return conds


class BuildTriggeredBuildsEndpoint(SQLEndpoint):
    patterns = nested(BUILD_FORMS, "/triggered_builds")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        bs, br = s.buildsets, s.buildrequests
        return [b.c.buildrequestid.in_(
            sa.select(br.c.id).join_from(br, bs, bs.c.id == br.c.buildsetid)
            .where(bs.c.parent_buildid == ids["buildid"]))]


class Build(ResourceType):
    name = "build"
    plural = "builds"
    fields = (
        Field("buildid", t.Integer(), b.c.id),
        Field("number", t.Integer(), b.c.number),
        Field("builderid", t.Integer(), b.c.builderid),
        Field("buildrequestid", t.Integer(), b.c.buildrequestid),
        Field("workerid", t.Integer(), b.c.workerid),
        Field("masterid", t.Integer(), b.c.masterid),
        Field("started_at", t.DateTime(), b.c.started_at),
        Field("complete", t.Boolean(), b.c.complete_at.is_not(None)),
        Field("complete_at", t.NoneOk(t.DateTime()), b.c.complete_at),
        Field("locks_duration_s", t.Integer(), b.c.locks_duration_s),
        Field("results", t.NoneOk(t.Integer()), b.c.results),
        Field("state_string", t.String(), b.c.state_string),
        Field("properties", t.NoneOk(t.SourcedProperties())),
    )
    key = ("buildid",)
    endpoints = (BuildEndpoint, BuildsEndpoint, BuildTriggeredBuildsEndpoint)
    actions = ("stop", "rebuild")
    updates = ("addBuild", "generateNewBuildEvent", "setBuildStateString",
               "add_build_locks_duration", "finishBuild")
    events = (
        EventKey(("builders", "{builderid}", "builds", "{number}")),
        EventKey(("builds", "{buildid}")),
        EventKey(("workers", "{workerid}", "builds", "{buildid}")),
    )

    # -- update methods (upstream's names, parameters and answers) --

    async def addBuild(self, builderid: int, buildrequestid: int,
                       workerid: int | None) -> tuple[int, int]:
        """Record a new build of a build request on a builder by a worker (None: no
        worker), run by this process's master (``connector.masterid``, which must be
        set: only a master runs builds). Answers ``(buildid, number)``; no event (a
        master announces the build with :meth:`generateNewBuildEvent` once it has set
        its properties, as upstream does)."""
        builderid = params.check_int("builderid", builderid)
        buildrequestid = params.check_int("buildrequestid", buildrequestid)
        workerid = params.check_int("workerid", workerid, nullable=True)
        assert self.connector is not None
        masterid = self.connector.masterid
        if masterid is None:
            raise BadRequest("addBuild needs the master that runs the build: set "
                             "connector.masterid (RestService.data.masterid) to the id of "
                             "this process's masters row first")
        return await self.transact(add_build_in, builderid, buildrequestid, workerid,
                                   masterid)

    async def generateNewBuildEvent(self, buildid: int) -> None:
        """Publish the build's ``new`` event."""
        buildid = params.check_int("buildid", buildid)

        def announce(write: Write) -> None:
            build_row_in(write, buildid)
            write.emit_entity("build", "new", buildid)

        await self.transact(announce)

    async def setBuildStateString(self, buildid: int, state_string: str) -> None:
        """Set the build's state string ("building", "failed"...); ``update`` event."""
        buildid = params.check_int("buildid", buildid)
        await self.transact(set_build_state_string_in, buildid,
                            params.check_text("state_string", state_string))

    async def add_build_locks_duration(self, buildid: int, duration_s: int) -> None:
        """Add ``duration_s`` seconds spent waiting for locks; ``update`` event."""
        buildid = params.check_int("buildid", buildid)
        duration_s = params.check_int("duration_s", duration_s)
        await self.transact(add_build_locks_duration_in, buildid, duration_s)

    async def finishBuild(self, buildid: int, results: int) -> None:
        """Finish the build now with ``results`` (0 success ... 6 cancelled);
        ``finished`` event."""
        buildid = params.check_int("buildid", buildid)
        results = params.check_int("results", results)
        await self.transact(finish_build_in, buildid, results)

    def from_clause(self) -> sa.FromClause:
        return b

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]],
                 spec: ResultSpec | None, ctx: Any) -> None:
        names = spec.properties if spec is not None else None
        if not names:
            for item in items:
                item["properties"] = {}
            return
        props = load_properties(conn, [i["buildid"] for i in items], names)
        for item in items:
            item["properties"] = props.get(item["buildid"], {})


RESOURCE_TYPES = (Build,)
