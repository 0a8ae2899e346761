"""The result-spec engine: SQL and Python give the same answers, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from buildbot_rest import demo
from buildbot_rest.data import engine
from buildbot_rest.data.resources.builds import Build
from buildbot_rest.data.resultspec import ResultSpec, group, parse, parse_query_string
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s

#: odd state strings: LIKE wildcards, case, and the empty string
ODD = ["100% done", "a_b", "axb", "SUCCESS", "success", ""]


@pytest.fixture
def db(db_url):
    database = Database(db_url, pool_size=2)
    database.prepare_sync()
    demo.populate(database.engine, builds=20, seed=3)
    with database.engine.begin() as conn:
        row = conn.execute(sa.select(s.builds).order_by(s.builds.c.id).limit(1)).mappings().one()
        top = conn.execute(sa.select(sa.func.max(s.builds.c.id))).scalar()
        for i, text in enumerate(ODD, start=1):
            new = dict(row)
            new.update(id=top + i, number=10_000 + i, state_string=text,
                       results=None if i % 2 else 2, complete_at=None if i % 3 else 5,
                       started_at=row["started_at"] if i % 2 else 1)
            conn.execute(s.builds.insert().values(**new))
    yield database
    database.engine.dispose()


RTYPE = Build()


def spec_of(query: str) -> ResultSpec:
    return parse(group(parse_query_string(query)), RTYPE.field_types, collection=True)


def both(db: Database, query: str) -> tuple[Any, Any]:
    spec = spec_of(query)
    with db.engine.connect() as conn:
        everything, _ = engine.fetch_collection(conn, None, RTYPE, ResultSpec(), [])
        sql = engine.fetch_collection(conn, None, RTYPE, spec_of(query), [])
    return sql, engine.apply_in_python(RTYPE, spec, copy.deepcopy(everything))


def values(db: Database, field: str) -> list[Any]:
    with db.engine.connect() as conn:
        items, _ = engine.fetch_collection(conn, None, RTYPE, ResultSpec(), [])
    vs = sorted({i[field] for i in items if i[field] is not None})
    return [vs[0], vs[len(vs) // 2], vs[-1]] if vs else []


OPS = ["eq", "ne", "lt", "le", "gt", "ge", "in", "notin"]


def test_every_operator_on_every_field_type(db):
    checked = 0
    for field in ("buildid", "number", "started_at", "complete_at", "results",
                  "state_string", "complete"):
        samples = ["true", "false"] if field == "complete" else [str(v) for v in
                                                                  values(db, field)]
        queries = [f"{field}__isnull=true", f"{field}__isnull=false"]
        for op, v in itertools.product(OPS, samples):
            queries.append(f"{field}__{op}={v}")
        for op in ("eq", "ne", "in", "notin"):
            queries.append("&".join(f"{field}__{op}={v}" for v in samples))
        if field == "state_string":
            queries += [f"state_string__contains={x}" for x in ("%", "_", "SUCC", "succ", "")]
            queries.append("state_string__contains=a_&state_string__contains=%25")
        for q in queries:
            for order in ("", f"&order={field}", f"&order=-{field}&order=-number"):
                sql, py = both(db, q + order)
                assert sql == py, q + order
                checked += 1
    assert checked > 300


def test_contains_is_literal_and_case_sensitive(db):
    def states(q):
        (items, _), py = both(db, q)
        assert (items, _) == py
        return sorted(b["state_string"] for b in items)

    assert states("state_string__contains=%25") == ["100% done"]
    assert states("state_string__contains=_") == ["a_b"]
    assert states("state_string__contains=SUCC") == ["SUCCESS"]
    assert "success" in states("state_string__contains=succ")
    assert "SUCCESS" not in states("state_string__contains=succ")


def test_null_ordering(db):
    for q, nulls_first in (("order=results", True), ("order=-results", False),
                           ("order=complete_at", True), ("order=-complete_at", False)):
        (items, _), py = both(db, q)
        assert (items, _) == py
        field = q.split("=")[1].lstrip("-")
        vs = [i[field] for i in items]
        nulls = [v is None for v in vs]
        assert any(nulls) and not all(nulls)
        assert nulls == sorted(nulls, reverse=nulls_first), q
        rest = [v for v in vs if v is not None]
        assert rest == sorted(rest, reverse=q.startswith("order=-")), q


def test_total_with_limit_and_offset(db):
    (everything, total), _ = both(db, "")
    n = len(everything)
    assert total == n
    for q in ("limit=3", "limit=0", "offset=4", "offset=4&limit=3", f"offset={n}",
              f"offset={n + 5}", f"offset={n + 5}&limit=2", f"offset={n - 1}&limit=5",
              "results=2&limit=1", "results=2&offset=100"):
        sql, py = both(db, q)
        assert sql == py, q
        assert sql[1] == len([1 for i in everything if "results=2" not in q
                              or i["results"] == 2]), q


def test_tie_break_makes_paging_stable(db):
    # many builds share `results`; pages of 3 in that order cover every build once
    (everything, total), _ = both(db, "")
    seen = []
    for offset in range(0, total, 3):
        (page, t), py = both(db, f"order=results&limit=3&offset={offset}")
        assert (page, t) == py
        seen += [b["buildid"] for b in page]
    assert sorted(seen) == sorted(b["buildid"] for b in everything)
    assert len(seen) == len(set(seen))


def explain(conn: sa.Connection, stmt: sa.Select[Any]) -> str:
    """The query plan of ``stmt`` as one text (SQLite or PostgreSQL)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
        return "\n".join(str(r[-1]) for r in rows)
    rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").all()
    return "\n".join(r[0] for r in rows)


def test_page_of_builds_reads_only_the_page(db):
    spec = spec_of("order=-buildid&limit=50")
    stmt = (RTYPE.select().order_by(*engine.order_clauses(RTYPE, spec.order))
            .limit(spec.limit))
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE builds")
            conn.exec_driver_sql("SET enable_seqscan = off")
        plan = explain(conn, stmt)
    if db.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN builds" in plan, plan
    else:
        assert "Index Scan Backward" in plan, plan
        assert "Sort" not in plan, plan


def test_count_statement_of_a_grouped_statement(db):
    stmt = sa.select(s.builds.c.builderid).group_by(s.builds.c.builderid)
    with db.engine.connect() as conn:
        n = conn.execute(engine.count_statement(stmt)).scalar()
        assert n == len(conn.execute(stmt).all())


def test_streaming_batches_equal_the_collection(db):
    spec = spec_of("order=-results")
    with db.engine.connect() as conn:
        whole, total = engine.fetch_collection(conn, None, RTYPE, spec, [])
        batches = engine.Batches(conn, None, RTYPE, spec, [], size=4)
        streamed = [i for batch in batches for i in batch]
        assert batches.total() == total
    assert streamed == whole


def test_counts_leave_out_outer_joins_that_never_add_rows(db):
    from buildbot_rest.data.base import without_unique_outer_joins
    from buildbot_rest.data.resources.buildrequests import BuildRequest
    from buildbot_rest.data.resources.sourcestamps import SourceStamp
    from buildbot_rest.data.resources.test_results import TestResult

    # patches.id and buildrequest_claims.brid are unique: those joins never add rows
    assert SourceStamp().count_from_clause() is s.sourcestamps
    assert BuildRequest().count_from_clause() is s.buildrequests
    # a join on two columns, or on a column that is not unique, is kept
    assert TestResult().count_from_clause() is None
    j = s.builds.outerjoin(s.steps, s.steps.c.buildid == s.builds.c.id)
    assert without_unique_outer_joins(j) is j
    inner = s.builds.join(s.builders, s.builders.c.id == s.builds.c.builderid)
    assert without_unique_outer_joins(inner) is inner
    # the counts agree with the rows, with and without a condition on the joined table
    rtype = SourceStamp()
    with db.engine.connect() as conn:
        rows = conn.execute(rtype.select()).all()
        for where in ([], [s.patches.c.id.is_(None)]):
            stmt = rtype.select().where(*where)
            expected = len(conn.execute(stmt).all())
            assert engine._count(conn, stmt, rtype) == expected
            assert expected <= len(rows)
        narrow = engine._narrow_count(rtype.select(), rtype)
        assert narrow is not None and "patches" not in str(narrow)
        # a condition on the joined table keeps the join
        assert engine._narrow_count(rtype.select().where(s.patches.c.id.is_(None)),
                                    rtype) is None
