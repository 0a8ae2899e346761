# -*- test-case-name: tests.data.test_updates_test_results -*-
"""Test results: the values of one test result set, with their test names and code
paths; their update method ``addTestResults``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from twisted.logger import Logger

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, ResourceType, chunked
from buildbot_rest.data.endpoint import SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

tr = s.test_results
names = s.test_names
paths = s.test_code_paths
_log = Logger()

#: the range of upstream's 32-bit ``INTEGER`` columns (``line``, ``duration_ns``)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: results inserted per statement
_BATCH = 500


def _result_values(result_values: Any) -> tuple[list[dict[str, Any]], int]:
    """The results as rows to insert (names and code paths still as text), and how many
    durations were clamped to fit the column (COMPAT 34). InvalidParams naming the first
    bad one."""
    rows = []
    clamped = 0
    for i, value in enumerate(params.check_list("result_values", result_values, "objects")):
        where = f"result_values[{i}]"
        if not isinstance(value, Mapping):
            raise InvalidParams({where: "must be an object"})
        try:
            row = _result_row(value)
        except InvalidParams as e:
            raise InvalidParams({f"{where}.{name}": error
                                 for name, error in e.errors.items()}) from None
        if row is None:
            raise InvalidParams({where: "must hold a test_name or a test_code_path"})
        duration = row["duration_ns"]
        if duration is not None and not INT32_MIN <= duration <= INT32_MAX:
            row["duration_ns"] = INT32_MAX if duration > 0 else INT32_MIN
            clamped += 1
        rows.append(row)
    return rows, clamped


def _result_row(value: Mapping[str, Any]) -> dict[str, Any] | None:
    """One result's values (None without a name and a code path); InvalidParams."""
    # a key given as None is a key not given (upstream would loop on it forever)
    name = params.text(value, "test_name", nullable=True)
    path = params.text(value, "test_code_path", nullable=True)
    if name is None and path is None:
        return None
    line = params.check_int("line", value.get("line"), bits=32, nullable=True)
    duration = value.get("duration_ns")
    if isinstance(duration, float) and duration.is_integer():
        duration = int(duration)
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise InvalidParams({"duration_ns": "must be an integer"})
    return {"value": params.text(value, "value", required=True, nullable=False),
            "_name": name, "_path": path, "line": line, "duration_ns": duration}


def _intern(write: Write, table: sa.Table, column: sa.Column[Any], builderid: int,
            wanted: Sequence[str]) -> dict[str, int]:
    """The ids of ``wanted`` texts in a per-builder table (test_names, test_code_paths),
    adding those it lacks (the caller holds the builder's lock). A text stored twice
    (by concurrent upstream writers) is the row with the smallest id."""
    ids: dict[str, int] = {}
    for batch in chunked(list(wanted)):
        stmt = (sa.select(column, table.c.id)
                .where(table.c.builderid == builderid, column.in_(batch))
                .order_by(table.c.id.desc()))
        ids.update((text, ident) for text, ident in write.conn.execute(stmt))
    missing = [text for text in wanted if text not in ids]
    for batch in chunked(missing):
        write.conn.execute(table.insert(), [{"builderid": builderid, column.name: text}
                                            for text in batch])
        stmt = (sa.select(column, table.c.id)
                .where(table.c.builderid == builderid, column.in_(batch))
                .order_by(table.c.id.desc()))
        ids.update((text, ident) for text, ident in write.conn.execute(stmt))
    return ids


def add_test_results_in(write: Write, builderid: int, setid: int,
                        rows: list[dict[str, Any]]) -> None:
    """Insert test results of a set (rows from :func:`_result_values`), their names and
    code paths interned per builder. NotFound if the builder or the set does not exist,
    InvalidParams if the set is not of that builder. No event (as upstream)."""
    b = s.builders
    # Concurrent writers of one builder's names take turns (PostgreSQL, MySQL; SQLite
    # writers always do): nothing unique in the schema would stop a name stored twice.
    write.require(b, builderid, "builder", "builderid", lock=True, key_share=True)
    trs = s.test_result_sets
    set_builder = write.require(trs, setid, "test result set", "test_result_setid",
                                trs.c.builderid)
    if set_builder[0] != builderid:
        raise InvalidParams({"builderid": f"test result set {setid} is of builder "
                                          f"{set_builder[0]}"})
    if not rows:
        return
    name_ids = _intern(write, names, names.c.name, builderid,
                       list(dict.fromkeys(r["_name"] for r in rows if r["_name"] is not None)))
    path_ids = _intern(write, paths, paths.c.path, builderid,
                       list(dict.fromkeys(r["_path"] for r in rows if r["_path"] is not None)))
    values = [{"builderid": builderid, "test_result_setid": setid,
               "test_nameid": name_ids.get(r["_name"]) if r["_name"] is not None else None,
               "test_code_pathid": (path_ids.get(r["_path"]) if r["_path"] is not None
                                    else None),
               "line": r["line"], "duration_ns": r["duration_ns"], "value": r["value"]}
              for r in rows]
    for batch in chunked(values, _BATCH):
        write.conn.execute(tr.insert(), list(batch))


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
    updates = ("addTestResults",)
    # declared as upstream declares it; like upstream, nothing is ever published on it
    events = (EventKey(("test_result_sets", "{test_result_setid}", "results")),)

    async def addTestResults(self, builderid: int, test_result_setid: int,
                             result_values: Sequence[Mapping[str, Any]]) -> None:
        """Add results to a test result set. Each of ``result_values`` holds ``value``
        (a string), ``test_name`` and/or ``test_code_path``, and optionally ``line`` and
        ``duration_ns``. A duration beyond the 32-bit column is stored as its largest
        value (logged once per call). NotFound if the builder or set does not exist."""
        builderid = params.check_int("builderid", builderid)
        setid = params.check_int("test_result_setid", test_result_setid)
        rows, clamped = _result_values(result_values)
        await self.transact(add_test_results_in, builderid, setid, rows)
        if clamped:
            _log.warn("{count} test duration(s) of test result set {setid} did not fit "
                      "the 32-bit duration_ns column: stored as its limit ({limit})",
                      count=clamped, setid=setid, limit=INT32_MAX)

    def from_clause(self) -> sa.FromClause:
        # Names and code paths are interned per builder: only the result's builder's count.
        return (tr.outerjoin(paths, sa.and_(tr.c.test_code_pathid == paths.c.id,
                                            paths.c.builderid == tr.c.builderid))
                .outerjoin(names, sa.and_(tr.c.test_nameid == names.c.id,
                                          names.c.builderid == tr.c.builderid)))


RESOURCE_TYPES = (TestResult,)
