# -*- test-case-name: tests.data.test_connector -*-
"""Declaring resource types: their fields, the SQL that yields their rows, their control
actions, update methods and event routing keys.

With the field types, the query language and the errors, this is the bottom of
``data/``: the engine is built on these declarations, and endpoints on the engine."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.util import find_tables

from buildbot_rest.data import types as t

if TYPE_CHECKING:
    from buildbot_rest.data.context import Catalog, Context
    from buildbot_rest.data.resultspec import ResultSpec

T = TypeVar("T")


class Kind(enum.Enum):
    """What an endpoint answers: a collection, one entity, or bytes (a download, or the
    same bytes to show inline)."""

    COLLECTION = "collection"
    SINGLE = "single"
    RAW = "raw"
    RAW_INLINE = "raw_inline"


@dataclass(frozen=True)
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


def _needs_conversion(f: Field) -> bool:
    """Whether a field's database value must go through ``from_db``: integers that the
    driver already returns as integers (or NULL) need not."""
    base = t.base_type(f.type)
    if type(base).from_db is t.FieldType.from_db:
        return False
    sql_type = getattr(f.sql, "type", None)
    return not (isinstance(base, t.Integer) and isinstance(sql_type, sa.Integer)
                and not isinstance(sql_type, sa.Boolean))


def without_unique_outer_joins(clause: sa.FromClause) -> sa.FromClause:
    """``clause`` without its trailing LEFT OUTER JOINs that match at most one row each."""
    while (isinstance(clause, sa.Join) and clause.isouter and not clause.full
           and _matches_one_row(clause)):
        clause = clause.left
    return clause


def _matches_one_row(join: sa.Join) -> bool:
    """Whether the join's condition is ``right.column = <left expression>`` on a column
    that is unique in the right-hand table."""
    right, cond = join.right, join.onclause
    if not isinstance(right, sa.Table) or not isinstance(cond, BinaryExpression):
        return False
    if cond.operator is not operators.eq:
        return False
    mine = [c for c in (cond.left, cond.right) if isinstance(c, sa.Column) and c.table is right]
    others = [c for c in (cond.left, cond.right) if c not in mine]
    if len(mine) != 1 or any(right in find_tables(c) for c in others):
        return False
    unique = [{c.name for c in right.primary_key.columns}]
    unique += [{c.name for c in index.columns} for index in right.indexes if index.unique]
    unique += [{c.name for c in con.columns} for con in right.constraints
               if isinstance(con, sa.UniqueConstraint)]
    return {mine[0].name} in unique


@dataclass(frozen=True)
class EventKey:
    """One routing key of a resource type's events, as a template of path elements:
    ``EventKey(("builders", "{builderid}", "builds", "{buildid}"))`` gives
    ``("builders", "3", "builds", "17", "new")`` for build 17 of builder 3 and event
    ``new``. Placeholders name fields of the entity the event is about."""

    template: tuple[str, ...]

    def routing_key(self, entity: Mapping[str, Any], event: str) -> tuple[str, ...]:
        """The key for ``event`` about ``entity``; KeyError if a named field is missing."""
        return (*(part.format_map(entity) for part in self.template), event)


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
    #: its endpoint classes (:class:`buildbot_rest.data.endpoint.Endpoint` subclasses,
    #: which sit above this module)
    endpoints: ClassVar[Sequence[type[Any]]] = ()
    #: the control actions (JSON-RPC ``method`` names) its endpoints answer; an
    #: endpoint implements action ``x`` as ``action_x`` (see ``Endpoint.control``)
    actions: ClassVar[Sequence[str]] = ()
    #: the names of its update methods: methods of this class (``async def``, writing
    #: through :meth:`transact`) that the connector offers as
    #: ``connector.updates.<name>``
    updates: ClassVar[Sequence[str]] = ()
    #: the routing keys its events are published under (upstream's, protocol.md 8.1)
    events: ClassVar[Sequence[EventKey]] = ()

    def __init__(self) -> None:
        #: the data connector it is registered with (set by ``DataConnector.register``):
        #: update methods write through :meth:`transact`
        self.connector: Catalog | None = None
        self.field_map: dict[str, Field] = {f.name: f for f in self.fields}
        self.field_types: dict[str, t.FieldType] = {f.name: f.type for f in self.fields}
        #: (label, converter) of the fields whose database value is not already the JSON
        #: value, for :meth:`to_items`
        self._converters: list[tuple[str, Callable[[Any], Any]]] = [
            (f.name, f.type.from_db) for f in self.fields
            if f.sql is not None and _needs_conversion(f)]
        self._select: sa.Select[Any] | None = None
        self._private: list[str] = [col.name for col in self.extra_columns
                                    if col.name.startswith("_")]

    async def transact(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(write, *args, **kw)`` in one transaction of the data connector this
        type is registered with, then publish its events (see
        :meth:`buildbot_rest.data.connector.DataConnector.transact`): how an update
        method writes."""
        assert self.connector is not None, "not registered with a data connector"
        return await self.connector.transact(fn, *args, **kw)

    def routing_keys(self, entity: Mapping[str, Any], event: str) -> list[tuple[str, ...]]:
        """The routing keys of ``event`` (``"new"``, ``"finished"``...) about ``entity``,
        one per declared :class:`EventKey`."""
        return [key.routing_key(entity, event) for key in self.events]

    @property
    def entity_type(self) -> t.Entity:
        return t.Entity(self.entity_name or self.name, self.field_types)

    def from_clause(self) -> sa.FromClause:
        """The table or join that rows come from."""
        raise NotImplementedError

    def count_from_clause(self) -> sa.FromClause | None:
        """The from clause without the outer joins that cannot change the number of rows
        (each matches at most one row: on the joined table's primary key or a unique
        index), for faster counts; None when there are none."""
        full = self.from_clause()
        narrow = without_unique_outer_joins(full)
        return None if narrow is full else narrow

    def select(self) -> sa.Select[Any]:
        """The base statement: every SQL field labelled with its name, plus extras.
        (Built once: statements are immutable, each request derives its own.)"""
        if self._select is None:
            columns = [f.sql.label(f.name) for f in self.fields if f.sql is not None]
            self._select = sa.select(*columns, *self.extra_columns).select_from(
                self.from_clause())
        return self._select

    def to_items(self, keys: Sequence[str], rows: Iterable[Sequence[Any]]
                 ) -> list[dict[str, Any]]:
        """Entity dicts (computed fields missing) from result rows whose columns are
        labelled ``keys``; the few values that need it are converted."""
        items = [dict(zip(keys, row, strict=False)) for row in rows]
        for name, convert in self._converters:
            for item in items:
                item[name] = convert(item[name])
        return items

    def complete(self, conn: sa.Connection, items: list[dict[str, Any]],
                 spec: ResultSpec | None, ctx: Context) -> None:
        """Fill in the computed fields of ``items`` in place (batched, in the DB thread).
        ``spec`` is None when items are embedded in another entity."""

    def strip_private(self, items: list[dict[str, Any]]) -> None:
        """Drop the ``_``-labelled helper values (extra columns, and any a ``complete``
        hook added) from every item."""
        if not items:
            return
        private = set(self._private)
        private.update(k for k in items[0] if k.startswith("_"))
        for key in private:
            for item in items:
                item.pop(key, None)


def chunked(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    """Split ids into lists short enough for one ``IN (...)``."""
    return [values[i:i + size] for i in range(0, len(values), size)]
