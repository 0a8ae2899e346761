# -*- test-case-name: tests.www.test_buildsets -*-
"""Source stamps, each with its patch (if any) embedded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

ss = s.sourcestamps
p = s.patches
bss = s.buildset_sourcestamps

#: the patch entity: never served on its own, only embedded in source stamps
PATCH = t.Entity("patch", {
    "patchid": t.Integer(),
    "body": t.Binary(),
    "level": t.Integer(),
    "subdir": t.String(),
    "author": t.String(),
    "comment": t.String(),
})


class SourceStampEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/sourcestamps/n:ssid",)
    unchecked = frozenset({"ssid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [ss.c.id == ids["ssid"]]


class SourceStampsEndpoint(SQLEndpoint):
    patterns = ("/sourcestamps", "/buildsets/:buildsetid/sourcestamps")
    root_link = "sourcestamps"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        if "buildsetid" in ids:
            return [ss.c.id.in_(sa.select(bss.c.sourcestampid)
                                .where(bss.c.buildsetid == ids["buildsetid"]))]
        return []


class SourceStamp(ResourceType):
    name = "sourcestamp"
    plural = "sourcestamps"
    fields = (
        Field("ssid", t.Integer(), ss.c.id),
        Field("revision", t.NoneOk(t.String()), ss.c.revision),
        Field("branch", t.NoneOk(t.String()), ss.c.branch),
        Field("repository", t.String(), ss.c.repository),
        Field("project", t.String(), ss.c.project),
        Field("codebase", t.String(), ss.c.codebase),
        Field("patch", t.NoneOk(PATCH)),
        Field("created_at", t.DateTime(), ss.c.created_at),
    )
    key = ("ssid",)
    # The patch comes along in the same row; its body is never read (it serialises as null).
    extra_columns = (
        p.c.id.label("_patchid"),
        p.c.patchlevel.label("_level"),
        p.c.subdir.label("_subdir"),
        p.c.patch_author.label("_author"),
        p.c.patch_comment.label("_comment"),
    )
    endpoints = (SourceStampEndpoint, SourceStampsEndpoint)

    def from_clause(self) -> sa.FromClause:
        return ss.outerjoin(p, ss.c.patchid == p.c.id)

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        for item in items:
            if item["_patchid"] is None:
                item["patch"] = None
                continue
            item["patch"] = {
                "patchid": item["_patchid"],
                "body": None,
                "level": item["_level"],
                "subdir": item["_subdir"],
                "author": item["_author"],
                "comment": item["_comment"],
            }


def entity_type() -> t.Entity:
    """The sourcestamp entity, for embedding in buildsets and changes."""
    return t.Entity("sourcestamp", {f.name: f.type for f in SourceStamp.fields})


RESOURCE_TYPES = (SourceStamp,)
