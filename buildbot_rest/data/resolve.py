# -*- test-case-name: tests.data.test_resources -*-
"""Resolving the variables of a matched path into entity ids, checking that they exist."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash


class Missing(Exception):
    """A path variable names an entity that does not exist."""

    def __init__(self, name: str, value: Any) -> None:
        super().__init__(f"no {name} {value!r}")
        self.name = name
        self.value = value


#: path variable -> the primary key column of the entity it names
ID_COLUMNS: dict[str, sa.Column[Any]] = {
    "masterid": s.masters.c.id,
    "builderid": s.builders.c.id,
    "buildid": s.builds.c.id,
    "stepid": s.steps.c.id,
    "logid": s.logs.c.id,
    "workerid": s.workers.c.id,
    "schedulerid": s.schedulers.c.id,
    "changesourceid": s.changesources.c.id,
    "bsid": s.buildsets.c.id,
    "buildsetid": s.buildsets.c.id,
    "buildrequestid": s.buildrequests.c.id,
    "changeid": s.changes.c.changeid,
    "ssid": s.sourcestamps.c.id,
    "projectid": s.projects.c.id,
    "codebaseid": s.codebases.c.id,
    "commitid": s.codebase_commits.c.id,
    "branchid": s.codebase_branches.c.id,
    "test_result_setid": s.test_result_sets.c.id,
}


# -- the ways a path names a build, a step or a log ----------------------------------------
#
# Every sub-path of one of these entities exists under each way of naming it, with the
# same endpoint: an endpoint declares ``nested(BUILD_FORMS, "/changes")`` rather than
# spelling its forms out, so that none is forgotten (upstream forgot several: its bug
# #3427). The forms bind exactly the variables that :func:`resolve` turns into ids.
# Numbers come before names, so that a number is never looked up as a name.

#: the paths of one build
BUILD_FORMS = (
    "/builds/n:buildid",
    "/builders/n:builderid/builds/n:build_number",
    "/builders/s:buildername/builds/n:build_number",
)

#: the paths of one step: by id, and by number or name under each form of its build
STEP_FORMS = (
    "/steps/n:stepid",
    *(f"{build}/steps/{step}" for build in BUILD_FORMS
      for step in ("n:step_number", "i:step_name")),
)

#: the paths of one log: by id, and by slug under each form of its step
LOG_FORMS = ("/logs/n:logid", *(f"{step}/logs/i:log_slug" for step in STEP_FORMS))


def nested(forms: Sequence[str], *subpaths: str) -> tuple[str, ...]:
    """The patterns of each of ``subpaths`` (``"/logs"``, or ``""`` for the entity
    itself) under each of ``forms`` (:data:`BUILD_FORMS`, :data:`STEP_FORMS` or
    :data:`LOG_FORMS`)."""
    return tuple(form + subpath for subpath in subpaths for form in forms)


def _scalar(conn: sa.Connection, stmt: sa.Select[Any]) -> Any:
    return conn.execute(stmt.limit(1)).scalar()


def builder_id_by_name(conn: sa.Connection, name: str) -> int | None:
    return _scalar(conn, sa.select(s.builders.c.id).where(
        s.builders.c.name_hash == name_hash(name)))


def resolve(conn: sa.Connection, kwargs: dict[str, Any],
            unchecked: Iterable[str] = ()) -> dict[str, Any]:
    """Turn path variables into ids: builder names, build numbers, step names or numbers
    and log slugs become ``builderid``, ``buildid``, ``stepid`` and ``logid``. Raise
    :class:`Missing` for the first one that does not exist (except ``unchecked``)."""
    ids = dict(kwargs)
    skip = set(unchecked)
    if "buildername" in ids:
        builderid = builder_id_by_name(conn, ids["buildername"])
        if builderid is None:
            raise Missing("builder", ids["buildername"])
        ids["builderid"] = builderid
        skip.add("builderid")
    # (parent id, child variables, child id, the child's SQL lookup)
    children = (
        ("builderid", ("build_number",), "buildid",
         lambda: sa.select(s.builds.c.id).where(s.builds.c.builderid == ids["builderid"],
                                                s.builds.c.number == ids["build_number"])),
        ("buildid", ("step_name", "step_number"), "stepid",
         lambda: sa.select(s.steps.c.id).where(
             s.steps.c.buildid == ids["buildid"],
             s.steps.c.name == ids["step_name"] if "step_name" in ids
             else s.steps.c.number == ids["step_number"])),
        ("stepid", ("log_slug",), "logid",
         lambda: sa.select(s.logs.c.id).where(s.logs.c.stepid == ids["stepid"],
                                              s.logs.c.slug == ids["log_slug"])),
    )
    for parent, variables, child, lookup in children:
        given = [v for v in variables if v in ids]
        if parent not in ids or not given:
            continue
        found = _scalar(conn, lookup())
        if found is None:
            if skip.intersection(given):
                return ids
            raise Missing(child[:-2], ids[given[0]])
        ids[child] = found
        skip.add(child)
    for name, column in ID_COLUMNS.items():
        if (name in ids and name not in skip
                and _scalar(conn, sa.select(column).where(column == ids[name])) is None):
            raise Missing(name, ids[name])
    return ids
