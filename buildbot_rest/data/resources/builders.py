# -*- test-case-name: tests.data.test_updates_masters -*-
"""Builders, with the masters that serve them and their tags; their update methods (found
or created by name, described, served by a master) and events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.transaction import Write
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
    updates = ("findBuilderId", "updateBuilderInfo", "updateBuilderList")
    events = (EventKey(("builders", "{builderid}")),)

    def from_clause(self) -> sa.FromClause:
        return b

    # -- writes, in a transaction ------------------------------------------------------

    def find_builder_id_in(self, write: Write, name: str) -> int:
        """The id of the builder named ``name``, created if there is none."""
        return write.find_or_create_named(b, name)

    def find_tag_id_in(self, write: Write, name: str) -> int:
        """The id of the tag named ``name``, created if there is none."""
        return write.find_or_create_named(s.tags, name)

    def update_builder_info_in(self, write: Write, builderid: int, description: str | None,
                               description_format: str | None, description_html: str | None,
                               projectid: int | None, tags: list[int | str]) -> None:
        """Store a builder's description, project and tags (names, or ids of existing
        tags; each tag once), then publish ``builders/<id>/update``."""
        write.require(b, builderid, "builder", "builderid")
        if projectid is not None:
            write.require(s.projects, projectid, "project", "projectid")
        tagids: list[int] = []
        for tag in tags:
            if isinstance(tag, int):
                write.require(s.tags, tag, "tag", "id")
                tagid = tag
            else:
                tagid = self.find_tag_id_in(write, tag)
            if tagid not in tagids:
                tagids.append(tagid)
        write.conn.execute(b.update().where(b.c.id == builderid).values(
            description=description, description_format=description_format,
            description_html=description_html, projectid=projectid))
        bt = s.builders_tags
        write.conn.execute(bt.delete().where(bt.c.builderid == builderid))
        if tagids:
            write.conn.execute(bt.insert(), [{"builderid": builderid, "tagid": tagid}
                                             for tagid in tagids])
        write.emit_entity("builder", "update", builderid)

    def update_builder_list_in(self, write: Write, masterid: int,
                               names: list[str]) -> None:
        """Make the builders named ``names`` the ones master ``masterid`` serves (each
        created if new); a ``stopped`` event for each it no longer serves (in builder
        id order), then a ``started`` event for each it starts serving (in the order of
        ``names``). Upstream publishes these partial messages directly, under the
        builder's one key."""
        served = write.conn.execute(
            sa.select(b.c.id, b.c.name).join_from(bm, b, b.c.id == bm.c.builderid)
            .where(bm.c.masterid == masterid).order_by(b.c.id)).all()
        wanted = dict.fromkeys(names)
        kept: set[str] = set()
        for builderid, name in served:
            if name in wanted:
                kept.add(name)
                continue
            # its configured_workers rows would go with it (ON DELETE CASCADE), unless
            # the database does not enforce foreign keys
            link = [bm.c.builderid == builderid, bm.c.masterid == masterid]
            cw = s.configured_workers
            write.conn.execute(cw.delete().where(
                cw.c.buildermasterid.in_(sa.select(bm.c.id).where(*link))))
            write.conn.execute(bm.delete().where(*link))
            write.produce(("builders", str(builderid), "stopped"),
                          {"builderid": builderid, "masterid": masterid, "name": name})
        for name in wanted:
            if name in kept:
                continue
            builderid = self.find_builder_id_in(write, name)
            write.find_or_create(bm, [bm.c.builderid == builderid, bm.c.masterid == masterid],
                                 {"builderid": builderid, "masterid": masterid})
            write.produce(("builders", str(builderid), "started"),
                          {"builderid": builderid, "masterid": masterid, "name": name})

    # -- update methods ----------------------------------------------------------------

    async def findBuilderId(self, name: str) -> int:
        """The id of the builder named ``name``, created (with no master, description
        or tags) if there is none."""
        params.check_text("name", name)
        return await self.transact(self.find_builder_id_in, name)

    async def updateBuilderInfo(self, builderid: int, description: str | None,
                                description_format: str | None,
                                description_html: str | None, projectid: int | None,
                                tags: list[int | str]) -> None:
        """Store a builder's description (text, format, HTML), project and tags, then
        publish ``builders/<id>/update`` with the builder. NotFound for a missing
        builder, project or tag id."""
        params.check_int("builderid", builderid)
        for name, value in (("description", description),
                            ("description_format", description_format),
                            ("description_html", description_html)):
            params.check_text(name, value, nullable=True)
        params.check_int("projectid", projectid, nullable=True)
        tags = params.check_list("tags", tags, "tag names or ids")
        for tag in tags:
            if not isinstance(tag, str):
                params.check_int("tags", tag)
            else:
                params.check_text("tags", tag)
        await self.transact(self.update_builder_info_in, builderid, description,
                            description_format, description_html, projectid, tags)

    async def updateBuilderList(self, masterid: int,
                                builderNames: list[str]) -> None:
        """Master ``masterid`` serves exactly the builders named ``builderNames`` now
        (those not known yet are created): ``builders/<id>/stopped`` for each it left,
        ``builders/<id>/started`` for each it took, with upstream's partial message
        ``{builderid, masterid, name}``. NotFound for a missing master."""
        params.check_int("masterid", masterid)
        names = params.check_list("builderNames", builderNames, "builder names")
        for name in names:
            params.check_text("builderNames", name)

        def update(write: Write) -> None:
            write.require(s.masters, masterid, "master", "masterid")
            self.update_builder_list_in(write, masterid, names)

        await self.transact(update)

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
