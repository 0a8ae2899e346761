# -*- test-case-name: tests.auth.test_authz -*-
"""Which builder a live event is about, synchronously: the view rules' filter of /ws and
/sse events.

An event's message names its builder (builds, build requests, test result sets) or a
parent (a step names its build, a log its step). :class:`Lineage` keeps bounded maps
child id -> parent id, learnt from the events themselves and read ahead from the
database (builder names, and the builds, steps and logs of unfinished builds). An
event whose builder is not known yet is hidden (the safe side) and its parents are
fetched, so that the next events of the same build pass."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from twisted.logger import Logger

from buildbot_rest.db import schema as s

if TYPE_CHECKING:
    from buildbot_rest.db import Database

log = Logger()

#: the ids each map of a :class:`Lineage` keeps (the least recently learnt go first)
LINEAGE_SIZE = 50_000

#: :func:`Lineage.builder_of` for an event that is not about a build's data
NOT_BUILD_DATA = -1
#: :func:`Lineage.builder_of` for an event whose builder is not known (yet)
UNKNOWN = -2


class _Bounded(OrderedDict[int, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: int, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


class Lineage:
    """Child-to-parent ids of builds' data, for live events (one per server)."""

    def __init__(self, size: int = LINEAGE_SIZE) -> None:
        self.builders: _Bounded = _Bounded(size)  # builderid -> name
        self.builds: _Bounded = _Bounded(size)  # buildid -> builderid
        self.steps: _Bounded = _Bounded(size)  # stepid -> buildid
        self.logs: _Bounded = _Bounded(size)  # logid -> stepid
        self.buildrequests: _Bounded = _Bounded(size)  # brid -> builderid
        self.test_result_sets: _Bounded = _Bounded(size)  # id -> builderid
        self.db: Database | None = None
        self._fetching: set[tuple[str, int]] = set()
        self._primed = False

    # -- learning ----------------------------------------------------------------------

    def learn(self, key: Sequence[str], message: Any) -> None:
        """Note the ids an event ``(routing key, message)`` links."""
        if len(key) == 3 and key[0] == "builders" and isinstance(message, Mapping):
            builderid, name = _int(key[1]), message.get("name")
            if builderid is not None and isinstance(name, str):
                self.builders.put(builderid, name)
        if not isinstance(message, Mapping):
            return
        builderid = _int(message.get("builderid"))
        buildid = _int(message.get("buildid"))
        stepid = _int(message.get("stepid"))
        if builderid is not None:
            if buildid is not None:
                self.builds.put(buildid, builderid)
            brid = _int(message.get("buildrequestid"))
            if brid is not None:
                self.buildrequests.put(brid, builderid)
            trsid = _int(message.get("test_result_setid"))
            if trsid is not None:
                self.test_result_sets.put(trsid, builderid)
        if stepid is not None and buildid is not None:
            self.steps.put(stepid, buildid)
        logid = _int(message.get("logid"))
        if logid is not None and stepid is not None:
            self.logs.put(logid, stepid)

    # -- asking --------------------------------------------------------------------------

    def builder_of(self, key: Sequence[str], message: Any) -> int:
        """The builder id an event is about, :data:`NOT_BUILD_DATA`, or :data:`UNKNOWN`
        (its parents are then fetched, when a database is known)."""
        if not key:
            return NOT_BUILD_DATA
        first, n = key[0], len(key)
        m = message if isinstance(message, Mapping) else {}
        if first == "builders" and n >= 4 and key[2] in ("builds", "buildrequests"):
            return self._known(_int(key[1]))
        if first == "buildsets" and n >= 5 and key[2] == "builders":
            return self._known(_int(key[3]))
        if first == "builds" and n >= 2:
            return self._of_build(_int(key[1]))
        if first == "workers" and n >= 4 and key[2] == "builds":
            return self._of_build(_int(key[3]))
        if first == "buildrequests" and n >= 2:
            brid = _int(key[1])
            return self._known(self._get("buildrequests", brid)
                               if _int(m.get("builderid")) is None else _int(m["builderid"]))
        if first == "steps" and n >= 2:
            return self._of_step(_int(key[1]))
        if first == "logs" and n >= 2:
            logid = _int(key[1])
            stepid = self._get("logs", logid)
            return UNKNOWN if stepid is None else self._of_step(stepid)
        if first == "test_result_sets" and n >= 2:
            trsid = _int(key[1])
            return self._known(self._get("test_result_sets", trsid))
        return NOT_BUILD_DATA

    def _known(self, builderid: int | None) -> int:
        return UNKNOWN if builderid is None else builderid

    def _of_build(self, buildid: int | None) -> int:
        return self._known(self._get("builds", buildid))

    def _of_step(self, stepid: int | None) -> int:
        buildid = self._get("steps", stepid)
        return UNKNOWN if buildid is None else self._of_build(buildid)

    def _get(self, kind: str, ident: int | None) -> int | None:
        if ident is None:
            return None
        value: int | None = getattr(self, kind).get(ident)
        if value is None:
            self._fetch(kind, ident)
        return value

    def name_of(self, builderid: int) -> str | None:
        """The name of builder ``builderid``, or None while it is fetched."""
        name: str | None = self.builders.get(builderid)
        if name is None:
            self._fetch("builders", builderid)
        return name

    # -- the database ------------------------------------------------------------------

    def prime(self, db: Database | None) -> None:
        """Read ahead (once, in the background): every builder's name, and the builds,
        steps and logs of unfinished builds and their build requests."""
        if db is None:
            return
        self.db = db
        if self._primed:
            return
        self._primed = True
        d = db.pool.do(_prime_in)
        d.addCallbacks(self._primed_with, lambda f: log.failure(
            "cannot read the builders for the live events' view filter", f))

    def _primed_with(self, found: dict[str, list[tuple[int, Any]]]) -> None:
        for kind, pairs in found.items():
            table = getattr(self, kind)
            for key, value in pairs:
                if key not in table:
                    table.put(key, value)

    def _fetch(self, kind: str, ident: int) -> None:
        if self.db is None or (kind, ident) in self._fetching or not -2**63 <= ident < 2**63:
            return
        self._fetching.add((kind, ident))

        def done(found: dict[str, list[tuple[int, Any]]]) -> None:
            self._fetching.discard((kind, ident))
            self._primed_with(found)

        def failed(f: Any) -> None:
            self._fetching.discard((kind, ident))
            log.failure("cannot read the builder of {kind} {ident}", f, kind=kind,
                        ident=ident)

        self.db.pool.do(_fetch_in, kind, ident).addCallbacks(done, failed)


def _fetch_in(conn: sa.Connection, kind: str, ident: int) -> dict[str, list[tuple[int, Any]]]:
    """In a database thread: the chain from one id up to its builder's name."""
    found: dict[str, list[tuple[int, Any]]] = {}
    b, st, lg, br, trs = s.builds, s.steps, s.logs, s.buildrequests, s.test_result_sets
    builderid: int | None = None
    if kind == "logs":
        stepid = conn.execute(sa.select(lg.c.stepid).where(lg.c.id == ident)).scalar()
        if stepid is None:
            return found
        found["logs"] = [(ident, stepid)]
        kind, ident = "steps", stepid
    if kind == "steps":
        buildid = conn.execute(sa.select(st.c.buildid).where(st.c.id == ident)).scalar()
        if buildid is None:
            return found
        found["steps"] = [(ident, buildid)]
        kind, ident = "builds", buildid
    parents = {"builds": b, "buildrequests": br, "test_result_sets": trs}
    if kind in parents:
        table = parents[kind]
        builderid = conn.execute(sa.select(table.c.builderid).where(
            table.c.id == ident)).scalar()
        if builderid is None:
            return found
        found[kind] = [(ident, builderid)]
    elif kind == "builders":
        builderid = ident
    if builderid is not None:
        name = conn.execute(sa.select(s.builders.c.name).where(
            s.builders.c.id == builderid)).scalar()
        if name is not None:
            found["builders"] = [(builderid, name)]
    return found


def _prime_in(conn: sa.Connection) -> dict[str, list[tuple[int, Any]]]:
    """In a database thread: builder names; builds, steps and logs of unfinished builds;
    build requests not complete."""
    b, st, lg, br = s.builds, s.steps, s.logs, s.buildrequests
    running = sa.select(b.c.id).where(b.c.complete_at.is_(None))
    return {
        "builders": [tuple(r) for r in conn.execute(sa.select(s.builders.c.id,
                                                              s.builders.c.name))],
        "builds": [tuple(r) for r in conn.execute(
            sa.select(b.c.id, b.c.builderid).where(b.c.complete_at.is_(None)))],
        "steps": [tuple(r) for r in conn.execute(
            sa.select(st.c.id, st.c.buildid).where(st.c.buildid.in_(running)))],
        "logs": [tuple(r) for r in conn.execute(
            sa.select(lg.c.id, lg.c.stepid).join_from(lg, st, st.c.id == lg.c.stepid)
            .where(st.c.buildid.in_(running)))],
        "buildrequests": [tuple(r) for r in conn.execute(
            sa.select(br.c.id, br.c.builderid).where(br.c.complete == 0))],
    }
