# -*- test-case-name: tests.www.test_buildsets -*-
"""Source stamps, each with its patch (if any) embedded; finding or creating one."""

from __future__ import annotations

import base64
import datetime
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import hashes
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


# -- writing ------------------------------------------------------------------------------

def check_text(name: str, value: Any, column: sa.Column[Any] | None = None, *,
               nullable: bool = True) -> Any:
    """``value`` if it is a string (or None when ``nullable``) that fits ``column``;
    else InvalidParams naming ``name``. Upstream checks lengths on MySQL only and lets
    the other databases fail; here every backend answers a clean 400."""
    value = params.text({name: value}, name, nullable=nullable)
    length = getattr(column.type, "length", None) if column is not None else None
    if value is not None and length is not None and len(value) > length:
        raise InvalidParams({name: f"is longer than {length} characters"})
    return value


def inserted_id(result: sa.CursorResult[Any]) -> int:
    """The id an INSERT of one row gave it."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def check_int(name: str, value: Any, *, bits: int = 32, nullable: bool = False) -> Any:
    """``value`` if it is an integer that fits a signed column of ``bits`` bits (upstream's
    Integer columns are 32-bit on PostgreSQL and MySQL, SmallInteger 16-bit), or None when
    ``nullable``; else InvalidParams naming ``name``."""
    value = params.integer({name: value}, name, required=True, nullable=nullable)
    if value is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise InvalidParams({name: "is out of range"})
    return value


def check_epoch(name: str, value: Any, default: int) -> int:
    """A time given to an update method as epoch seconds (an int or a float, truncated
    as upstream's conversions do) or a ``datetime``; ``default`` when None."""
    if value is None:
        return default
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = int(value.timestamp())
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return int(check_int(name, value))


def find_or_create_sourcestamp(write: Write, *, branch: str | None, revision: str | None,
                               repository: str, project: str, codebase: str,
                               patch_body: str | bytes | None = None,
                               patch_level: int | None = None, patch_author: str = "",
                               patch_comment: str = "",
                               patch_subdir: str | None = None) -> int:
    """The id of the source stamp with these values, inserted if there is none (upstream's
    ``findSourceStampId``). A patch body is stored first in ``patches`` (base64), and, as
    upstream does, every patch makes a new patch row and so a new source stamp. The
    ``ss_hash`` is upstream's; ``created_at`` is the write's time. A concurrent insert of
    the same stamp is found, not duplicated. InvalidParams for a value that cannot be
    stored (repository, project and codebase must be strings)."""
    branch = check_text("branch", branch, ss.c.branch)
    revision = check_text("revision", revision, ss.c.revision)
    repository = check_text("repository", repository, ss.c.repository, nullable=False)
    project = check_text("project", project, ss.c.project, nullable=False)
    codebase = check_text("codebase", codebase, ss.c.codebase, nullable=False)
    patchid = None
    if patch_body:
        if isinstance(patch_body, str):
            patch_body = patch_body.encode("utf-8")
        if not isinstance(patch_body, bytes):
            raise InvalidParams({"patch_body": "must be text or bytes"})
        # a NOT NULL column that upstream leaves to the database to refuse
        level = check_int("patch_level", patch_level)
        values = {
            "patchlevel": level,
            "patch_base64": base64.b64encode(patch_body).decode("ascii"),
            "patch_author": check_text("patch_author", patch_author, nullable=False),
            "patch_comment": check_text("patch_comment", patch_comment, nullable=False),
            "subdir": check_text("patch_subdir", patch_subdir),
        }
        patchid = inserted_id(write.conn.execute(p.insert().values(values)))
    ss_hash = hashes.ss_hash(branch, revision, repository, project, codebase, patchid)
    found = _ssid_by_hash(write.conn, ss_hash)
    if found is not None:
        return found
    try:
        with write.savepoint():
            result = write.conn.execute(ss.insert().values(
                branch=branch, revision=revision, repository=repository, project=project,
                codebase=codebase, patchid=patchid, ss_hash=ss_hash, created_at=write.now))
            return inserted_id(result)
    except sa.exc.IntegrityError:
        # a concurrent write inserted the same stamp first
        found = _ssid_by_hash(write.conn, ss_hash)
        if found is None:
            raise
        return found


def _ssid_by_hash(conn: sa.Connection, ss_hash: str) -> int | None:
    found = conn.execute(sa.select(ss.c.id).where(ss.c.ss_hash == ss_hash)).scalar()
    return int(found) if found is not None else None
