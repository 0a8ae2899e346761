# -*- test-case-name: tests.www.test_buildrequests -*-
"""Build requests, with their claims and, on request (``property=``), the properties of
their buildset; claiming, unclaiming, completing and rebuilding them, and the ``cancel``
and ``set_priority`` actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import Conflict, InvalidParams
from buildbot_rest.data.resources.builds import cancel_build_in, master_is_active
from buildbot_rest.data.resources.buildsets import add_buildset_in, maybe_buildset_complete_in
from buildbot_rest.data.resources.masters import find_or_create_master_in
from buildbot_rest.data.resources.properties import load_buildset_properties
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write, no_row
from buildbot_rest.db import schema as s

br = s.buildrequests
claims = s.buildrequest_claims

# complete and waited_for are nullable columns upstream reads with bool()
_complete = sa.func.coalesce(br.c.complete, 0) != 0
_claimed = claims.c.claimed_at.is_not(None)

RETRY = 5
CANCELLED = 6

#: the name of the ``masters`` row that claims in the server's name when the connector
#: acts for no master (``connector.masterid`` is None); it is never active
OWN_MASTER_NAME = "buildbot_rest"


def cancelled_in(write: Write, brid: int) -> None:
    """Upstream's ``buildrequests/<id>/cancel`` event, once a request is cancelled
    (with the request as its message: upstream's cannot be serialised, and is null)."""
    done = write.entity("buildrequest", brid)
    assert done is not None
    write.produce(("buildrequests", str(brid), "cancel"), done)


class BuildRequestEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/buildrequests/n:buildrequestid",)
    unchecked = frozenset({"buildrequestid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [br.c.id == ids["buildrequestid"]]

    async def action_cancel(self, ctx: Context, params_: Mapping[str, Any],
                            kwargs: Mapping[str, Any]) -> None:
        """``cancel`` with an optional ``params.reason``. A waiting request is claimed
        in the server's name and completed as CANCELLED at once (events ``claimed``,
        ``complete``, the buildset's ``complete`` if it was the last, then
        ``buildrequests/<id>/cancel`` with the request); one claimed by an active master
        is left to that master, through ``control/buildrequests/<id>/cancel`` with
        ``{"reason"}``; one claimed by a master that is not active (nobody would act on
        the message) is done here as its master would: its unfinished builds stopped
        (:func:`~buildbot_rest.data.resources.builds.cancel_build_in`), the request
        completed CANCELLED. A complete request is left as it is (as upstream, whose
        master finds nothing to cancel). Result: null."""
        reason = params.reason(params_)

        def cancel(write: Write) -> None:
            entity = self.entity_in(write.conn, ctx, kwargs)
            brid = entity["buildrequestid"]
            if entity["complete"]:
                return
            if not entity["claimed"]:
                try:
                    claim_in(write, [brid])
                except Conflict:
                    # a master claimed it meanwhile: ask it, below
                    entity = self.entity_in(write.conn, ctx, kwargs)
                else:
                    complete_in(write, [brid], CANCELLED)
                    cancelled_in(write, brid)
                    return
            if not master_is_active(write, entity["claimed_by_masterid"]):
                running = write.conn.execute(
                    sa.select(s.builds.c.id).where(s.builds.c.buildrequestid == brid,
                                                   s.builds.c.complete_at.is_(None))
                    .order_by(s.builds.c.id)).scalars().all()
                for buildid in running:
                    cancel_build_in(write, buildid, reason)
                complete_in(write, [brid], CANCELLED)
                cancelled_in(write, brid)
                return
            write.produce(("control", "buildrequests", str(brid), "cancel"),
                          {"reason": reason})

        await ctx.connector.transact(cancel, user=ctx.user)

    async def action_set_priority(self, ctx: Context, params_: Mapping[str, Any],
                                  kwargs: Mapping[str, Any]) -> None:
        """``set_priority`` with ``params.priority`` (an integer, required): the
        request's priority; 409 if it is complete. No event (upstream sends none).
        Result: null."""
        priority = params.integer(params_, "priority", required=True)
        params.check_int("priority", priority, bits=32)

        def set_priority(write: Write) -> None:
            entity = self.entity_in(write.conn, ctx, kwargs)
            brid = entity["buildrequestid"]
            done = write.conn.execute(br.update().where(br.c.id == brid, sa.not_(_complete))
                                      .values(priority=priority))
            if entity["complete"] or done.rowcount != 1:
                raise Conflict(f"build request {brid} is already complete")

        await ctx.connector.transact(set_priority, user=ctx.user)


class BuildRequestsEndpoint(SQLEndpoint):
    patterns = ("/buildrequests", "/builders/n:builderid/buildrequests")
    root_link = "buildrequests"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [br.c.builderid == ids["builderid"]] if "builderid" in ids else []

    def prepare(self, spec: ResultSpec) -> tuple[ResultSpec, list[Any]]:
        """Upstream's meaning of ``claimed``: true is "has a claim", false is "waiting",
        i.e. neither claimed nor complete (so ``claimed=false`` lists pending requests).
        Those filters become conditions of their own, out of a copy of the spec."""
        claimed = [f for f in spec.filters_on("claimed") if f.op != "isnull"]
        if not claimed:
            return spec, []
        spec = dataclasses.replace(spec, filters=[f for f in spec.filters
                                                  if f not in claimed])
        conds: list[Any] = []
        for flt in claimed:
            allowed = [b for b in (True, False) if flt.matches(b)]
            if allowed == [True]:
                conds.append(_claimed)
            elif allowed == [False]:
                conds.append(sa.and_(sa.not_(_claimed), sa.not_(_complete)))
            elif not allowed:
                conds.append(sa.false())
        return spec, conds


class BuildRequest(ResourceType):
    name = "buildrequest"
    plural = "buildrequests"
    fields = (
        Field("buildrequestid", t.Integer(), br.c.id),
        Field("buildsetid", t.Integer(), br.c.buildsetid),
        Field("builderid", t.Integer(), br.c.builderid),
        Field("priority", t.Integer(), br.c.priority),
        Field("claimed", t.Boolean(), _claimed),
        Field("claimed_at", t.NoneOk(t.DateTime()), claims.c.claimed_at),
        Field("claimed_by_masterid", t.NoneOk(t.Integer()), claims.c.masterid),
        Field("complete", t.Boolean(), _complete),
        # -1 while incomplete, as stored
        Field("results", t.NoneOk(t.Integer()), br.c.results),
        Field("submitted_at", t.DateTime(), br.c.submitted_at),
        Field("complete_at", t.NoneOk(t.DateTime()), br.c.complete_at),
        Field("waited_for", t.Boolean(), sa.func.coalesce(br.c.waited_for, 0) != 0),
        Field("properties", t.NoneOk(t.SourcedProperties())),
    )
    key = ("buildrequestid",)
    endpoints = (BuildRequestEndpoint, BuildRequestsEndpoint)
    actions = ("cancel", "set_priority")
    updates = ("claimBuildRequests", "unclaimBuildRequests", "completeBuildRequests",
               "rebuildBuildrequest")
    events = (
        EventKey(("buildsets", "{buildsetid}", "builders", "{builderid}", "buildrequests",
                  "{buildrequestid}")),
        EventKey(("buildrequests", "{buildrequestid}")),
        EventKey(("builders", "{builderid}", "buildrequests", "{buildrequestid}")),
    )

    async def claimBuildRequests(self, brids: Sequence[int],
                                 claimed_at: Any = None) -> bool:
        """Claim requests for this master (upstream's update method): True, or False
        if one of them is already claimed (then none is). See :func:`claim_in`."""
        def claim(write: Write) -> bool:
            try:
                claim_in(write, brids, claimed_at)
            except Conflict:
                return False
            return True

        return await self.transact(claim)

    async def unclaimBuildRequests(self, brids: Sequence[int]) -> None:
        """Release this master's claims (upstream's update method)."""
        await self.transact(unclaim_in, brids)

    async def completeBuildRequests(self, brids: Sequence[int], results: int,
                                    complete_at: Any = None) -> bool:
        """Complete requests (upstream's update method): True, or False if one of
        them is complete already or missing (then none is). See :func:`complete_in`."""
        return await self.transact(complete_in, brids, results, complete_at)

    async def rebuildBuildrequest(self, buildrequest: Mapping[str, Any]
                                  ) -> tuple[int, dict[int, int]]:
        """A new buildset that builds a request again (upstream's update method);
        answers ``(bsid, {builderid: brid})``. See :func:`rebuild_in`."""
        return await self.transact(rebuild_in, buildrequest)

    def from_clause(self) -> sa.FromClause:
        # No join with source stamps: a request whose buildset has none is still listed.
        return br.outerjoin(claims, claims.c.brid == br.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]],
                 spec: ResultSpec | None, ctx: Any) -> None:
        names = spec.properties if spec is not None else None
        if not names:
            for item in items:
                item["properties"] = None
            return
        props = load_buildset_properties(conn, sorted({i["buildsetid"] for i in items}), names)
        for item in items:
            item["properties"] = dict(props.get(item["buildsetid"], {}))


# -- writing ------------------------------------------------------------------------------

def own_masterid(write: Write) -> int:
    """The master id claims are made with: ``connector.masterid``, or else the server's
    own ``masters`` row (named :data:`OWN_MASTER_NAME`, inactive), created if needed."""
    masterid = write.ctx.connector.masterid
    if masterid is not None:
        return int(masterid)
    return find_or_create_master_in(write, OWN_MASTER_NAME)


def _brids(brids: Any) -> list[int]:
    """The ids, each once, in the order given; InvalidParams if they are not ids."""
    out: list[int] = []
    for brid in params.check_list("brids", brids, "build request ids"):
        params.check_int("brids", brid)
        if brid not in out:
            out.append(brid)
    return out


def _existing(write: Write, brids: list[int]) -> None:
    found: set[int] = set()
    for chunk in chunked(brids):
        found.update(r[0] for r in write.conn.execute(sa.select(br.c.id)
                                                      .where(br.c.id.in_(chunk))))
    missing = [b for b in brids if b not in found]
    if missing:
        raise no_row("build request", "buildrequestid", missing[0])


def claim_in(write: Write, brids: Sequence[int], claimed_at: Any = None,
             masterid: int | None = None) -> None:
    """Claim requests for ``masterid`` (default :func:`own_masterid`) at ``claimed_at``
    (epoch seconds or a datetime; the write's time by default), and publish each one's
    ``claimed``. All or none: Conflict (409) if one is already claimed (as upstream's
    AlreadyClaimedError), also when a concurrent write claims it first; NotFound if one
    does not exist."""
    ids = _brids(brids)
    if not ids:
        return
    when = params.check_epoch("claimed_at", claimed_at, write.now)
    _existing(write, ids)
    if masterid is None:
        masterid = own_masterid(write)
    for chunk in chunked(ids):
        taken = write.conn.execute(sa.select(claims.c.brid)
                                   .where(claims.c.brid.in_(chunk))).first()
        if taken is not None:
            raise Conflict(f"build request {taken[0]} is already claimed")
    try:
        with write.savepoint():
            write.conn.execute(claims.insert(), [
                {"brid": brid, "masterid": masterid, "claimed_at": when} for brid in ids])
    except sa.exc.IntegrityError:
        raise Conflict("build requests already claimed by another master") from None
    for brid in ids:
        write.emit_entity("buildrequest", "claimed", brid)


def unclaim_in(write: Write, brids: Sequence[int]) -> None:
    """Delete this master's claims (:func:`own_masterid`) on requests (others' claims
    stay, as upstream) and publish each one's ``unclaimed``. NotFound if one does not
    exist."""
    ids = _brids(brids)
    if not ids:
        return
    _existing(write, ids)
    masterid = own_masterid(write)
    for chunk in chunked(ids):
        write.conn.execute(claims.delete().where(claims.c.brid.in_(chunk),
                                                 claims.c.masterid == masterid))
    for brid in ids:
        write.emit_entity("buildrequest", "unclaimed", brid)


def complete_in(write: Write, brids: Sequence[int], results: int,
                complete_at: Any = None) -> bool:
    """Complete requests with ``results`` at ``complete_at`` (the write's time by
    default), publish each one's ``complete``, then complete their buildsets that have
    no incomplete request left. All or none: False (nothing written) if one is complete
    already or missing, as upstream. RETRY is refused (InvalidParams), as upstream."""
    ids = _brids(brids)
    results = params.check_int("results", results, bits=16)
    if results == RETRY:
        raise InvalidParams({"results": "a build request cannot be completed with RETRY"})
    when = params.check_epoch("complete_at", complete_at, write.now)
    if not ids:
        return True
    with write.savepoint() as savepoint:
        for chunk in chunked(ids):
            done = write.conn.execute(br.update().where(br.c.id.in_(chunk),
                                                        sa.not_(_complete))
                                      .values(complete=1, results=results,
                                              complete_at=when))
            if done.rowcount != len(chunk):
                savepoint.rollback()
                return False
    bsids: list[int] = []
    for brid in ids:
        entity = write.emit_entity("buildrequest", "complete", brid)
        if entity["buildsetid"] not in bsids:
            bsids.append(entity["buildsetid"])
    for bsid in bsids:
        maybe_buildset_complete_in(write, bsid)
    return True


def rebuild_in(write: Write, buildrequest: Mapping[str, Any]) -> tuple[int, dict[int, int]]:
    """Upstream's ``rebuildBuildrequest``: a new buildset (scheduler and reason
    ``rebuild``, not waited for) on the same source stamps with the original buildset's
    properties, external id and parent, and one request for the same builder.
    ``rebuilt_buildid`` is the original buildset's if it has one (a rebuild of a
    rebuild), else the first build of the request. ``buildrequest`` is the request as
    the data API gives it (``buildrequestid``, ``buildsetid`` and ``builderid`` are
    read). Answers ``(bsid, {builderid: brid})``."""
    if not isinstance(buildrequest, Mapping):
        raise InvalidParams({"buildrequest": "must be a build request"})
    for name in ("buildrequestid", "buildsetid", "builderid"):
        params.integer(buildrequest, name, required=True)
    buildset = write.entity("buildset", buildrequest["buildsetid"])
    if buildset is None:
        raise no_row("buildset", "bsid", buildrequest["buildsetid"])
    bsid = buildset["bsid"]
    properties = load_buildset_properties(write.conn, [bsid], None).get(bsid, {})
    builds = s.builds
    first = write.conn.execute(
        sa.select(builds.c.id).where(builds.c.buildrequestid == buildrequest["buildrequestid"])
        .order_by(builds.c.id).limit(1)).scalar()
    rebuilt = buildset["rebuilt_buildid"]
    if rebuilt is None and first is not None:
        rebuilt = first
    return add_buildset_in(
        write, waited_for=False, scheduler="rebuild",
        sourcestamps=[stamp["ssid"] for stamp in buildset["sourcestamps"]],
        reason="rebuild", properties={k: tuple(v) for k, v in properties.items()},
        builderids=[buildrequest["builderid"]],
        external_idstring=buildset["external_idstring"], rebuilt_buildid=rebuilt,
        parent_buildid=buildset["parent_buildid"],
        parent_relationship=buildset["parent_relationship"])


RESOURCE_TYPES = (BuildRequest,)
