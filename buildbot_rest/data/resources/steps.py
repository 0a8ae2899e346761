# -*- test-case-name: tests.www.test_steps_logs -*-
"""Steps of a build, with their URLs; their update methods (``addStep``, ``startStep``,
``finishStep``...) and events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import Conflict
from buildbot_rest.data.resolve import BUILD_FORMS, STEP_FORMS, nested
from buildbot_rest.data.resources.builds import build_row_in
from buildbot_rest.data.resources.logs import finish_log_in
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

st = s.steps

#: the longest step name (the column's length)
NAME_LENGTH = 50

#: the entity type of one step URL
URL = t.Entity("Url", {"name": t.String(), "url": t.String()})


def parse_urls(text: str | None) -> list[dict[str, Any]]:
    """``urls_json`` as ``[{name, url}]``; a damaged value reads as no URLs."""
    try:
        urls = json.loads(text or "[]")
    except ValueError:
        return []
    if not isinstance(urls, list):
        return []
    return [{"name": _text(u.get("name")), "url": _text(u.get("url"))}
            for u in urls if isinstance(u, dict)]


def _text(value: Any) -> str | None:
    # the URL entity's fields are strings: anything else stored reads as missing
    return value if isinstance(value, str) else None


# -- writing ----------------------------------------------------------------------------

def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or upstream's ``<name>_<k>`` (cut to fit 50 characters) with the
    smallest k not ``taken``."""
    if name not in taken:
        return name
    k = 1
    while True:
        suffix = f"_{k}"
        candidate = name[:NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        k += 1


def add_step_in(write: Write, buildid: int, name: str) -> tuple[int, int, str]:
    """Insert a step (upstream's ``db.steps.addStep``): number one more than the
    build's highest (from 0), state ``pending``, no URLs; a name the build already
    has becomes ``<name>_<k>``. Its ``new`` event. Answers ``(stepid, number, name)``."""
    # locked: concurrent writers of the build's steps take turns (PostgreSQL, MySQL;
    # SQLite writers always do)
    build_row_in(write, buildid, lock=True)
    for _ in range(100):
        rows = write.conn.execute(sa.select(st.c.number, st.c.name)
                                  .where(st.c.buildid == buildid)).all()
        number = max((row.number for row in rows), default=-1) + 1
        chosen = _free_name(name, {row.name for row in rows})
        try:
            with write.savepoint():
                stepid = write.insert(
                    st, buildid=buildid, number=number, name=chosen, started_at=None,
                    locks_acquired_at=None, complete_at=None, state_string="pending",
                    results=None, urls_json="[]", hidden=0)
        except sa.exc.IntegrityError:
            # a writer that does not lock the build (another master) took the number
            # or the name: look again
            continue
        write.emit_entity("step", "new", stepid)
        return stepid, number, chosen
    raise Conflict(f"no free step number or name in build {buildid}; try again")


def _update_step(write: Write, stepid: int, event: str, **values: Any) -> None:
    write.update(st, stepid, "step", "stepid", **values)
    write.emit_entity("step", event, stepid)


def start_step_in(write: Write, stepid: int, started_at: int | None = None,
                  locks_acquired: bool = False) -> None:
    """Start the step at ``started_at`` (now if None); with ``locks_acquired`` its
    locks were acquired at the same time. Its ``started`` event."""
    when = write.now if started_at is None else started_at
    values = {"started_at": when}
    if locks_acquired:
        values["locks_acquired_at"] = when
    _update_step(write, stepid, "started", **values)


def set_step_locks_acquired_at_in(write: Write, stepid: int,
                                  locks_acquired_at: int | None = None) -> None:
    """The time the step acquired its locks (now if None); ``updated`` event."""
    _update_step(write, stepid, "updated",
                 locks_acquired_at=write.now if locks_acquired_at is None
                 else locks_acquired_at)


def set_step_state_string_in(write: Write, stepid: int, state_string: str) -> None:
    """The step's state string; ``updated`` event."""
    _update_step(write, stepid, "updated", state_string=state_string)


def add_step_url_in(write: Write, stepid: int, name: str, url: str) -> None:
    """Append ``{name, url}`` to the step's URLs unless it is there already;
    ``updated`` event either way (as upstream)."""
    # locked: two writers appending at once both keep their URL
    stored = write.require(st, stepid, "step", "stepid", st.c.urls_json, lock=True)
    urls = t.loads_json(stored.urls_json, [])
    if not isinstance(urls, list):
        urls = []  # damaged by another writer: start again
    item = {"name": name, "url": url}
    if item not in urls:
        urls.append(item)
        write.conn.execute(st.update().where(st.c.id == stepid)
                           .values(urls_json=json.dumps(urls)))
    write.emit_entity("step", "updated", stepid)


def finish_step_in(write: Write, stepid: int, results: int, hidden: bool) -> None:
    """Finish the step now with ``results``, hidden or not; ``finished`` event."""
    _update_step(write, stepid, "finished", complete_at=write.now, results=results,
                 hidden=1 if hidden else 0)


def finish_open_steps_in(write: Write, buildid: int, results: int) -> None:
    """Finish each unfinished step of the build with ``results`` (keeping its
    ``hidden``), in number order, after finishing its open logs (upstream's master
    housekeeping does the same, with RETRY): log ``finished`` and step ``finished``
    events."""
    lg = s.logs
    steps = write.conn.execute(
        sa.select(st.c.id, st.c.hidden)
        .where(st.c.buildid == buildid, st.c.complete_at.is_(None))
        .order_by(st.c.number, st.c.id)).all()
    for step in steps:
        logids = write.conn.execute(
            sa.select(lg.c.id).where(lg.c.stepid == step.id, lg.c.complete == 0)
            .order_by(lg.c.id)).scalars().all()
        for logid in logids:
            finish_log_in(write, logid)
        finish_step_in(write, step.id, results, bool(step.hidden))


class StepEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = STEP_FORMS
    # the step row is read anyway; a missing one is a 404 from there
    unchecked = frozenset({"stepid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [st.c.id == ids["stepid"]]


class StepsEndpoint(SQLEndpoint):
    patterns = nested(BUILD_FORMS, "/steps")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [st.c.buildid == ids["buildid"]]


class Step(ResourceType):
    name = "step"
    plural = "steps"
    fields = (
        Field("stepid", t.Integer(), st.c.id),
        Field("number", t.Integer(), st.c.number),
        Field("name", t.Identifier(50), st.c.name),
        Field("buildid", t.Integer(), st.c.buildid),
        Field("started_at", t.NoneOk(t.DateTime()), st.c.started_at),
        Field("locks_acquired_at", t.NoneOk(t.DateTime()), st.c.locks_acquired_at),
        Field("complete", t.Boolean(), st.c.complete_at.is_not(None)),
        Field("complete_at", t.NoneOk(t.DateTime()), st.c.complete_at),
        Field("results", t.NoneOk(t.Integer()), st.c.results),
        Field("state_string", t.String(), st.c.state_string),
        Field("urls", t.List(URL)),
        Field("hidden", t.Boolean(), st.c.hidden),
    )
    # a build's steps come in the order of their numbers
    key = ("number", "stepid")
    extra_columns = (st.c.urls_json.label("_urls_json"),)
    endpoints = (StepEndpoint, StepsEndpoint)
    updates = ("addStep", "startStep", "set_step_locks_acquired_at", "setStepStateString",
               "addStepURL", "finishStep")
    events = (
        EventKey(("builds", "{buildid}", "steps", "{stepid}")),
        EventKey(("steps", "{stepid}")),
    )

    # -- update methods (upstream's names, parameters and answers) --

    async def addStep(self, buildid: int, name: str) -> tuple[int, int, str]:
        """Add a step to a build; answers ``(stepid, number, name)``, the name being
        ``<name>_<k>`` when the build already has a step of that name."""
        buildid = params.check_int("buildid", buildid)
        return await self.transact(add_step_in, buildid,
                                   params.check_text("name", name, max_length=NAME_LENGTH))

    async def startStep(self, stepid: int, started_at: int | None = None,
                        locks_acquired: bool = False) -> None:
        """Start a step at ``started_at`` (epoch seconds; now if None)."""
        stepid = params.check_int("stepid", stepid)
        started_at = params.check_int("started_at", started_at, nullable=True)
        locks = params.check_bool("locks_acquired", locks_acquired)
        await self.transact(start_step_in, stepid, started_at, locks)

    async def set_step_locks_acquired_at(self, stepid: int,
                                         locks_acquired_at: int | None = None) -> None:
        """Record when the step acquired its locks (now if None)."""
        stepid = params.check_int("stepid", stepid)
        locks_acquired_at = params.check_int("locks_acquired_at", locks_acquired_at,
                                             nullable=True)
        await self.transact(set_step_locks_acquired_at_in, stepid, locks_acquired_at)

    async def setStepStateString(self, stepid: int, state_string: str) -> None:
        """Set the step's state string."""
        stepid = params.check_int("stepid", stepid)
        await self.transact(set_step_state_string_in, stepid,
                            params.check_text("state_string", state_string))

    async def addStepURL(self, stepid: int, name: str, url: str) -> None:
        """Add a link to the step's URLs (once)."""
        stepid = params.check_int("stepid", stepid)
        await self.transact(add_step_url_in, stepid, params.check_text("name", name),
                            params.check_text("url", url))

    async def finishStep(self, stepid: int, results: int, hidden: bool) -> None:
        """Finish the step now with ``results``, ``hidden`` from the UI or not."""
        stepid = params.check_int("stepid", stepid)
        results = params.check_int("results", results)
        hide = params.check_bool("hidden", hidden)
        await self.transact(finish_step_in, stepid, results, hide)

    def from_clause(self) -> sa.FromClause:
        return st

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        for item in items:
            item["urls"] = parse_urls(item.pop("_urls_json", None))


RESOURCE_TYPES = (Step,)
