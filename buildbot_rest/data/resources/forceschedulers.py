# -*- test-case-name: tests.www.test_forceschedulers -*-
"""Force schedulers: they live in the server's configuration, not in the database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Endpoint, Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.engine import apply_in_python
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import schema as s


def configured(ctx: Context) -> list[dict[str, Any]]:
    """The force schedulers of the configuration, as entities, in configuration order."""
    entries = getattr(ctx.config, "forceschedulers", None) or []
    return [to_entity(entry) for entry in entries]


def to_entity(entry: dict[str, Any]) -> dict[str, Any]:
    """One configured force scheduler as its entity, with upstream's defaults for the
    label and the button name (both the scheduler's name)."""
    name = str(entry["name"])
    return {
        "name": name,
        "button_name": str(entry.get("button_name") or name),
        "label": str(entry.get("label") if entry.get("label") is not None else name),
        "builder_names": [str(b) for b in entry.get("builder_names") or []],
        "enabled": bool(entry.get("enabled", True)),
        "all_fields": list(entry.get("all_fields") or []),
    }


def _builder_name(conn: sa.Connection, builderid: int) -> str | None:
    b = s.builders
    return conn.execute(sa.select(b.c.name).where(b.c.id == builderid)).scalar()


class ForceSchedulerEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = ["/forceschedulers/i:schedulername"]

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: dict[str, Any]) -> Any:
        for entity in configured(ctx):
            if entity["name"] == kwargs["schedulername"]:
                return spec.project(entity)
        return None


class ForceSchedulersEndpoint(Endpoint):
    patterns = [
        "/forceschedulers",
        # upstream's id here is untyped; ours is a number (COMPAT #23)
        "/builders/n:builderid/forceschedulers",
    ]
    root_link = "forceschedulers"

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: dict[str, Any]) -> Any:
        entities = configured(ctx)
        if "builderid" in kwargs:
            name = await ctx.run(_builder_name, kwargs["builderid"])
            if name is None:
                raise ctx.not_found()
            entities = [e for e in entities if name in e["builder_names"]]
        # Without an order, the configuration's order is kept (as upstream lists them).
        return apply_in_python(self.rtype, spec, entities, sort=bool(spec.order))


class ForceScheduler(ResourceType):
    name = "forcescheduler"
    plural = "forceschedulers"
    fields = [
        Field("name", t.Identifier(50)),
        Field("button_name", t.String()),
        Field("label", t.String()),
        Field("builder_names", t.List(t.Identifier(50))),
        Field("enabled", t.Boolean()),
        Field("all_fields", t.List(t.JsonObject())),
    ]
    key = ["name"]
    endpoints = [ForceSchedulerEndpoint, ForceSchedulersEndpoint]


RESOURCE_TYPES = [ForceScheduler]
