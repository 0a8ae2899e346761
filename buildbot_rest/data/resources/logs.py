# -*- test-case-name: tests.data.test_updates_logs -*-
"""Logs of a step (their metadata; the text is served by logchunks), and their update
methods: ``addLog``, ``appendLog``, ``finishLog``, ``compressLog``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from twisted.logger import Logger

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.resolve import LOG_FORMS, STEP_FORMS, nested
from buildbot_rest.data.transaction import Write, no_row
from buildbot_rest.db import logchunks_write as chunks
from buildbot_rest.db import schema as s

lg = s.logs
_log = Logger()

#: the longest slug (the column's length)
SLUG_LENGTH = 50
#: the log types a writer may give: text, stdio, HTML (``d``, purged, is set by cleanup)
LOG_TYPES = ("t", "s", "h")
#: how many slugs ``addLog`` tries before it gives up (only a database that keeps
#: refusing the insert for another reason gets there)
_MAX_SLUG_TRIES = 1000

# upstream's identifiers: a letter, ``_``, ``-`` or any non-ASCII character first, then
# digits too
_IDENTIFIER = re.compile("[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*")
_BAD_FIRST = re.compile("^[^a-zA-Z_-]")
_BAD_NEXT = re.compile("[^a-zA-Z0-9_-]")
_NUMBER_SUFFIX = re.compile("_([0-9]+)$")


def is_identifier(max_length: int, name: str) -> bool:
    """Whether ``name`` is an identifier of at most ``max_length`` characters."""
    return 0 < len(name) <= max_length and _IDENTIFIER.fullmatch(name) is not None


def force_identifier(max_length: int, name: str) -> str:
    """``name`` as upstream turns it into an identifier (``forceIdentifier``): kept if
    it is one; else cut to ``max_length`` characters and every character but ASCII
    letters, digits, ``_`` and ``-`` replaced by ``_`` (a first digit too)."""
    if is_identifier(max_length, name):
        return name
    cut = _BAD_FIRST.sub("_", name[:max_length])
    return _BAD_NEXT.sub("_", cut)


def increment_identifier(max_length: int, ident: str) -> str:
    """The next identifier after ``ident`` as upstream numbers them: ``x`` → ``x_2``,
    ``x_2`` → ``x_3``, cut to fit ``max_length``."""
    number = 1
    match = _NUMBER_SUFFIX.search(ident)
    if match:
        ident, number = ident[:match.start()], int(match.group(1))
    suffix = f"_{number + 1}"
    if len(suffix) > max_length:
        raise ValueError("cannot make a longer identifier")
    return ident[:max_length - len(suffix)] + suffix


def log_compression(config: Any) -> int:
    """The codec new chunks are written with: the configuration's
    ``log_compression_method`` (upstream's ``logCompressionMethod`` names: ``raw``,
    ``gz``, ``bz2``, ``lz4``, ``zstd``, ``br``), ``zstd`` when it has none."""
    return chunks.compression_code(getattr(config, "log_compression_method", None))


def log_text(content: Any) -> bytes:
    """Text to append, as UTF-8: InvalidParams unless it is a string ending with a
    newline."""
    if not isinstance(content, str):
        raise InvalidParams({"content": f"must be a string, not {type(content).__name__}"})
    if not content.endswith("\n"):
        raise InvalidParams({"content": "must end with a newline"})
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams({"content": "must be valid Unicode text"}) from None


def taken_slugs(write: Write, stepid: int) -> set[str]:
    """The slugs of a step's logs."""
    return set(write.conn.execute(sa.select(lg.c.slug).where(lg.c.stepid == stepid)).scalars())


def add_log_in(write: Write, stepid: int, name: str, type: str) -> int:
    """Insert a log of a step (NotFound if there is no such step): its slug is the name
    forced to an identifier, with upstream's ``_N`` suffix when the step already has
    it; ``complete=0``, ``num_lines=0``. Its ``new`` event. Answers the logid."""
    write.require(s.steps, stepid, "step", "stepid")
    slug = force_identifier(SLUG_LENGTH, name)
    for _ in range(_MAX_SLUG_TRIES):
        taken = taken_slugs(write, stepid)
        while slug in taken:
            slug = increment_identifier(SLUG_LENGTH, slug)
        try:
            with write.savepoint():
                logid = write.insert(lg, name=name, slug=slug, stepid=stepid, complete=0,
                                     num_lines=0, type=type)
        except sa.exc.IntegrityError:
            # a concurrent write took the slug, or removed the step
            write.require(s.steps, stepid, "step", "stepid")
            continue
        write.emit_entity("log", "new", logid)
        return logid
    raise RuntimeError(f"cannot add log {name!r} to step {stepid}: no slug is accepted")


def append_log_in(write: Write, logid: int, data: bytes) -> chunks.Appended:
    """Append ``data`` (UTF-8 lines ending with a newline) to a log, finished or not (as
    upstream), and publish its ``append`` event; NotFound if there is no such log."""
    done = chunks.append(write.conn, logid, data, log_compression(write.ctx.config))
    if done is None:
        raise no_row("log", "logid", logid)
    write.emit_entity("log", "append", logid)
    return done


def finish_log_in(write: Write, logid: int) -> None:
    """Mark a log complete and publish its ``finished`` event; NotFound if none."""
    write.require(lg, logid, "log", "logid", lock=True, key_share=True)
    write.conn.execute(lg.update().where(lg.c.id == logid).values(complete=1))
    write.emit_entity("log", "finished", logid)


def compress_log_in(write: Write, logid: int) -> int:
    """Merge a log's small chunks (see :func:`buildbot_rest.db.logchunks_write.
    compress_log`); answers the bytes saved. No event (as upstream)."""
    write.require(lg, logid, "log", "logid", lock=True, key_share=True)
    return chunks.compress_log(write.conn, logid, log_compression(write.ctx.config))

class LogEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = LOG_FORMS
    unchecked = frozenset({"logid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [lg.c.id == ids["logid"]]


class LogsEndpoint(SQLEndpoint):
    patterns = nested(STEP_FORMS, "/logs")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [lg.c.stepid == ids["stepid"]]


class Log(ResourceType):
    name = "log"
    plural = "logs"
    fields = (
        Field("logid", t.Integer(), lg.c.id),
        Field("name", t.String(), lg.c.name),
        Field("slug", t.Identifier(50), lg.c.slug),
        Field("stepid", t.Integer(), lg.c.stepid),
        Field("complete", t.Boolean(), lg.c.complete),
        Field("num_lines", t.Integer(), lg.c.num_lines),
        Field("type", t.Identifier(1), lg.c.type),
    )
    key = ("logid",)
    endpoints = (LogEndpoint, LogsEndpoint)
    updates = ("addLog", "appendLog", "finishLog", "compressLog")
    events = (EventKey(("logs", "{logid}")), EventKey(("steps", "{stepid}", "logs", "{slug}")))

    def from_clause(self) -> sa.FromClause:
        return lg

    async def addLog(self, stepid: int, name: str, type: str) -> int:
        """Add a log named ``name`` of type ``type`` (``t`` text, ``s`` stdio, ``h``
        HTML) to a step; answers its id. NotFound if the step does not exist,
        InvalidParams for a bad argument."""
        stepid = params.check_int("stepid", stepid)
        name = params.check_text("name", name)
        if not isinstance(type, str) or type not in LOG_TYPES:
            raise InvalidParams({"type": f"must be one of 't', 's', 'h', not {type!r:.20}"})
        return await self.transact(add_log_in, stepid, name, type)

    async def appendLog(self, logid: int, content: str) -> tuple[int, int]:
        """Append lines to a log; ``content`` must end with a newline. Answers
        upstream's ``(num_lines before, last line written)``. NotFound if the log does
        not exist. A line too long for one chunk even compressed is cut (and logged)."""
        logid = params.check_int("logid", logid)
        data = log_text(content)
        done = await self.transact(append_log_in, logid, data)
        if done.truncated:
            _log.info("truncated {count} long line(s) of log {logid}",
                      count=done.truncated, logid=logid)
        return done.num_lines, done.last_line

    async def finishLog(self, logid: int) -> None:
        """Mark a log complete; NotFound if it does not exist."""
        logid = params.check_int("logid", logid)
        await self.transact(finish_log_in, logid)

    async def compressLog(self, logid: int) -> int:
        """Merge neighbouring chunks of a log, re-compressed with the configured method;
        answers the number of bytes saved. NotFound if the log does not exist."""
        logid = params.check_int("logid", logid)
        return await self.transact(compress_log_in, logid)


RESOURCE_TYPES = (Log,)
