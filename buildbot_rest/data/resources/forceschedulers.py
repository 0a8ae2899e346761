# -*- test-case-name: tests.www.test_forceschedulers -*-
"""Force schedulers: they live in the server's configuration, not in the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.engine import apply_in_python
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import schema as s


def configured(ctx: Context) -> list[dict[str, Any]]:
    """The force schedulers of the configuration, as entities, in configuration order.

    :class:`buildbot_rest.config.Config` has checked them and filled in upstream's
    defaults; each is copied so that serving it never changes the configuration."""
    entries = getattr(ctx.config, "forceschedulers", None) or ()
    return [dict(entry) for entry in entries]


def _builder_name(conn: sa.Connection, builderid: int) -> str | None:
    b = s.builders
    return conn.execute(sa.select(b.c.name).where(b.c.id == builderid)).scalar()


class ForceSchedulerEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = ("/forceschedulers/i:schedulername",)

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        for entity in configured(ctx):
            if entity["name"] == kwargs["schedulername"]:
                return spec.project(entity)
        return None


class ForceSchedulersEndpoint(Endpoint):
    patterns = (
        "/forceschedulers",
        # upstream's id here is untyped; ours is a number (COMPAT #23)
        "/builders/n:builderid/forceschedulers",
    )
    root_link = "forceschedulers"

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
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
    fields = (
        Field("name", t.Identifier(50)),
        Field("button_name", t.String()),
        Field("label", t.String()),
        Field("builder_names", t.List(t.Identifier(50))),
        Field("enabled", t.Boolean()),
        Field("all_fields", t.List(t.JsonObject())),
    )
    key = ("name",)
    endpoints = (ForceSchedulerEndpoint, ForceSchedulersEndpoint)


RESOURCE_TYPES = (ForceScheduler,)
