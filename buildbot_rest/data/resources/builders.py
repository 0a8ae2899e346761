# -*- test-case-name: tests.data.test_resources -*-
"""Builders, with the masters that serve them and their tags."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

b = s.builders
bm = s.builder_masters


class BuilderEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/builders/n:builderid",
        "/builders/s:buildername",
        "/masters/n:masterid/builders/n:builderid",
    )
    unchecked = frozenset({"builderid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds = [b.c.id == ids["builderid"]]
        if "masterid" in ids:
            conds.append(sa.exists().where(bm.c.builderid == b.c.id,
                                           bm.c.masterid == ids["masterid"]))
        return conds


class BuildersEndpoint(SQLEndpoint):
    patterns = (
        "/builders",
        "/masters/n:masterid/builders",
        "/projects/n:projectid/builders",
        "/workers/n:workerid/builders",
    )
    root_link = "builders"

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        conds: list[Any] = []
        if "masterid" in ids:
            conds.append(sa.exists().where(bm.c.builderid == b.c.id,
                                           bm.c.masterid == ids["masterid"]))
        if "projectid" in ids:
            conds.append(b.c.projectid == ids["projectid"])
        if "workerid" in ids:
            cw = s.configured_workers
            conds.append(sa.exists().where(bm.c.builderid == b.c.id,
                                           cw.c.buildermasterid == bm.c.id,
                                           cw.c.workerid == ids["workerid"]))
        return conds


class Builder(ResourceType):
    name = "builder"
    plural = "builders"
    fields = (
        Field("builderid", t.Integer(), b.c.id),
        Field("name", t.String(), b.c.name),
        Field("masterids", t.List(t.Integer())),
        Field("description", t.NoneOk(t.String()), b.c.description),
        Field("description_format", t.NoneOk(t.String()), b.c.description_format),
        Field("description_html", t.NoneOk(t.String()), b.c.description_html),
        Field("projectid", t.NoneOk(t.Integer()), b.c.projectid),
        Field("tags", t.List(t.String())),
    )
    key = ("builderid",)
    endpoints = (BuilderEndpoint, BuildersEndpoint)

    def from_clause(self) -> sa.FromClause:
        return b

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        ids = [i["builderid"] for i in items]
        masterids: dict[int, list[int]] = defaultdict(list)
        tags: dict[int, list[str]] = defaultdict(list)
        for chunk in chunked(ids):
            for builderid, masterid in conn.execute(
                    sa.select(bm.c.builderid, bm.c.masterid)
                    .where(bm.c.builderid.in_(chunk)).order_by(bm.c.masterid)):
                masterids[builderid].append(masterid)
            for builderid, tag in conn.execute(
                    sa.select(s.builders_tags.c.builderid, s.tags.c.name)
                    .join_from(s.builders_tags, s.tags, s.builders_tags.c.tagid == s.tags.c.id)
                    .where(s.builders_tags.c.builderid.in_(chunk))
                    .order_by(s.builders_tags.c.id)):
                tags[builderid].append(tag)
        for item in items:
            item["masterids"] = masterids[item["builderid"]]
            item["tags"] = tags[item["builderid"]]


RESOURCE_TYPES = (Builder,)
