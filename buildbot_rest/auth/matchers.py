# -*- test-case-name: tests.auth.test_authz -*-
"""What an authorization rule looks at: which builder a path's data belongs to, which
builders a force would start, and whose a build is (the ``owner`` property).

Every endpoint is classified by :func:`coverage` from its resource type and path
variables, never by a list of paths, so that each path to a build's data (``/logs/<id>``
as well as ``/builders/<name>/builds/<n>/steps/<s>/logs/<slug>/raw``) is covered by the
rules of that build's builder (COMPAT 9 and issue 13: no bypass by another path)."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data.base import Kind
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.resolve import Missing, resolve
from buildbot_rest.data.types import in_int_range
from buildbot_rest.db import schema as s

#: path variables naming one entity whose data belongs to one build or build request
#: (after :func:`~buildbot_rest.data.resolve.resolve`), the most specific first
SCOPE_IDS = ("logid", "stepid", "buildid", "buildrequestid", "test_result_setid")
#: path variables that resolve to one of :data:`SCOPE_IDS`
_RESOLVED_TO_SCOPE = frozenset({"build_number", "step_number", "step_name", "log_slug"})
#: resource types of a builder's builds: under ``/builders/<b>`` they are that builder's
#: data; their collections elsewhere mix builders and are narrowed by ``builderid``
BUILD_TYPES = frozenset({"build", "buildrequest", "test_result_set"})

_VARIABLE = re.compile(r"^[a-z]?:(\w+)$")


class Coverage(enum.Flag):
    """How view rules apply to an endpoint: NONE (not a build's data), ENTITY (the path
    names a build, build request, step, log or test result set, or a builder for a
    collection of its builds: that builder's rules decide), NARROWED (a collection whose
    items may be of several builders: items of hidden builders are filtered out)."""

    NONE = 0
    ENTITY = enum.auto()
    NARROWED = enum.auto()


def pattern_variables(pattern: str) -> set[str]:
    """The variable names of a path pattern (``/builds/n:buildid`` -> ``{"buildid"}``)."""
    names = set()
    for part in pattern.strip("/").split("/"):
        m = _VARIABLE.match(part)
        if m:
            names.add(m.group(1))
    return names


def pattern_coverage(endpoint: Endpoint, pattern: str) -> Coverage:
    """The :class:`Coverage` of one pattern of ``endpoint``."""
    names = pattern_variables(pattern)
    rtype = endpoint.rtype.name
    cover = Coverage.NONE
    if names & set(SCOPE_IDS) or names & _RESOLVED_TO_SCOPE or (
            rtype in BUILD_TYPES and names & {"builderid", "buildername"}):
        cover |= Coverage.ENTITY
    if rtype in BUILD_TYPES and endpoint.kind is Kind.COLLECTION:
        cover |= Coverage.NARROWED
    return cover


def coverage(endpoint: Endpoint) -> Coverage:
    """The union of the coverage of the endpoint's patterns."""
    cover = Coverage.NONE
    for pattern in endpoint.patterns:
        cover |= pattern_coverage(endpoint, pattern)
    return cover


@dataclass(frozen=True)
class Scope:
    """The builder a path's data belongs to: ``builderid``, its ``name``, and the
    ``buildsetid`` of the build or build request (for the owner; None otherwise)."""

    builderid: int
    name: str
    buildsetid: int | None = None


#: what :func:`scope_in` answers for a path whose entity does not exist
MISSING = Scope(-1, "")


def scope_in(conn: sa.Connection, rtype: str, kwargs: Mapping[str, Any],
             unchecked: frozenset[str] = frozenset()) -> Scope | None:
    """In a database thread: the builder whose data ``kwargs`` (a matched path's
    variables) name, :data:`MISSING` when the path names nothing that exists, None when
    it names no build's data."""
    try:
        ids = resolve(conn, dict(kwargs), unchecked)
    except Missing:
        return MISSING
    b, st, lg, br, trs = s.builds, s.steps, s.logs, s.buildrequests, s.test_result_sets
    stmt: sa.Select[Any] | None = None
    if "logid" in ids:
        stmt = (sa.select(b.c.builderid, br.c.buildsetid)
                .select_from(lg.join(st, st.c.id == lg.c.stepid).join(b, b.c.id == st.c.buildid)
                             .outerjoin(br, br.c.id == b.c.buildrequestid))
                .where(lg.c.id == ids["logid"]))
    elif "stepid" in ids:
        stmt = (sa.select(b.c.builderid, br.c.buildsetid)
                .select_from(st.join(b, b.c.id == st.c.buildid)
                             .outerjoin(br, br.c.id == b.c.buildrequestid))
                .where(st.c.id == ids["stepid"]))
    elif "buildid" in ids:
        stmt = (sa.select(b.c.builderid, br.c.buildsetid)
                .select_from(b.outerjoin(br, br.c.id == b.c.buildrequestid))
                .where(b.c.id == ids["buildid"]))
    elif "buildrequestid" in ids:
        stmt = sa.select(br.c.builderid, br.c.buildsetid).where(
            br.c.id == ids["buildrequestid"])
    elif "test_result_setid" in ids:
        stmt = sa.select(trs.c.builderid, sa.null()).where(
            trs.c.id == ids["test_result_setid"])
    elif "builderid" in ids and rtype in BUILD_TYPES:
        stmt = sa.select(sa.literal(ids["builderid"]), sa.null())
    elif any(k in kwargs for k in (*SCOPE_IDS, *_RESOLVED_TO_SCOPE)):
        return MISSING  # (a step or log of a build that does not exist)
    if stmt is None:
        return None
    row = conn.execute(stmt.limit(1)).first()
    if row is None:
        return MISSING
    name = builder_names_in(conn, [row[0]]).get(row[0])
    if name is None:
        return MISSING
    return Scope(row[0], name, row[1])


def parent_builder_in(conn: sa.Connection, kwargs: Mapping[str, Any]) -> str | None:
    """In a database thread, for a path whose entity does not exist: the name of the
    builder of its most general part that does (the builder by id or name, else the
    build, step or build request by id), or None. So that under a hidden builder a
    missing step, log or build number is refused as an existing one is, and the
    difference between 403 and 404 does not list what is hidden."""
    b, st = s.builds, s.steps
    builderid: Any = None
    if isinstance(kwargs.get("builderid"), int):
        builderid = kwargs["builderid"]
    elif isinstance(kwargs.get("buildername"), str):
        return conn.execute(sa.select(s.builders.c.name).where(
            s.builders.c.name == kwargs["buildername"]).limit(1)).scalar()
    elif isinstance(kwargs.get("buildid"), int):
        builderid = sa.select(b.c.builderid).where(b.c.id == kwargs["buildid"]) \
            .scalar_subquery()
    elif isinstance(kwargs.get("stepid"), int):
        builderid = sa.select(b.c.builderid).select_from(
            st.join(b, b.c.id == st.c.buildid)).where(st.c.id == kwargs["stepid"]) \
            .scalar_subquery()
    elif isinstance(kwargs.get("buildrequestid"), int):
        builderid = sa.select(s.buildrequests.c.builderid).where(
            s.buildrequests.c.id == kwargs["buildrequestid"]).scalar_subquery()
    if builderid is None:
        return None
    return conn.execute(sa.select(s.builders.c.name).where(
        s.builders.c.id == builderid).limit(1)).scalar()


def builder_names_in(conn: sa.Connection, ids: list[int] | None = None) -> dict[int, str]:
    """Builder ids to names (all builders when ``ids`` is None), in a database thread."""
    stmt = sa.select(s.builders.c.id, s.builders.c.name)
    if ids is not None:
        stmt = stmt.where(s.builders.c.id.in_(ids))
    return {row[0]: row[1] for row in conn.execute(stmt)}


def owner_in(conn: sa.Connection, buildsetid: int | None) -> str | None:
    """The ``owner`` buildset property of a buildset (upstream's owner of a build, build
    request or buildset: the first element of its ``[value, source]`` JSON), or None."""
    if buildsetid is None:
        return None
    bp = s.buildset_properties
    raw = conn.execute(sa.select(bp.c.property_value).where(
        bp.c.buildsetid == buildsetid, bp.c.property_name == "owner").limit(1)).scalar()
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    owner = value[0] if isinstance(value, list) and value else None
    return owner if isinstance(owner, str) else None


@dataclass(frozen=True)
class Target:
    """What a control action acts on: the ``builders`` (names) it concerns, and the
    ``buildsetid`` its owner is read from (None: no owner)."""

    builders: frozenset[str]
    buildsetid: int | None = None


def control_target_in(conn: sa.Connection, rtype: str, kwargs: Mapping[str, Any],
                      unchecked: frozenset[str], params: Mapping[str, Any],
                      force_entries: list[Mapping[str, Any]]) -> Target | None:
    """In a database thread: the :class:`Target` of an action on a matched path, or None
    when the path names nothing that exists (the action then answers its own 404).

    For ``force`` (``/forceschedulers/<name>`` or ``/schedulers/<id>``): the builders
    that would be forced, as the action chooses them: ``builderNames`` (those of the
    scheduler), else ``builderid``, else all of the scheduler's builders; a value the
    action will refuse (400) counts as all of them, so that no rule is dodged by a
    malformed call."""
    if rtype in ("forcescheduler", "scheduler"):
        if rtype == "forcescheduler":
            name = kwargs.get("schedulername")
        else:
            try:
                ids = resolve(conn, dict(kwargs), unchecked)
            except Missing:
                return None
            name = conn.execute(sa.select(s.schedulers.c.name).where(
                s.schedulers.c.id == ids["schedulerid"]).limit(1)).scalar()
            if name is None:
                return None
        entry = next((e for e in force_entries if e.get("name") == name), None)
        if entry is None:
            return None if rtype == "forcescheduler" else Target(frozenset())
        return Target(forced_builders_in(conn, entry, params))
    scope = scope_in(conn, rtype, kwargs, unchecked)
    if scope is MISSING:
        return None
    if scope is None:
        return Target(frozenset())
    return Target(frozenset({scope.name}), scope.buildsetid)


def forced_builders_in(conn: sa.Connection, entry: Mapping[str, Any],
                       params: Mapping[str, Any]) -> frozenset[str]:
    """The names of the builders a force with ``params`` starts (see
    :func:`control_target_in`)."""
    everything = frozenset(str(n) for n in entry.get("builder_names") or ())
    names = params.get("builderNames")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return everything
        return everything.intersection(names) or everything
    builderid = params.get("builderid")
    if isinstance(builderid, str) and builderid.isascii() and builderid.isdigit():
        builderid = int(builderid)  # (the web UI's force form sends it as a string)
    if builderid is not None:
        if not isinstance(builderid, int) or isinstance(builderid, bool) \
                or not in_int_range(builderid):
            return everything  # (the action refuses it: 400)
        name = builder_names_in(conn, [builderid]).get(builderid)
        return frozenset({name}) if name is not None else everything
    return everything
