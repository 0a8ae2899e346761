# -*- test-case-name: tests.data.test_resources -*-
"""Builds, with their properties on request (``property=``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import schema as s

b = s.builds


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


class BuildEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = BUILD_FORMS
    unchecked = frozenset({"buildid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [b.c.id == ids["buildid"]]


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
