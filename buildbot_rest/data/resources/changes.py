# -*- test-case-name: tests.www.test_changes -*-
"""Changes, with their files, properties and source stamp; the changes of a build; and
``addChange``, how a change source records a change."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import engine, params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resources import sourcestamps
from buildbot_rest.data.resources.properties import load_change_properties
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

ch = s.changes
b = s.builds

#: builds examined at a time when looking for the previous successful build
_SCAN = 1000


# -- the changes of a build --------------------------------------------------------------

def _stamps_of_builds(conn: sa.Connection, buildids: list[int]
                      ) -> dict[int, list[tuple[int, str, str, str | None]]]:
    """``{buildid: [(ssid, codebase, repository, branch), ...]}`` through the build's
    request and buildset."""
    br, bss, ss = s.buildrequests, s.buildset_sourcestamps, s.sourcestamps
    out: dict[int, list[tuple[int, str, str, str | None]]] = defaultdict(list)
    for chunk in chunked(buildids):
        stmt = (sa.select(b.c.id, ss.c.id, ss.c.codebase, ss.c.repository, ss.c.branch)
                .join_from(b, br, br.c.id == b.c.buildrequestid)
                .join(bss, bss.c.buildsetid == br.c.buildsetid)
                .join(ss, ss.c.id == bss.c.sourcestampid)
                .where(b.c.id.in_(chunk)).order_by(b.c.id, bss.c.id))
        for buildid, ssid, codebase, repository, branch in conn.execute(stmt):
            out[buildid].append((ssid, codebase, repository, branch))
    return out


def _latest_change(conn: sa.Connection, ssid: int) -> tuple[int, int | None] | None:
    """(changeid, parent) of the newest change of a source stamp."""
    row = conn.execute(sa.select(ch.c.changeid, ch.c.parent_changeids)
                       .where(ch.c.sourcestampid == ssid)
                       .order_by(ch.c.changeid.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def _previous_success(conn: sa.Connection, builderid: int, number: int,
                      wanted: set[tuple[str, str | None, str]]) -> int | None:
    """The latest finished successful build of the builder before ``number`` built from
    the same (repository, branch, codebase) set."""
    offset = 0
    while True:
        ids = [r[0] for r in conn.execute(
            sa.select(b.c.id).where(b.c.builderid == builderid, b.c.number < number,
                                    b.c.results == 0)
            .order_by(b.c.complete_at.desc(), b.c.id.desc()).offset(offset).limit(_SCAN))]
        if not ids:
            return None
        stamps = _stamps_of_builds(conn, ids)
        for buildid in ids:
            if {(r, br, cb) for _, cb, r, br in stamps.get(buildid, [])} == wanted:
                return buildid
        offset += _SCAN


def _chain(conn: sa.Connection, start: int, stop: int | None) -> list[int]:
    """``start`` and its ancestors through parent_changeids, up to (not including)
    ``stop``, or to the first change of the chain."""
    ids = [start]
    chain = (sa.select(ch.c.changeid, ch.c.parent_changeids)
             .where(ch.c.changeid == start).cte("chain", recursive=True))
    step = sa.select(ch.c.changeid, ch.c.parent_changeids).join_from(
        ch, chain, ch.c.changeid == chain.c.parent_changeids)
    if stop is not None:
        step = step.where(chain.c.parent_changeids != stop)
    # UNION, not UNION ALL: a corrupt cycle ends instead of looping
    chain = chain.union(step)
    ids += [r[0] for r in conn.execute(sa.select(chain.c.changeid)) if r[0] != start]
    return ids


def changes_of_build(conn: sa.Connection, buildid: int) -> list[int]:
    """The ids of the changes a build brought in: per codebase, the newest change of the
    build's source stamp and its ancestors back to the one the previous successful build
    of the same sources had."""
    row = conn.execute(sa.select(b.c.builderid, b.c.number).where(b.c.id == buildid)).first()
    if row is None:
        return []
    stamps = _stamps_of_builds(conn, [buildid]).get(buildid, [])
    current: dict[str, tuple[int, int | None] | None] = {}
    for ssid, codebase, _, _ in stamps:
        current[codebase] = _latest_change(conn, ssid)
    previous: dict[str, int] = {}
    prev = _previous_success(conn, row[0], row[1],
                             {(r, br, cb) for _, cb, r, br in stamps})
    if prev is not None:
        for ssid, codebase, _, _ in _stamps_of_builds(conn, [prev]).get(prev, []):
            latest = _latest_change(conn, ssid)
            if latest is not None:
                previous[codebase] = latest[0]
    ids: list[int] = []
    for codebase, change in current.items():
        if change is None:
            continue
        stop = previous.get(codebase)
        if stop == change[0]:
            continue
        ids += _chain(conn, change[0], stop)
    return ids


# -- endpoints -----------------------------------------------------------------------------

class ChangeEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = ("/changes/n:changeid",)
    unchecked = frozenset({"changeid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [ch.c.changeid == ids["changeid"]]


class ChangesEndpoint(SQLEndpoint):
    patterns = (
        "/changes",
        *nested(BUILD_FORMS, "/changes"),
        "/sourcestamps/n:ssid/changes",
    )
    root_link = "changes"

    #: newest first unless asked otherwise, as upstream lists them
    default_order = ("-changeid",)

    def where_in(self, conn: sa.Connection, ctx: Context, ids: Mapping[str, Any]
                 ) -> list[Any]:
        if "buildid" in ids:
            return [ch.c.changeid.in_(changes_of_build(conn, ids["buildid"]))]
        if "ssid" in ids:
            # the newest change of the source stamp
            return [ch.c.changeid == sa.select(sa.func.max(ch.c.changeid))
                    .where(ch.c.sourcestampid == ids["ssid"]).scalar_subquery()]
        return []


class Change(ResourceType):
    name = "change"
    plural = "changes"
    fields = (
        Field("changeid", t.Integer(), ch.c.changeid),
        Field("parent_changeids", t.List(t.Integer())),
        Field("author", t.String(), ch.c.author),
        Field("committer", t.String(), ch.c.committer),
        Field("files", t.List(t.String())),
        Field("comments", t.String(), ch.c.comments),
        Field("revision", t.NoneOk(t.String()), ch.c.revision),
        # an epoch int declared Integer upstream, not DateTime
        Field("when_timestamp", t.Integer(), ch.c.when_timestamp),
        Field("branch", t.NoneOk(t.String()), ch.c.branch),
        Field("category", t.NoneOk(t.String()), ch.c.category),
        Field("revlink", t.NoneOk(t.String()), ch.c.revlink),
        Field("properties", t.SourcedProperties()),
        Field("repository", t.String(), ch.c.repository),
        Field("project", t.String(), ch.c.project),
        Field("codebase", t.String(), ch.c.codebase),
        Field("sourcestamp", sourcestamps.entity_type()),
    )
    key = ("changeid",)
    extra_columns = (ch.c.parent_changeids.label("_parent"),
                     ch.c.sourcestampid.label("_ssid"))
    endpoints = (ChangeEndpoint, ChangesEndpoint)
    updates = ("addChange",)
    events = (EventKey(("changes", "{changeid}")),)

    async def addChange(
            self, files: list[str] | None = None, comments: str | None = None,
            author: str | None = None, committer: str | None = None,
            revision: str | None = None, when_timestamp: int | None = None,
            branch: str | None = None, category: str | None = None,
            revlink: str | None = "", properties: Mapping[str, Any] | None = None,
            repository: str = "", codebase: str | None = None, project: str = "",
            src: str | None = None, _test_changeid: int | None = None) -> int:
        """Record a change (upstream's update method): its source stamp found or
        created, its parent (the latest change on the same branch, repository, project
        and codebase), files and properties (source ``Change``); publishes
        ``changes/<id>/new`` with the change. Answers the new changeid."""
        return await self.transact(
            add_change_in, files=files, comments=comments, author=author,
            committer=committer, revision=revision, when_timestamp=when_timestamp,
            branch=branch, category=category, revlink=revlink, properties=properties,
            repository=repository, codebase=codebase, project=project, src=src,
            changeid=_test_changeid)

    def from_clause(self) -> sa.FromClause:
        return ch

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        changeids = [i["changeid"] for i in items]
        files: dict[int, list[str]] = defaultdict(list)
        cf = s.change_files
        for chunk in chunked(changeids):
            for changeid, filename in conn.execute(
                    sa.select(cf.c.changeid, cf.c.filename).where(cf.c.changeid.in_(chunk))):
                files[changeid].append(filename)
        props = load_change_properties(conn, changeids)
        ssids = sorted({i["_ssid"] for i in items})
        stamps: dict[int, dict[str, Any]] = {}
        rtype = ctx.connector.rtypes["sourcestamp"]
        for chunk in chunked(ssids):
            for stamp in engine.fetch_embedded(conn, ctx, rtype,
                                               [s.sourcestamps.c.id.in_(chunk)]):
                stamps[stamp["ssid"]] = stamp
        for item in items:
            changeid = item["changeid"]
            item["parent_changeids"] = [] if not item["_parent"] else [item["_parent"]]
            item["files"] = files[changeid]
            item["properties"] = props.get(changeid, {})
            found = stamps.get(item["_ssid"])
            item["sourcestamp"] = dict(found) if found is not None else None


# -- writing ------------------------------------------------------------------------------

def add_change_in(write: Write, *, files: list[str] | None = None,
                  comments: str | None = None, author: str | None = None,
                  committer: str | None = None, revision: str | None = None,
                  when_timestamp: int | None = None, branch: str | None = None,
                  category: str | None = None, revlink: str | None = "",
                  properties: Mapping[str, Any] | None = None, repository: str = "",
                  codebase: str | None = None, project: str = "", src: str | None = None,
                  changeid: int | None = None) -> int:
    """:meth:`Change.addChange` in ``write``'s transaction; answers the changeid.
    ``src`` is accepted and ignored (no ``change_users`` row: see compat)."""
    del src
    author = params.check_text("author", "" if author is None else author,
                               column=ch.c.author, nullable=True)
    committer = params.check_text("committer", committer, column=ch.c.committer,
                                  nullable=True)
    comments = params.check_text("comments", "" if comments is None else comments,
                                 nullable=True)
    revision = params.check_text("revision", revision, column=ch.c.revision, nullable=True)
    branch = params.check_text("branch", branch, column=ch.c.branch, nullable=True)
    if callable(category):
        raise InvalidParams({"category": "must be a string (no configuration to call "
                                         "a category function with)"})
    category = params.check_text("category", category, column=ch.c.category, nullable=True)
    revlink = params.check_text("revlink", revlink, column=ch.c.revlink, nullable=True)
    if not revlink and revision and repository:
        # upstream asks its configured revlink matchers, then falls back to ''
        revlink = ""
    repository = params.check_text("repository", repository, column=ch.c.repository)
    project = params.check_text("project", project, column=ch.c.project)
    codebase = params.check_text("codebase", codebase or "", column=ch.c.codebase,
                                 nullable=True)
    when = params.check_epoch("when_timestamp", when_timestamp, write.now)
    filenames = _files(files)
    props = _change_properties(properties)
    changeid = params.check_int("_test_changeid", changeid, bits=32, nullable=True)

    ssid = sourcestamps.find_or_create_sourcestamp(
        write, branch=branch, revision=revision, repository=repository, project=project,
        codebase=codebase)
    parent = write.conn.execute(
        sa.select(ch.c.changeid)
        .where(ch.c.branch.is_(None) if branch is None else ch.c.branch == branch,
               ch.c.repository == repository, ch.c.project == project,
               ch.c.codebase == codebase)
        .order_by(ch.c.changeid.desc()).limit(1)).scalar()
    values: dict[str, Any] = {
        "author": author, "committer": committer, "comments": comments, "branch": branch,
        "revision": revision, "revlink": revlink, "when_timestamp": when,
        "category": category, "repository": repository, "codebase": codebase,
        "project": project, "sourcestampid": ssid, "parent_changeids": parent or None,
    }
    if changeid is not None:
        values["changeid"] = changeid
    changeid = write.insert(ch, **values)
    if filenames:
        write.conn.execute(s.change_files.insert(),
                           [{"changeid": changeid, "filename": f} for f in filenames])
    if props:
        write.conn.execute(s.change_properties.insert(), [
            {"changeid": changeid, "property_name": name, "property_value": text}
            for name, text in props.items()])
    write.emit_entity("change", "new", changeid)
    return changeid


def _files(files: Any) -> list[str]:
    if files is None:
        return []
    return [params.check_text(f"files[{i}]", f, column=s.change_files.c.filename)
            for i, f in enumerate(params.check_list("files", files, "file names"))]


def _change_properties(properties: Any) -> dict[str, str]:
    """``{name: stored text}``: each value as upstream stores it, the JSON of
    ``[value, "Change"]``."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise InvalidParams({"properties": "must be an object of name: value"})
    out: dict[str, str] = {}
    for name, value in properties.items():
        params.check_text("properties", name, column=s.change_properties.c.property_name)
        try:
            out[name] = json.dumps([value, "Change"])
        except (TypeError, ValueError):
            raise InvalidParams({f"properties.{name}": "must be a JSON value"}) from None
    return out


RESOURCE_TYPES = (Change,)
