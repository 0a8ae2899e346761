# -*- test-case-name: tests.data.test_engine -*-
"""The result-spec engine: one SQL statement per request from a declared field mapping.

Every filter and sort on a field that has an SQL expression becomes WHERE and ORDER BY;
the primary key is always the last sort key; LIMIT/OFFSET and a COUNT for ``meta.total``
run in SQL. Only list- and JSON-valued fields are filtered or sorted in Python, and then
paging happens after that filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.util import find_tables

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.resultspec import Filter, ResultSpec, sort_items


class substring_at(FunctionElement[int]):
    """The 1-based position of a literal, case-sensitive substring (0 when absent)."""

    type = sa.Integer()
    inherit_cache = True


@compiles(substring_at)
def _substring_at_default(element: substring_at, compiler: Any, **kw: Any) -> str:
    haystack, needle = list(element.clauses)
    return f"instr({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


@compiles(substring_at, "postgresql")
def _substring_at_pg(element: substring_at, compiler: Any, **kw: Any) -> str:
    haystack, needle = list(element.clauses)
    return f"strpos({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


@compiles(substring_at, "mysql")
def _substring_at_mysql(element: substring_at, compiler: Any, **kw: Any) -> str:
    haystack, needle = list(element.clauses)
    return (f"locate(binary {compiler.process(needle, **kw)}, "
            f"{compiler.process(haystack, **kw)})")


class binary_text(FunctionElement[str]):
    """A text expression compared and sorted by code point, as Python compares strings
    (the database's collation may be locale-aware or case-insensitive)."""

    type = sa.String()
    inherit_cache = True


@compiles(binary_text)
def _binary_text_default(element: binary_text, compiler: Any, **kw: Any) -> str:
    # SQLite's default BINARY collation already compares UTF-8 bytes: code point order.
    (inner,) = list(element.clauses)
    return str(compiler.process(inner, **kw))


@compiles(binary_text, "postgresql")
def _binary_text_pg(element: binary_text, compiler: Any, **kw: Any) -> str:
    (inner,) = list(element.clauses)
    return f'({compiler.process(inner, **kw)}) COLLATE "C"'


@compiles(binary_text, "mysql")
def _binary_text_mysql(element: binary_text, compiler: Any, **kw: Any) -> str:
    (inner,) = list(element.clauses)
    return f"BINARY ({compiler.process(inner, **kw)})"


def _base_type(f: Field) -> t.FieldType:
    return t.base_type(f.type)


def _comparable(f: Field) -> sa.ColumnElement[Any]:
    """The field's SQL expression, in code point order when it is text."""
    assert f.sql is not None
    if isinstance(_base_type(f), (t.String, t.Identifier)):
        return binary_text(f.sql)
    return f.sql


def filter_clause(f: Field, flt: Filter) -> sa.ColumnElement[bool]:
    """The SQL condition for one filter on a field with an SQL expression."""
    col = f.sql
    assert col is not None
    op, values = flt.op, flt.values
    if op == "isnull":
        return col.is_(None) if values[0] else col.is_not(None)
    base = _base_type(f)
    if isinstance(base, t.Boolean):
        # Booleans are columns of 0/1 or boolean expressions: decide per truth value.
        allowed = [b for b in (True, False) if flt.matches(b)]
        boolean = col if isinstance(col.type, sa.Boolean) else (col != 0)
        if len(allowed) == 2:
            return col.is_not(None)
        if allowed == [True]:
            return boolean
        if allowed == [False]:
            return sa.not_(boolean)
        return sa.false()
    if op in ("eq", "in"):
        return col == values[0] if len(values) == 1 else col.in_(values)
    if op in ("ne", "notin"):
        # SQL's NULL never compares unequal; the null check keeps that explicit.
        clause = col != values[0] if len(values) == 1 else col.not_in(values)
        return sa.and_(col.is_not(None), clause) if f.nullable else clause
    if op == "contains":
        return sa.or_(*(substring_at(col, sa.literal(str(v))) > 0 for v in values))
    v = values[0]
    key = _comparable(f)
    return {"lt": key < v, "le": key <= v, "gt": key > v, "ge": key >= v}[op]


def order_clauses(rtype: ResourceType, order: Sequence[str]) -> list[Any]:
    """ORDER BY terms: NULLs first ascending, last descending, and the key last."""
    terms: list[Any] = []
    seen: set[str] = set()
    for entry in list(order) + [k for k in rtype.key]:
        name = entry.lstrip("-")
        if name in seen:
            continue
        seen.add(name)
        f = rtype.field_map[name]
        desc = entry.startswith("-")
        key = _comparable(f)
        term = key.desc() if desc else key.asc()
        if f.nullable:
            # Only nullable columns get a NULLS clause, so that indexes stay usable.
            term = term.nulls_last() if desc else term.nulls_first()
        terms.append(term)
    return terms


def _split(rtype: ResourceType, spec: ResultSpec) -> tuple[list[Any], list[Filter], bool]:
    sql_where, py_filters = [], []
    for flt in spec.filters:
        f = rtype.field_map[flt.field]
        if f.in_sql:
            sql_where.append(filter_clause(f, flt))
        else:
            py_filters.append(flt)
    sql_order = all(rtype.field_map[o.lstrip("-")].in_sql for o in spec.order)
    return sql_where, py_filters, sql_order


def _items(conn: sa.Connection, rtype: ResourceType, stmt: sa.Select[Any],
           spec: ResultSpec | None, ctx: Context) -> list[dict[str, Any]]:
    result = conn.execute(stmt)
    items = rtype.to_items(list(result.keys()), result.all())
    if items:
        rtype.complete(conn, items, spec, ctx)
    return items


def count_statement(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """``SELECT count(*)`` of the rows ``stmt`` yields."""
    if (stmt._group_by_clauses or stmt._distinct or stmt._limit_clause is not None
            or stmt._offset_clause is not None):
        # a grouped, distinct or limited statement cannot simply swap its columns
        return sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())
    return stmt.with_only_columns(sa.func.count(), maintain_column_froms=False).order_by(None)


def fetch_collection(conn: sa.Connection, ctx: Context, rtype: ResourceType,
                     spec: ResultSpec, where: Sequence[Any]
                     ) -> tuple[list[dict[str, Any]], int]:
    """Items of one page and the total before paging (runs in a DB thread)."""
    stmt = rtype.select().where(*where)
    sql_where, py_filters, sql_order = _split(rtype, spec)
    stmt = stmt.where(*sql_where)
    offset = spec.offset or 0
    if not py_filters and sql_order:
        page = stmt.order_by(*order_clauses(rtype, spec.order))
        if spec.limit is not None:
            page = page.limit(spec.limit)
        if offset:
            page = page.offset(offset)
        items = _items(conn, rtype, page, spec, ctx)
        # A short page tells the total without a COUNT (unless it is empty past the end).
        short = spec.limit is None or len(items) < spec.limit
        if short and (items or not offset):
            total = offset + len(items)
        else:
            total = _count(conn, stmt, rtype)
        return _finish(rtype, spec, items), total
    # Some filter or sort needs Python: read every SQL-matching row, then page.
    if sql_order:
        stmt = stmt.order_by(*order_clauses(rtype, spec.order))
    items = _items(conn, rtype, stmt, spec, ctx)
    return apply_in_python(rtype, spec, items, filters=py_filters, sort=not sql_order)


def apply_in_python(rtype: ResourceType, spec: ResultSpec, items: list[dict[str, Any]], *,
                    filters: Sequence[Filter] | None = None,
                    sort: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Filter, count, sort and page items held in memory (for resource types that do
    not live in the database, and for list- or JSON-valued fields)."""
    flts = spec.filters if filters is None else filters
    items = [i for i in items if all(f.matches(i.get(f.field)) for f in flts)]
    if sort:
        items = sort_items(items, spec.order, rtype.key)
    total = len(items)
    offset = spec.offset or 0
    end = None if spec.limit is None else offset + spec.limit
    return _finish(rtype, spec, items[offset:end]), total


def _count(conn: sa.Connection, stmt: sa.Select[Any], rtype: ResourceType) -> int:
    """The number of rows of ``stmt``, a statement of ``rtype.select()`` with conditions."""
    narrow = _narrow_count(stmt, rtype)
    count = narrow if narrow is not None else count_statement(stmt)
    return int(conn.execute(count).scalar() or 0)


def _narrow_count(stmt: sa.Select[Any], rtype: ResourceType) -> sa.Select[Any] | None:
    """A COUNT over the resource's ``count_from_clause`` (its from clause without the
    outer joins that never change the number of rows) when no condition needs them, so
    that the count can be index-only."""
    narrow = rtype.count_from_clause()
    if narrow is None:
        return None
    if (stmt._group_by_clauses or stmt._distinct or stmt._limit_clause is not None
            or stmt._offset_clause is not None):
        return None
    dropped = set(find_tables(rtype.from_clause())) - set(find_tables(narrow))
    where = stmt.whereclause
    if where is not None and dropped & set(find_tables(where, check_columns=True)):
        return None
    count = sa.select(sa.func.count()).select_from(narrow)
    return count.where(where) if where is not None else count


def _finish(rtype: ResourceType, spec: ResultSpec,
            items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rtype.strip_private(items)
    if spec.fields is not None:
        items = [spec.project(i) for i in items]
    return items


def fetch_one(conn: sa.Connection, ctx: Context, rtype: ResourceType, spec: ResultSpec | None,
              where: Sequence[Any]) -> dict[str, Any] | None:
    """The one entity matching ``where``, or None (runs in a DB thread)."""
    stmt = rtype.select().where(*where)
    stmt = stmt.order_by(*order_clauses(rtype, ())).limit(1)
    items = _items(conn, rtype, stmt, spec, ctx)
    if not items:
        return None
    rtype.strip_private(items)
    item = items[0]
    return spec.project(item) if spec is not None else item


def fetch_embedded(conn: sa.Connection, ctx: Context, rtype: ResourceType,
                   where: Sequence[Any]) -> list[dict[str, Any]]:
    """Whole entities for embedding in another (no spec), in key order."""
    stmt = rtype.select().where(*where).order_by(*order_clauses(rtype, ()))
    items = _items(conn, rtype, stmt, None, ctx)
    rtype.strip_private(items)
    return items


def streamable(rtype: ResourceType, spec: ResultSpec) -> bool:
    """Whether the engine can stream this spec: no paging, every filter and sort in SQL."""
    _, py_filters, sql_order = _split(rtype, spec)
    return not py_filters and sql_order and not spec.paged


class Batches:
    """An unpaged collection that :func:`streamable` accepts, read in batches of ``size``
    items on one connection (in a DB thread): iterate for the batches; :meth:`total`
    counts the rows (on the same connection, between two batches if need be)."""

    def __init__(self, conn: sa.Connection, ctx: Context, rtype: ResourceType,
                 spec: ResultSpec, where: Sequence[Any], size: int = 2000) -> None:
        assert streamable(rtype, spec)
        self.conn = conn
        self.ctx = ctx
        self.rtype = rtype
        self.spec = spec
        self.size = size
        sql_where, _, _ = _split(rtype, spec)
        self._stmt = rtype.select().where(*where, *sql_where)

    def total(self) -> int:
        """The number of rows the collection has."""
        return _count(self.conn, self._stmt, self.rtype)

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        conn, rtype, spec = self.conn, self.rtype, self.spec
        stmt = self._stmt.order_by(*order_clauses(rtype, spec.order))
        if conn.dialect.name == "postgresql":
            # Every row will be read: plan the cursor for the whole result, not for its
            # first tenth (which can walk the primary key past a million rows to find a
            # few).
            conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        result = conn.execute(stmt.execution_options(stream_results=True,
                                                     yield_per=self.size))
        keys = list(result.keys())
        for rows in result.partitions(self.size):
            items = rtype.to_items(keys, rows)
            rtype.complete(conn, items, spec, self.ctx)
            yield _finish(rtype, spec, items)
