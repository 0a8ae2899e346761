# -*- test-case-name: tests.test_bench -*-
"""Floors: what each scenario costs with no server at all.

A floor fetches the same rows as the scenario's request with plain SQLAlchemy Core, in
this process, shapes them as the API's entities and encodes them with orjson: no HTTP,
no result-spec engine, no thread pool. When the request answers ``meta.total`` and the
page does not tell it, the floor runs the same ``COUNT`` too. A server can hardly go
faster than its floor; the ratio ``ours / floor`` is what the suite compares.

Every floor is ``(conn) -> bytes`` (or an iterator of bytes for raw logs).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from buildbot_rest.db.logchunks import decompress

Floor = Callable[[sa.Connection], Any]

_OPTS = orjson.OPT_SORT_KEYS


def _dump(plural: str, items: list[dict[str, Any]], total: int | None) -> bytes:
    meta: dict[str, Any] = {} if total is None else {"total": total}
    return orjson.dumps({plural: items, "meta": meta}, option=_OPTS)


def _count(conn: sa.Connection, table: sa.Table, *where: Any) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
               .scalar() or 0)


def _total(conn: sa.Connection, table: sa.Table, where: Sequence[Any], items: list[Any],
           limit: int | None) -> int:
    # The same shortcut the server may take: a short first page tells the total.
    if limit is None or len(items) < limit:
        return len(items)
    return _count(conn, table, *where)


# -- builds -------------------------------------------------------------------------------

def _build(r: Any) -> dict[str, Any]:
    return {"buildid": r.id, "number": r.number, "builderid": r.builderid,
            "buildrequestid": r.buildrequestid, "workerid": r.workerid,
            "masterid": r.masterid, "started_at": r.started_at,
            "complete": r.complete_at is not None, "complete_at": r.complete_at,
            "locks_duration_s": r.locks_duration_s, "results": r.results,
            "state_string": r.state_string, "properties": {}}


def builds_statement(where: Sequence[Any] = (), *, limit: int | None = 50,
                     descending: bool = True, order: Sequence[Any] = ()) -> sa.Select[Any]:
    """The page of builds a floor reads (also used for the query plans); ``order`` comes
    before the build id."""
    b = s.builds
    stmt = sa.select(b).where(*where).order_by(*order,
                                               b.c.id.desc() if descending else b.c.id)
    return stmt.limit(limit) if limit is not None else stmt


def builds(where: Sequence[Any] = (), *, limit: int | None = 50, properties: bool = False,
           descending: bool = True, order: Sequence[Any] = ()) -> Floor:
    def floor(conn: sa.Connection) -> bytes:
        rows = conn.execute(builds_statement(where, limit=limit, descending=descending,
                                             order=order))
        items = [_build(r) for r in rows]
        if properties and items:
            bp = s.build_properties
            byid = {i["buildid"]: i for i in items}
            for chunk in _chunks(list(byid)):
                for r in conn.execute(sa.select(bp).where(bp.c.buildid.in_(chunk))):
                    byid[r.buildid]["properties"][r.name] = [json.loads(r.value), r.source]
        return _dump("builds", items, _total(conn, s.builds, where, items, limit))
    return floor


def builds_all_streamed(batch: int = 2000) -> Floor:
    """Every build, encoded batch by batch (what a streaming server must at least do)."""
    def floor(conn: sa.Connection) -> int:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(
            builds_statement(limit=None, descending=False))
        size = 0
        for rows in result.partitions(batch):
            size += len(orjson.dumps([_build(r) for r in rows], option=_OPTS))
        return size
    return floor


# -- build requests, buildsets, changes, source stamps ----------------------------------

def buildrequests(where: Sequence[Any] = (), *, limit: int | None = 50) -> Floor:
    br, c = s.buildrequests, s.buildrequest_claims

    def floor(conn: sa.Connection) -> bytes:
        stmt = (sa.select(br, c.c.masterid, c.c.claimed_at)
                .select_from(br.outerjoin(c, c.c.brid == br.c.id))
                .where(*where).order_by(br.c.id.desc()))
        if limit is not None:
            stmt = stmt.limit(limit)
        items = [{"buildrequestid": r.id, "buildsetid": r.buildsetid,
                  "builderid": r.builderid, "priority": r.priority,
                  "claimed": r.claimed_at is not None, "claimed_at": r.claimed_at,
                  "claimed_by_masterid": r.masterid, "complete": bool(r.complete),
                  "results": r.results, "submitted_at": r.submitted_at,
                  "complete_at": r.complete_at, "waited_for": bool(r.waited_for),
                  "properties": None} for r in conn.execute(stmt)]
        return _dump("buildrequests", items, _total(conn, br, where, items, limit))
    return floor


def _patches(conn: sa.Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
    p = s.patches
    out = {}
    for chunk in _chunks(sorted(ids)):
        for r in conn.execute(sa.select(p).where(p.c.id.in_(chunk))):
            out[r.id] = {"patchid": r.id, "level": r.patchlevel, "subdir": r.subdir,
                         "author": r.patch_author, "comment": r.patch_comment, "body": None}
    return out


def _sourcestamps(conn: sa.Connection, rows: list[Any]) -> list[dict[str, Any]]:
    patches = _patches(conn, {r.patchid for r in rows if r.patchid is not None})
    return [{"ssid": r.id, "branch": r.branch, "revision": r.revision, "project": r.project,
             "repository": r.repository, "codebase": r.codebase,
             "patch": patches.get(r.patchid), "created_at": r.created_at} for r in rows]


def sourcestamps(limit: int = 50) -> Floor:
    ss = s.sourcestamps

    def floor(conn: sa.Connection) -> bytes:
        rows = list(conn.execute(sa.select(ss).order_by(ss.c.id.desc()).limit(limit)))
        items = _sourcestamps(conn, rows)
        return _dump("sourcestamps", items, _total(conn, ss, (), items, limit))
    return floor


def buildsets(limit: int = 50) -> Floor:
    bs, bss, ss = s.buildsets, s.buildset_sourcestamps, s.sourcestamps

    def floor(conn: sa.Connection) -> bytes:
        rows = list(conn.execute(sa.select(bs).order_by(bs.c.id.desc()).limit(limit)))
        ids = [r.id for r in rows]
        stamps: dict[int, list[Any]] = defaultdict(list)
        if ids:
            joined = (sa.select(bss.c.buildsetid, ss)
                      .join_from(bss, ss, ss.c.id == bss.c.sourcestampid)
                      .where(bss.c.buildsetid.in_(ids)).order_by(bss.c.id))
            srows = list(conn.execute(joined))
            for r, d in zip(srows, _sourcestamps(conn, srows), strict=True):
                stamps[r.buildsetid].append(d)
        items = [{"bsid": r.id, "external_idstring": r.external_idstring, "reason": r.reason,
                  "submitted_at": r.submitted_at, "complete": bool(r.complete),
                  "complete_at": r.complete_at, "results": r.results,
                  "parent_buildid": r.parent_buildid,
                  "parent_relationship": r.parent_relationship,
                  "rebuilt_buildid": r.rebuilt_buildid,
                  "sourcestamps": stamps[r.id]} for r in rows]
        return _dump("buildsets", items, _total(conn, bs, (), items, limit))
    return floor


def changes(limit: int = 50) -> Floor:
    ch, cf, cp, ss = s.changes, s.change_files, s.change_properties, s.sourcestamps

    def floor(conn: sa.Connection) -> bytes:
        rows = list(conn.execute(sa.select(ch).order_by(ch.c.changeid.desc()).limit(limit)))
        ids = [r.changeid for r in rows]
        files: dict[int, list[str]] = defaultdict(list)
        props: dict[int, dict[str, Any]] = defaultdict(dict)
        stamps: dict[int, dict[str, Any]] = {}
        if ids:
            for r in conn.execute(sa.select(cf).where(cf.c.changeid.in_(ids))):
                files[r.changeid].append(r.filename)
            for r in conn.execute(sa.select(cp).where(cp.c.changeid.in_(ids))):
                props[r.changeid][r.property_name] = json.loads(r.property_value)
            ssids = sorted({r.sourcestampid for r in rows})
            srows = list(conn.execute(sa.select(ss).where(ss.c.id.in_(ssids))))
            stamps = {d["ssid"]: d for d in _sourcestamps(conn, srows)}
        items = [{"changeid": r.changeid, "author": r.author, "committer": r.committer,
                  "files": sorted(files[r.changeid]), "comments": r.comments,
                  "parent_changeids": [r.parent_changeids] if r.parent_changeids else [],
                  "revision": r.revision, "when_timestamp": r.when_timestamp,
                  "branch": r.branch, "category": r.category, "revlink": r.revlink,
                  "properties": props[r.changeid], "repository": r.repository,
                  "project": r.project, "codebase": r.codebase,
                  "sourcestamp": stamps.get(r.sourcestampid)} for r in rows]
        return _dump("changes", items, _total(conn, ch, (), items, limit))
    return floor


# -- steps and logs -----------------------------------------------------------------------

def steps(buildid: int) -> Floor:
    st = s.steps

    def floor(conn: sa.Connection) -> bytes:
        stmt = sa.select(st).where(st.c.buildid == buildid).order_by(st.c.number)
        items = [{"stepid": r.id, "number": r.number, "name": r.name, "buildid": r.buildid,
                  "started_at": r.started_at, "locks_acquired_at": r.locks_acquired_at,
                  "complete": r.complete_at is not None, "complete_at": r.complete_at,
                  "results": r.results, "state_string": r.state_string,
                  "urls": json.loads(r.urls_json), "hidden": bool(r.hidden)}
                 for r in conn.execute(stmt)]
        return _dump("steps", items, len(items))
    return floor


def _log_pieces(conn: sa.Connection, logid: int) -> Iterator[bytes]:
    lc = s.logchunks
    stmt = (sa.select(lc.c.content, lc.c.compressed).where(lc.c.logid == logid)
            .order_by(lc.c.first_line))
    result = conn.execution_options(stream_results=True, yield_per=64).execute(stmt)
    for content, code in result:
        yield decompress(code, content or b"")


def log_contents(logid: int) -> Floor:
    def floor(conn: sa.Connection) -> bytes:
        text = b"\n".join(_log_pieces(conn, logid)).decode("utf-8", "replace")
        if text:
            text += "\n"
        items = [{"logid": logid, "firstline": 0, "content": text}]
        return _dump("logchunks", items, None)
    return floor


def log_raw(logid: int) -> Floor:
    """The bytes of a raw download, counted and dropped as they come (memory stays flat)."""
    def floor(conn: sa.Connection) -> int:
        size = 0
        for piece in _log_pieces(conn, logid):
            size += len(piece) + 1
        return size
    return floor


def count(table: sa.Table, *where: Any) -> Floor:
    """Only the ``COUNT`` behind ``meta.total``."""
    def floor(conn: sa.Connection) -> int:
        return _count(conn, table, *where)
    return floor


def page(stmt: sa.Select[Any]) -> Floor:
    """Only the page query: its rows fetched (their number is the result)."""
    def floor(conn: sa.Connection) -> int:
        return len(conn.execute(stmt).all())
    return floor


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
