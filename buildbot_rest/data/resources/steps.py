# -*- test-case-name: tests.www.test_steps_logs -*-
"""Steps of a build, with their URLs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.resolve import BUILD_FORMS, STEP_FORMS, nested
from buildbot_rest.db import schema as s

st = s.steps

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

    def from_clause(self) -> sa.FromClause:
        return st

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]], spec: Any,
                 ctx: Any) -> None:
        for item in items:
            item["urls"] = parse_urls(item.pop("_urls_json", None))


RESOURCE_TYPES = (Step,)
