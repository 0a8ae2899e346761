# -*- test-case-name: tests.www.test_buildrequests -*-
"""Build requests, with their claims and, on request (``property=``), the properties of
their buildset."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resources.properties import load_buildset_properties
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import schema as s

br = s.buildrequests
claims = s.buildrequest_claims

# complete and waited_for are nullable columns upstream reads with bool()
_complete = sa.func.coalesce(br.c.complete, 0) != 0
_claimed = claims.c.claimed_at.is_not(None)


class BuildRequestEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/buildrequests/n:buildrequestid",)
    unchecked = frozenset({"buildrequestid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [br.c.id == ids["buildrequestid"]]


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


RESOURCE_TYPES = (BuildRequest,)
