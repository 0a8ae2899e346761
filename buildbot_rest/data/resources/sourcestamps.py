# -*- test-case-name: tests.www.test_buildsets -*-
"""Source stamps, each with its patch (if any) embedded; finding or creating one."""

from __future__ import annotations

import base64
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
    branch = params.check_text("branch", branch, column=ss.c.branch, nullable=True)
    revision = params.check_text("revision", revision, column=ss.c.revision, nullable=True)
    repository = params.check_text("repository", repository, column=ss.c.repository)
    project = params.check_text("project", project, column=ss.c.project)
    codebase = params.check_text("codebase", codebase, column=ss.c.codebase)
    patchid = None
    if patch_body:
        if isinstance(patch_body, str):
            patch_body = patch_body.encode("utf-8")
        if not isinstance(patch_body, bytes):
            raise InvalidParams({"patch_body": "must be text or bytes"})
        # a NOT NULL column that upstream leaves to the database to refuse
        level = params.check_int("patch_level", patch_level, bits=32)
        patchid = write.insert(
            p, patchlevel=level, patch_base64=base64.b64encode(patch_body).decode("ascii"),
            patch_author=params.check_text("patch_author", patch_author),
            patch_comment=params.check_text("patch_comment", patch_comment),
            subdir=params.check_text("patch_subdir", patch_subdir, nullable=True))
    ss_hash = hashes.ss_hash(branch, revision, repository, project, codebase, patchid)
    # a concurrent write that inserts the same stamp first is found
    ssid, _ = write.find_or_create(
        ss, [ss.c.ss_hash == ss_hash],
        {"branch": branch, "revision": revision, "repository": repository,
         "project": project, "codebase": codebase, "patchid": patchid, "ss_hash": ss_hash,
         "created_at": write.now})
    assert ssid is not None
    return int(ssid)
