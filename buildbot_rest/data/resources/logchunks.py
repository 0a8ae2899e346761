# -*- test-case-name: tests.www.test_logchunks -*-
"""The text of a log: a range of lines as JSON (``/contents``), or the whole log as a
streamed download (``/raw``, ``/raw_inline``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.resolve import LOG_FORMS, nested
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import logchunks as chunks
from buildbot_rest.db import schema as s

PURGED = "d"


@dataclass
class LogInfo:
    """A log and the names that describe it in a download."""

    logid: int
    slug: str
    type: str
    num_lines: int
    step_name: str | None
    build_number: int | None
    builder_name: str | None
    worker_name: str | None

    def header(self) -> bytes:
        """The lines put before a stdio log: those whose value is known."""
        lines = []
        if self.builder_name is not None:
            lines.append(f"Builder: {self.builder_name}\n")
        if self.build_number is not None:
            lines.append(f"Build number: {self.build_number}\n")
        if self.worker_name is not None:
            lines.append(f"Worker name: {self.worker_name}\n")
        return "".join(lines).encode("utf-8")

    def filename(self) -> str:
        parts = []
        if self.builder_name is not None:
            parts.append(self.builder_name)
        if self.build_number is not None:
            parts += ["build", str(self.build_number)]
        if self.step_name is not None:
            parts += ["step", self.step_name]
        parts += ["log", self.slug]
        return "_".join(parts)

    def content_type(self) -> bytes:
        return b"text/html; charset=utf-8" if self.type == "h" else b"text/plain; charset=utf-8"


def read_log_info(conn: sa.Connection, logid: int) -> LogInfo | None:
    lg, st, b, bl, w = s.logs, s.steps, s.builds, s.builders, s.workers
    stmt = (sa.select(lg.c.id, lg.c.slug, lg.c.type, lg.c.num_lines, st.c.name, b.c.number,
                      bl.c.name, w.c.name)
            .select_from(lg.outerjoin(st, st.c.id == lg.c.stepid)
                         .outerjoin(b, b.c.id == st.c.buildid)
                         .outerjoin(bl, bl.c.id == b.c.builderid)
                         .outerjoin(w, w.c.id == b.c.workerid))
            .where(lg.c.id == logid).limit(1))
    row = conn.execute(stmt).first()
    return None if row is None else LogInfo(*row)


def _log_info(conn: sa.Connection, ctx: Context, kwargs: Mapping[str, Any]) -> LogInfo:
    """The log a path names (in a database thread); NotFound when there is none."""
    if not kwargs:
        # ``/logchunks`` names no log
        raise ctx.not_found()
    ids = ctx.resolve_in(conn, kwargs, {"logid"})
    info = read_log_info(conn, ids["logid"])
    if info is None:
        raise ctx.not_found()
    return info


def _contents(conn: sa.Connection, ctx: Context, spec: ResultSpec,
              kwargs: Mapping[str, Any]) -> dict[str, Any]:
    info = _log_info(conn, ctx, kwargs)
    first = spec.offset or 0
    last = first + spec.limit - 1 if spec.limit is not None else max(0, info.num_lines - 1)
    # An empty range (``limit=0``, or an offset at or past the end) is an empty chunk of
    # an existing log, not a missing one (upstream answers 404). A range that reaches
    # beyond the widest integer holds no more lines than one that ends there, and SQL
    # would refuse the number.
    last = min(last, t.INT_MAX)
    empty = last < first or info.type == PURGED
    text = "" if empty else chunks.read_lines(conn, info.logid, first, last)
    return {"logid": info.logid, "firstline": first, "content": text}


class LogChunkEndpoint(Endpoint):
    """Lines ``offset .. offset+limit-1`` of a log (to its end without ``limit``); an
    empty range is one chunk with no content."""

    kind = Kind.SINGLE
    patterns = ("/logchunks", *nested(LOG_FORMS, "/contents"))
    root_link = "logchunks"

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return spec.project(_contents(conn, ctx, spec, kwargs))


def _raw_generator(info: LogInfo) -> Any:
    if info.type == PURGED:
        return _nothing
    stdio = info.type == "s"
    return partial(chunks.iter_raw, logid=info.logid, strip=stdio,
                   header=info.header() if stdio else b"")


def _nothing(conn: sa.Connection) -> Iterator[bytes]:
    return iter(())


class RawLogChunkEndpoint(Endpoint):
    """The whole log as a download; stdio logs get a header and lose their stream codes."""

    kind = Kind.RAW
    patterns = nested(LOG_FORMS, "/raw")

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> RawData:
        info = _log_info(conn, ctx, kwargs)
        return RawData(info.content_type(), filename=info.filename(),
                       generate=_raw_generator(info))


class RawInlineLogChunkEndpoint(RawLogChunkEndpoint):
    """The same text, to show in the browser."""

    kind = Kind.RAW_INLINE
    patterns = nested(LOG_FORMS, "/raw_inline")


class LogChunk(ResourceType):
    name = "logchunk"
    plural = "logchunks"
    # Computed from the chunks: only single and raw endpoints, which take no filters.
    fields = (
        Field("logid", t.Integer()),
        Field("firstline", t.Integer()),
        Field("content", t.String()),
    )
    key = ("logid",)
    endpoints = (LogChunkEndpoint, RawLogChunkEndpoint, RawInlineLogChunkEndpoint)


RESOURCE_TYPES = (LogChunk,)
