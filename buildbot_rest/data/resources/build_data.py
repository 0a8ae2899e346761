# -*- test-case-name: tests.www.test_build_data -*-
"""Build data: named blobs attached to a build. Listings leave the value out; the raw
endpoint serves it. ``setBuildData`` stores them (no events, as upstream)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint, SQLEndpoint
from buildbot_rest.data.errors import Conflict, InvalidParams
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resources.builds import build_row_in
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

bd = s.build_data

#: the longest name or source (the columns' length)
NAME_LENGTH = 256


def set_build_data_in(write: Write, buildid: int, name: str, value: bytes,
                      source: str) -> None:
    """Store the build's data ``name`` (insert or replace): the bytes, their length and
    the source. A concurrent insert of the same name is replaced."""
    build_row_in(write, buildid)
    values = {"value": value, "length": len(value), "source": source}
    where = (bd.c.buildid == buildid) & (bd.c.name == name)
    for _ in range(3):
        if write.conn.execute(bd.update().where(where).values(**values)).rowcount:
            return
        try:
            with write.savepoint():
                write.conn.execute(bd.insert().values(buildid=buildid, name=name, **values))
        except sa.exc.IntegrityError:
            continue  # inserted meanwhile: update it
        return
    raise Conflict(f"build data {name!r} of build {buildid} keeps changing; try again")

class BuildDatasEndpoint(SQLEndpoint):
    patterns = nested(BUILD_FORMS, "/data")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [bd.c.buildid == ids["buildid"]]


class BuildDataEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = nested(BUILD_FORMS, "/data/i:name")
    unchecked = frozenset({"buildid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [bd.c.buildid == ids["buildid"], bd.c.name == ids["name"]]


def _read_value(conn: sa.Connection, buildid: int, name: str) -> bytes | None:
    value = conn.execute(sa.select(bd.c.value).where(
        bd.c.buildid == buildid, bd.c.name == name).limit(1)).scalar()
    return None if value is None else bytes(value)


class BuildDataValueEndpoint(Endpoint):
    kind = Kind.RAW
    patterns = nested(BUILD_FORMS, "/data/i:name/value")
    unchecked = frozenset({"buildid"})

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> RawData | None:
        ids = ctx.resolve_in(conn, kwargs, self.unchecked)
        value = _read_value(conn, ids["buildid"], ids["name"])
        if value is None:
            return None
        return RawData(b"application/octet-stream; charset=utf-8", filename=ids["name"],
                       body=value)


class BuildData(ResourceType):
    name = "build_data"
    plural = "build_data"
    fields = (
        Field("buildid", t.Integer(), bd.c.buildid),
        Field("name", t.String(), bd.c.name),
        Field("length", t.Integer(), bd.c.length),
        # never read here: the listings carry no value (the raw endpoint serves it)
        Field("value", t.NoneOk(t.Binary()), sa.cast(sa.null(), sa.LargeBinary)),
        Field("source", t.String(), bd.c.source),
    )
    # (buildid, name) is unique
    key = ("buildid", "name")
    endpoints = (BuildDatasEndpoint, BuildDataEndpoint, BuildDataValueEndpoint)
    updates = ("setBuildData",)

    async def setBuildData(self, buildid: int, name: str, value: bytes, source: str) -> None:
        """Attach ``value`` (bytes) to the build as ``name``, replacing any earlier
        value of that name."""
        buildid = params.check_int("buildid", buildid)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidParams({"value": f"must be bytes, not {type(value).__name__}"})
        await self.transact(
            set_build_data_in, buildid, params.check_text("name", name, max_length=NAME_LENGTH),
            bytes(value), params.check_text("source", source, max_length=NAME_LENGTH))

    def from_clause(self) -> sa.FromClause:
        return bd


RESOURCE_TYPES = (BuildData,)
