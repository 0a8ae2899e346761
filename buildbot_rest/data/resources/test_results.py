# -*- test-case-name: tests.www.test_test_results -*-
"""Test results: the values of one test result set, with their test names and code paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, ResourceType
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.db import schema as s

tr = s.test_results
names = s.test_names
paths = s.test_code_paths


class TestResultsEndpoint(SQLEndpoint):
    patterns = ("/test_result_sets/n:test_result_setid/results",)

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        setid = ids["test_result_setid"]
        # Results belong to the set's builder, as upstream reads them.
        builderid = sa.select(s.test_result_sets.c.builderid).where(
            s.test_result_sets.c.id == setid).scalar_subquery()
        return [tr.c.builderid == builderid, tr.c.test_result_setid == setid]


class TestResult(ResourceType):
    name = "test_result"
    plural = "test_results"
    fields = (
        Field("test_resultid", t.Integer(), tr.c.id),
        Field("builderid", t.Integer(), tr.c.builderid),
        Field("test_result_setid", t.Integer(), tr.c.test_result_setid),
        Field("test_name", t.NoneOk(t.String()), names.c.name),
        Field("test_code_path", t.NoneOk(t.String()), paths.c.path),
        Field("line", t.NoneOk(t.Integer()), tr.c.line),
        Field("duration_ns", t.NoneOk(t.Integer()), tr.c.duration_ns),
        Field("value", t.String(), tr.c.value),
    )
    key = ("test_resultid",)
    endpoints = (TestResultsEndpoint,)

    def from_clause(self) -> sa.FromClause:
        # Names and code paths are interned per builder: only the result's builder's count.
        return (tr.outerjoin(paths, sa.and_(tr.c.test_code_pathid == paths.c.id,
                                            paths.c.builderid == tr.c.builderid))
                .outerjoin(names, sa.and_(tr.c.test_nameid == names.c.id,
                                          names.c.builderid == tr.c.builderid)))


RESOURCE_TYPES = (TestResult,)
