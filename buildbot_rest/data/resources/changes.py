# -*- test-case-name: tests.www.test_changes -*-
"""Changes, with their files, properties and source stamp; and the changes of a build."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resources import sourcestamps
from buildbot_rest.data.resources.properties import load_change_properties
from buildbot_rest.db import schema as s

ch = s.changes
b = s.builds

#: builds examined at a time when looking for the previous successful build
_SCAN = 1000


# -- the changes of a build --------------------------------------------------------------

def _stamps_of_builds(conn: sa.Connection, buildids: list[int]
                      ) -> dict[int, list[tuple[int, str, str, str | None]]]:
    """``{buildid: [(ssid, codebase, repository, branch), ...]}`` through the build's
    request and buildset."""
    br, bss, ss = s.buildrequests, s.buildset_sourcestamps, s.sourcestamps
    out: dict[int, list[tuple[int, str, str, str | None]]] = defaultdict(list)
    for chunk in chunked(buildids):
        stmt = (sa.select(b.c.id, ss.c.id, ss.c.codebase, ss.c.repository, ss.c.branch)
                .join_from(b, br, br.c.id == b.c.buildrequestid)
                .join(bss, bss.c.buildsetid == br.c.buildsetid)
                .join(ss, ss.c.id == bss.c.sourcestampid)
                .where(b.c.id.in_(chunk)).order_by(b.c.id, bss.c.id))
        for buildid, ssid, codebase, repository, branch in conn.execute(stmt):
            out[buildid].append((ssid, codebase, repository, branch))
    return out


def _latest_change(conn: sa.Connection, ssid: int) -> tuple[int, int | None] | None:
    """(changeid, parent) of the newest change of a source stamp."""
    row = conn.execute(sa.select(ch.c.changeid, ch.c.parent_changeids)
                       .where(ch.c.sourcestampid == ssid)
                       .order_by(ch.c.changeid.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def _previous_success(conn: sa.Connection, builderid: int, number: int,
                      wanted: set[tuple[str, str | None, str]]) -> int | None:
    """The latest finished successful build of the builder before ``number`` built from
    the same (repository, branch, codebase) set."""
    offset = 0
    while True:
        ids = [r[0] for r in conn.execute(
            sa.select(b.c.id).where(b.c.builderid == builderid, b.c.number < number,
                                    b.c.results == 0)
            .order_by(b.c.complete_at.desc(), b.c.id.desc()).offset(offset).limit(_SCAN))]
        if not ids:
            return None
        stamps = _stamps_of_builds(conn, ids)
        for buildid in ids:
            if {(r, br, cb) for _, cb, r, br in stamps.get(buildid, [])} == wanted:
                return buildid
        offset += _SCAN


def _chain(conn: sa.Connection, start: int, stop: int | None) -> list[int]:
    """``start`` and its ancestors through parent_changeids, up to (not including)
    ``stop``, or to the first change of the chain."""
    ids = [start]
    chain = (sa.select(ch.c.changeid, ch.c.parent_changeids)
             .where(ch.c.changeid == start).cte("chain", recursive=True))
    step = sa.select(ch.c.changeid, ch.c.parent_changeids).join_from(
        ch, chain, ch.c.changeid == chain.c.parent_changeids)
    if stop is not None:
        step = step.where(chain.c.parent_changeids != stop)
    # UNION, not UNION ALL: a corrupt cycle ends instead of looping
    chain = chain.union(step)
    ids += [r[0] for r in conn.execute(sa.select(chain.c.changeid)) if r[0] != start]
    return ids


def changes_of_build(conn: sa.Connection, buildid: int) -> list[int]:
    """The ids of the changes a build brought in: per codebase, the newest change of the
    build's source stamp and its ancestors back to the one the previous successful build
    of the same sources had."""
    row = conn.execute(sa.select(b.c.builderid, b.c.number).where(b.c.id == buildid)).first()
    if row is None:
        return []
    stamps = _stamps_of_builds(conn, [buildid]).get(buildid, [])
    current: dict[str, tuple[int, int | None] | None] = {}
    for ssid, codebase, _, _ in stamps:
        current[codebase] = _latest_change(conn, ssid)
    previous: dict[str, int] = {}
    prev = _previous_success(conn, row[0], row[1],
                             {(r, br, cb) for _, cb, r, br in stamps})
    if prev is not None:
        for ssid, codebase, _, _ in _stamps_of_builds(conn, [prev]).get(prev, []):
            latest = _latest_change(conn, ssid)
            if latest is not None:
                previous[codebase] = latest[0]
    ids: list[int] = []
    for codebase, change in current.items():
        if change is None:
            continue
        stop = previous.get(codebase)
        if stop == change[0]:
            continue
        ids += _chain(conn, change[0], stop)
    return ids


# -- endpoints -----------------------------------------------------------------------------

class ChangeEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/changes/n:changeid",)
    unchecked = frozenset({"changeid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [ch.c.changeid == ids["changeid"]]


class ChangesEndpoint(SQLEndpoint):
    patterns = (
        "/changes",
        *nested(BUILD_FORMS, "/changes"),
        "/sourcestamps/n:ssid/changes",
    )
    root_link = "changes"

    #: newest first unless asked otherwise, as upstream lists them
    default_order = ("-changeid",)

    def where_in(self, conn: sa.Connection, ctx: Context, ids: Mapping[str, Any]
                 ) -> list[Any]:
        if "buildid" in ids:
            return [ch.c.changeid.in_(changes_of_build(conn, ids["buildid"]))]
        if "ssid" in ids:
            # the newest change of the source stamp
            return [ch.c.changeid == sa.select(sa.func.max(ch.c.changeid))
                    .where(ch.c.sourcestampid == ids["ssid"]).scalar_subquery()]
        return []


class Change(ResourceType):
    name = "change"
    plural = "changes"
    fields = (
        Field("changeid", t.Integer(), ch.c.changeid),
        Field("parent_changeids", t.List(t.Integer())),
        Field("author", t.String(), ch.c.author),
        Field("committer", t.String(), ch.c.committer),
        Field("files", t.List(t.String())),
        Field("comments", t.String(), ch.c.comments),
        Field("revision", t.NoneOk(t.String()), ch.c.revision),
        # an epoch int declared Integer upstream, not DateTime
        Field("when_timestamp", t.Integer(), ch.c.when_timestamp),
        Field("branch", t.NoneOk(t.String()), ch.c.branch),
        Field("category", t.NoneOk(t.String()), ch.c.category),
        Field("revlink", t.NoneOk(t.String()), ch.c.revlink),
        Field("properties", t.SourcedProperties()),
        Field("repository", t.String(), ch.c.repository),
        Field("project", t.String(), ch.c.project),
        Field("codebase", t.String(), ch.c.codebase),
        Field("sourcestamp", sourcestamps.entity_type()),
    )
    key = ("changeid",)
    extra_columns = (ch.c.parent_changeids.label("_parent"),
                     ch.c.sourcestampid.label("_ssid"))
    endpoints = (ChangeEndpoint, ChangesEndpoint)

    def from_clause(self) -> sa.FromClause:
        return ch

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        changeids = [i["changeid"] for i in items]
        files: dict[int, list[str]] = defaultdict(list)
        cf = s.change_files
        for chunk in chunked(changeids):
            for changeid, filename in conn.execute(
                    sa.select(cf.c.changeid, cf.c.filename).where(cf.c.changeid.in_(chunk))):
                files[changeid].append(filename)
        props = load_change_properties(conn, changeids)
        ssids = sorted({i["_ssid"] for i in items})
        stamps: dict[int, dict[str, Any]] = {}
        rtype = ctx.connector.rtypes["sourcestamp"]
        for chunk in chunked(ssids):
            for stamp in engine.fetch_embedded(conn, ctx, rtype,
                                               [s.sourcestamps.c.id.in_(chunk)]):
                stamps[stamp["ssid"]] = stamp
        for item in items:
            changeid = item["changeid"]
            item["parent_changeids"] = [] if not item["_parent"] else [item["_parent"]]
            item["files"] = files[changeid]
            item["properties"] = props.get(changeid, {})
            found = stamps.get(item["_ssid"])
            item["sourcestamp"] = dict(found) if found is not None else None


RESOURCE_TYPES = (Change,)
