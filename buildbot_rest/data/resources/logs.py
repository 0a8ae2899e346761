# -*- test-case-name: tests.www.test_steps_logs -*-
"""Logs of a step (their metadata; the text is served by logchunks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resolve import LOG_FORMS, STEP_FORMS, nested
from buildbot_rest.db import schema as s

lg = s.logs

class LogEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = LOG_FORMS
    unchecked = frozenset({"logid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [lg.c.id == ids["logid"]]


class LogsEndpoint(SQLEndpoint):
    patterns = nested(STEP_FORMS, "/logs")

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [lg.c.stepid == ids["stepid"]]


class Log(ResourceType):
    name = "log"
    plural = "logs"
    fields = (
        Field("logid", t.Integer(), lg.c.id),
        Field("name", t.String(), lg.c.name),
        Field("slug", t.Identifier(50), lg.c.slug),
        Field("stepid", t.Integer(), lg.c.stepid),
        Field("complete", t.Boolean(), lg.c.complete),
        Field("num_lines", t.Integer(), lg.c.num_lines),
        Field("type", t.Identifier(1), lg.c.type),
    )
    key = ("logid",)
    endpoints = (LogEndpoint, LogsEndpoint)

    def from_clause(self) -> sa.FromClause:
        return lg


RESOURCE_TYPES = (Log,)
