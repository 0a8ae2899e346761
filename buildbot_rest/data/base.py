# -*- test-case-name: tests.data.test_engine -*-
"""Declaring resource types and their endpoints."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from buildbot_rest.data import types as t

if TYPE_CHECKING:
    from buildbot_rest.data.context import Context
    from buildbot_rest.data.resultspec import ResultSpec


class Kind(enum.Enum):
    COLLECTION = "collection"
    SINGLE = "single"
    RAW = "raw"
    RAW_INLINE = "raw_inline"


@dataclass
class Field:
    """One field of an entity.

    ``sql`` is the expression that yields it (a column or a computed SQL expression); the
    result-spec engine filters and orders on it in SQL. Fields without ``sql`` are filled
    in by the resource type's :meth:`ResourceType.complete` and handled in Python.
    """

    name: str
    type: t.FieldType
    sql: sa.ColumnElement[Any] | None = None

    @property
    def in_sql(self) -> bool:
        return self.sql is not None and self.type.scalar

    @property
    def nullable(self) -> bool:
        if self.type.nullable:
            return True
        col = self.sql
        return isinstance(col, sa.Column) and bool(col.nullable)


class ResourceType:
    """A resource type: its entity's fields, the SQL that yields its rows, and its endpoints.

    Subclasses set the class attributes and list their endpoint classes in ``endpoints``.
    """

    name: ClassVar[str]
    plural: ClassVar[str]
    #: the entity type's name in application.spec (usually ``name``)
    entity_name: ClassVar[str | None] = None
    #: the fields in upstream's declaration order (that is the order of application.spec)
    fields: ClassVar[Sequence[Field]] = ()
    #: fields that make the natural order and break ties in every sort
    key: ClassVar[Sequence[str]] = ()
    #: extra labelled columns the ``complete`` hook needs (labels start with "_")
    extra_columns: ClassVar[Sequence[sa.ColumnElement[Any]]] = ()
    endpoints: ClassVar[Sequence[type[Endpoint]]] = ()

    def __init__(self) -> None:
        self.field_map: dict[str, Field] = {f.name: f for f in self.fields}
        self.field_types: dict[str, t.FieldType] = {f.name: f.type for f in self.fields}
        # (label, converter or None when the database value is the JSON value), for to_item
        self._row_columns: list[tuple[str, Callable[[Any], Any] | None]] = [
            (f.name, None if type(f.type).from_db is t.FieldType.from_db else f.type.from_db)
            for f in self.fields if f.sql is not None]
        self._row_columns += [(col.name, None) for col in self.extra_columns]

    @property
    def entity_type(self) -> t.Entity:
        return t.Entity(self.entity_name or self.name, self.field_types)

    def from_clause(self) -> sa.FromClause:
        """The table or join that rows come from."""
        raise NotImplementedError

    def count_from_clause(self) -> sa.FromClause | None:
        """The from clause without outer joins that cannot change the number of rows
        (joins on a unique key), for faster counts; None when there are none."""
        return None

    def select(self) -> sa.Select[Any]:
        """The base statement: every SQL field labelled with its name, plus extras."""
        columns = [f.sql.label(f.name) for f in self.fields if f.sql is not None]
        return sa.select(*columns, *self.extra_columns).select_from(self.from_clause())

    def to_item(self, row: Any) -> dict[str, Any]:
        """Turn one result row (a mapping) into an entity dict (computed fields missing)."""
        item: dict[str, Any] = {}
        for name, convert in self._row_columns:
            value = row[name]
            item[name] = value if convert is None else convert(value)
        return item

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]],
                 spec: ResultSpec | None, ctx: Context) -> None:
        """Fill in the computed fields of ``items`` in place (batched, in the DB thread).
        ``spec`` is None when items are embedded in another entity."""

    @staticmethod
    def strip_private(items: list[dict[str, Any]]) -> None:
        for item in items:
            for key in [k for k in item if k.startswith("_")]:
                del item[key]


class Endpoint:
    """A set of path patterns served the same way.

    A collection endpoint answers ``where(ids)`` over its resource type through the
    result-spec engine; a single endpoint answers the one row matching ``where(ids)``.
    Endpoints with other needs override :meth:`get`.
    """

    kind: ClassVar[Kind] = Kind.COLLECTION
    patterns: ClassVar[Sequence[str]] = ()
    #: the path variables whose entities need not exist for this endpoint
    unchecked: ClassVar[frozenset[str]] = frozenset()
    #: the name given for ``rootlinks``
    root_link: ClassVar[str | None] = None

    def __init__(self, rtype: ResourceType) -> None:
        self.rtype = rtype

    def where(self, ids: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
        """SQL conditions selecting this endpoint's rows for resolved path ids."""
        return []

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: dict[str, Any]) -> Any:
        """The collection (``(items, total)``) or the entity (a dict, or None)."""
        return await ctx.run(self.get_in, ctx, spec, kwargs)

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: dict[str, Any]) -> Any:
        """:meth:`get` in a database thread: the path resolved and the rows read on one
        connection, in one trip from the reactor."""
        from buildbot_rest.data import engine

        ids = ctx.resolve_in(conn, kwargs, self.unchecked)
        if self.kind is Kind.COLLECTION:
            return engine.fetch_collection(conn, ctx, self.rtype, spec, self.where(ids))
        return engine.fetch_one(conn, ctx, self.rtype, spec, self.where(ids))

    async def control(self, ctx: Context, method: str, params: dict[str, Any],
                      kwargs: dict[str, Any]) -> Any:
        from buildbot_rest.data.errors import InvalidControl
        raise InvalidControl(f"'{method}' is not a control method of this resource")

    def describe(self) -> str:
        return ", ".join(self.patterns)


ControlHandler = Callable[..., Any]


def chunked(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    """Split ids into lists short enough for one ``IN (...)``."""
    return [values[i:i + size] for i in range(0, len(values), size)]
