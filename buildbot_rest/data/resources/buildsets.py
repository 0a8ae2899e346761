# -*- test-case-name: tests.www.test_buildsets -*-
"""Buildsets, each with its source stamps embedded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resources import sourcestamps
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

    def from_clause(self) -> sa.FromClause:
        return bs

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        stamps = load_sourcestamps(conn, ctx, [i["bsid"] for i in items])
        for item in items:
            item["sourcestamps"] = stamps.get(item["bsid"], [])


RESOURCE_TYPES = (Buildset,)
