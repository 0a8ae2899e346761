# -*- test-case-name: tests.www.test_buildsets -*-
"""Buildsets, each with its source stamps embedded; adding a buildset with its build
requests, and completing it once they are all complete."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine, params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.resources import sourcestamps
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

bs = s.buildsets
bss = s.buildset_sourcestamps


def load_sourcestamps(conn: sa.Connection, ctx: Any,
                      bsids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """``{bsid: [sourcestamp, ...]}``, each buildset's stamps by ``ssid`` ascending, as
    upstream lists them (whatever the order they were recorded in)."""
    links: dict[int, list[int]] = defaultdict(list)
    for chunk in chunked(bsids):
        for bsid, ssid in conn.execute(
                sa.select(bss.c.buildsetid, bss.c.sourcestampid)
                .where(bss.c.buildsetid.in_(chunk))
                .order_by(bss.c.buildsetid, bss.c.sourcestampid)):
            links[bsid].append(ssid)
    ssids = sorted({ssid for ids in links.values() for ssid in ids})
    rtype = ctx.connector.rtypes["sourcestamp"]
    stamps: dict[int, dict[str, Any]] = {}
    for chunk in chunked(ssids):
        for stamp in engine.fetch_embedded(conn, ctx, rtype, [s.sourcestamps.c.id.in_(chunk)]):
            stamps[stamp["ssid"]] = stamp
    # Each embedding gets its own dicts, so that nothing downstream shares them.
    return {bsid: [dict(stamps[i]) for i in ids if i in stamps] for bsid, ids in links.items()}


class BuildsetEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/buildsets/n:bsid",)
    unchecked = frozenset({"bsid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [bs.c.id == ids["bsid"]]


class BuildsetsEndpoint(SQLEndpoint):
    patterns = ("/buildsets",)
    root_link = "buildsets"


class Buildset(ResourceType):
    name = "buildset"
    plural = "buildsets"
    fields = (
        Field("bsid", t.Integer(), bs.c.id),
        Field("external_idstring", t.NoneOk(t.String()), bs.c.external_idstring),
        Field("reason", t.String(), bs.c.reason),
        Field("rebuilt_buildid", t.NoneOk(t.Integer()), bs.c.rebuilt_buildid),
        # submitted_at and complete_at are declared Integer upstream, not DateTime
        Field("submitted_at", t.Integer(), bs.c.submitted_at),
        Field("complete", t.Boolean(), bs.c.complete != 0),
        Field("complete_at", t.NoneOk(t.Integer()), bs.c.complete_at),
        # -1 while incomplete, as stored
        Field("results", t.NoneOk(t.Integer()), bs.c.results),
        Field("sourcestamps", t.List(sourcestamps.entity_type())),
        Field("parent_buildid", t.NoneOk(t.Integer()), bs.c.parent_buildid),
        Field("parent_relationship", t.NoneOk(t.String()), bs.c.parent_relationship),
    )
    key = ("bsid",)
    endpoints = (BuildsetEndpoint, BuildsetsEndpoint)
    updates = ("addBuildset", "maybeBuildsetComplete")
    events = (EventKey(("buildsets", "{bsid}")),)

    async def addBuildset(
            self, waited_for: bool, scheduler: str | None = None,
            sourcestamps: Sequence[int | Mapping[str, Any]] | None = None,
            reason: str = "", properties: Mapping[str, Any] | None = None,
            builderids: Sequence[int] | None = None, external_idstring: str | None = None,
            rebuilt_buildid: int | None = None, parent_buildid: int | None = None,
            parent_relationship: str | None = None, priority: int = 0
            ) -> tuple[int, dict[int, int]]:
        """Add a buildset and one build request per builder (upstream's update
        method); answers ``(bsid, {builderid: brid})``. See :func:`add_buildset_in`."""
        return await self.transact(
            add_buildset_in, scheduler=scheduler, sourcestamps=sourcestamps or [],
            reason=reason, properties=properties or {}, builderids=builderids or [],
            waited_for=waited_for, external_idstring=external_idstring,
            rebuilt_buildid=rebuilt_buildid, parent_buildid=parent_buildid,
            parent_relationship=parent_relationship, priority=priority)

    async def maybeBuildsetComplete(self, bsid: int) -> None:
        """Complete the buildset if all its requests are (upstream's update method)."""
        await self.transact(maybe_buildset_complete_in, bsid)

    def from_clause(self) -> sa.FromClause:
        return bs

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        stamps = load_sourcestamps(conn, ctx, [i["bsid"] for i in items])
        for item in items:
            item["sourcestamps"] = stamps.get(item["bsid"], [])


# -- writing ------------------------------------------------------------------------------

#: results, from the best to the worst as upstream's ``worst_status`` ranks them:
#: SKIPPED, SUCCESS, WARNINGS, FAILURE, EXCEPTION, RETRY, CANCELLED
_RANKING = (3, 0, 1, 2, 4, 5, 6)
SUCCESS = 0

#: the keys a source stamp given as a dict may have (upstream's findSourceStampId)
_STAMP_KEYS = frozenset({"branch", "revision", "repository", "project", "codebase",
                         "patch_body", "patch_level", "patch_author", "patch_comment",
                         "patch_subdir"})


def worst_status(a: int | None, b: int | None) -> int | None:
    """Upstream's ``worst_status``: the worse of two results; results it does not know
    (None, -1) lose to any it knows; None if it knows neither."""
    known = [r for r in (a, b) if r in _RANKING]
    return max(known, key=_RANKING.index) if known else None


def _ssid(write: Write, index: int, stamp: Any) -> int:
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        write.require(s.sourcestamps, stamp, "source stamp", "ssid")
        return stamp
    if not isinstance(stamp, Mapping):
        raise InvalidParams({f"sourcestamps[{index}]": "must be an ssid or an object"})
    unknown = sorted(set(stamp) - _STAMP_KEYS)
    if unknown:
        raise InvalidParams({f"sourcestamps[{index}]": f"unknown key {unknown[0]!r}"})
    for name in ("repository", "project", "codebase"):
        if not isinstance(stamp.get(name), str):
            raise InvalidParams({f"sourcestamps[{index}].{name}": "required (a string)"})
    values: dict[str, Any] = {
        k: stamp.get(k) for k in ("branch", "revision", "repository", "project", "codebase",
                                  "patch_body", "patch_level", "patch_subdir")}
    values["patch_author"] = stamp.get("patch_author") or ""
    values["patch_comment"] = stamp.get("patch_comment") or ""
    return sourcestamps.find_or_create_sourcestamp(write, **values)


def _buildset_properties(properties: Any) -> dict[str, str]:
    """``{name: stored text}``: each ``(value, source)`` as upstream stores it, the JSON
    of ``[value, source]``."""
    if not isinstance(properties, Mapping):
        raise InvalidParams({"properties": "must be an object of name: [value, source]"})
    out: dict[str, str] = {}
    for name, pair in properties.items():
        params.check_text("properties", name, column=s.buildset_properties.c.property_name)
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not isinstance(pair[1], str)):
            raise InvalidParams({f"properties.{name}": "must be [value, source]"})
        try:
            out[name] = json.dumps([pair[0], pair[1]])
        except (TypeError, ValueError):
            raise InvalidParams({f"properties.{name}": "must hold a JSON value"}) from None
    return out


def add_buildset_in(write: Write, *, scheduler: str | None,
                    sourcestamps: Sequence[int | Mapping[str, Any]], reason: str | None,
                    properties: Mapping[str, Any], builderids: Sequence[int],
                    waited_for: bool = False, external_idstring: str | None = None,
                    rebuilt_buildid: int | None = None, parent_buildid: int | None = None,
                    parent_relationship: str | None = None, priority: int = 0,
                    submitted_at: int | None = None) -> tuple[int, dict[int, int]]:
    """Add a buildset in ``write``'s transaction (upstream's ``addBuildset``) and answer
    ``(bsid, {builderid: brid})``.

    ``sourcestamps`` are ssids or dicts of a stamp's values (found or created);
    ``properties`` are ``{name: (value, source)}``. The buildset and its requests are
    stored as upstream stores them (results -1, complete 0, same ``submitted_at``).
    Events: the buildset's ``new`` (upstream's message: no ``parent_relationship``,
    ``scheduler`` added, results null), then each request's ``new`` under its three keys
    in builderids order; with no builders the buildset is complete at once. NotFound for
    an unknown builder, source stamp or build; InvalidParams for unusable values (and
    for no source stamp at all, which upstream cannot store either)."""
    params.check_bool("waited_for", waited_for)
    scheduler = params.check_text("scheduler", scheduler, nullable=True)
    reason = params.check_text("reason", reason, column=bs.c.reason, nullable=True)
    external_idstring = params.check_text("external_idstring", external_idstring,
                                          column=bs.c.external_idstring, nullable=True)
    parent_relationship = params.check_text("parent_relationship", parent_relationship,
                                            nullable=True)
    priority = params.check_int("priority", priority, bits=32)
    submitted = params.check_epoch("submitted_at", submitted_at, write.now)
    props = _buildset_properties(properties)
    builderids = params.check_list("builderids", builderids, "builder ids")
    for builderid in builderids:
        params.check_int("builderids", builderid)
        write.require(s.builders, builderid, "builder", "builderid")
    if len(set(builderids)) != len(builderids):
        raise InvalidParams({"builderids": "must not repeat a builder"})
    for name, buildid in (("rebuilt_buildid", rebuilt_buildid),
                          ("parent_buildid", parent_buildid)):
        buildid = params.check_int(name, buildid, nullable=True)
        if buildid is not None:
            write.require(s.builds, buildid, "build", name)
    sourcestamps = params.check_list("sourcestamps", sourcestamps, "source stamps")
    if not sourcestamps:
        # upstream fails inserting the links of a buildset without stamps
        raise InvalidParams({"sourcestamps": "must name at least one source stamp"})
    ssids: list[int] = []
    for index, stamp in enumerate(sourcestamps):
        ssid = _ssid(write, index, stamp)
        if ssid not in ssids:  # the same stamp twice is one link (a unique index)
            ssids.append(ssid)

    bsid = write.insert(
        bs, submitted_at=submitted, reason=reason, rebuilt_buildid=rebuilt_buildid,
        complete=0, complete_at=None, results=-1, external_idstring=external_idstring,
        parent_buildid=parent_buildid, parent_relationship=parent_relationship)
    if props:
        write.conn.execute(s.buildset_properties.insert(), [
            {"buildsetid": bsid, "property_name": name, "property_value": text}
            for name, text in props.items()])
    if ssids:
        write.conn.execute(bss.insert(), [{"buildsetid": bsid, "sourcestampid": ssid}
                                          for ssid in ssids])
    brids: dict[int, int] = {}
    for builderid in builderids:
        brids[builderid] = write.insert(
            s.buildrequests, buildsetid=bsid, builderid=builderid, priority=priority,
            complete=0, results=-1, submitted_at=submitted, complete_at=None,
            waited_for=1 if waited_for else 0)

    entity = write.entity("buildset", bsid)
    assert entity is not None
    message = {
        "bsid": bsid,
        "external_idstring": external_idstring,
        "reason": reason,
        "parent_buildid": parent_buildid,
        "rebuilt_buildid": rebuilt_buildid,
        "submitted_at": submitted,
        "complete": False,
        "complete_at": None,
        "results": None,
        "scheduler": scheduler,
        "sourcestamps": entity["sourcestamps"],
    }
    write.emit("buildset", "new", message)
    for brid in brids.values():
        write.emit_entity("buildrequest", "new", brid)
    if not builderids:
        maybe_buildset_complete_in(write, bsid)
    return bsid, brids


def maybe_buildset_complete_in(write: Write, bsid: int) -> bool:
    """If every request of buildset ``bsid`` is complete and the buildset is not:
    complete it with the worst of their results (SUCCESS with none) at the write's
    time, and publish ``buildsets/<bsid>/complete`` with the buildset. Answers whether it
    did. NotFound if there is no such buildset."""
    params.check_int("bsid", bsid)
    br = s.buildrequests
    # Locked: two writes completing the last two requests of a buildset at once each
    # see the other's as incomplete, and neither would complete it. The second waits
    # here for the first to commit, then reads both complete (PostgreSQL reads each
    # statement afresh; SQLite writes take turns anyway).
    row = write.require(bs, bsid, "buildset", "bsid", bs.c.complete, lock=True)
    if row[0]:
        return False
    requests = write.conn.execute(sa.select(br.c.complete, br.c.results)
                                  .where(br.c.buildsetid == bsid)).all()
    if any(not complete for complete, _ in requests):
        return False
    results: int | None = SUCCESS
    for _, result in requests:
        results = worst_status(results, result)
    done = write.conn.execute(
        bs.update().where(bs.c.id == bsid,
                          sa.or_(bs.c.complete.is_(None), bs.c.complete != 1))
        .values(complete=1, results=results, complete_at=write.now))
    if done.rowcount != 1:
        return False
    write.emit_entity("buildset", "complete", bsid)
    return True


RESOURCE_TYPES = (Buildset,)
