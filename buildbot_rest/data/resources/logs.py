# -*- test-case-name: tests.www.test_steps_logs -*-
"""Logs of a step (their metadata; the text is served by logchunks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

lg = s.logs

_STEP_FORMS = [
    "/builds/n:buildid/steps/i:step_name",
    "/builds/n:buildid/steps/n:step_number",
    "/builders/n:builderid/builds/n:build_number/steps/i:step_name",
    "/builders/n:builderid/builds/n:build_number/steps/n:step_number",
    "/builders/s:buildername/builds/n:build_number/steps/i:step_name",
    "/builders/s:buildername/builds/n:build_number/steps/n:step_number",
]


class LogEndpoint(SQLEndpoint):
    kind = Kind.SINGLE
    patterns = (
        "/logs/n:logid",
        "/steps/n:stepid/logs/i:log_slug",
        *(f"{step}/logs/i:log_slug" for step in _STEP_FORMS),
    )
    unchecked = frozenset({"logid"})

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        return [lg.c.id == ids["logid"]]


class LogsEndpoint(SQLEndpoint):
    patterns = (
        "/steps/n:stepid/logs",
        *(f"{step}/logs" for step in _STEP_FORMS),
    )

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
