# -*- test-case-name: tests.data.test_resources -*-
"""Endpoints: the path patterns of a resource type and how each is answered.

:class:`Endpoint` answers with code of its own; :class:`SQLEndpoint` is answered by the
result-spec engine from the resource type's declared SQL, and is the one kind that can
stream an unpaged collection in batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data.base import Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.errors import InvalidControl
from buildbot_rest.data.resultspec import ResultSpec


class Endpoint:
    """A set of path patterns served the same way.

    Subclasses answer a read in one of two ways: :meth:`get_in`, run in a database
    thread with the path's variables (one trip from the reactor), or :meth:`get` itself
    for an answer that needs no database. A collection answers ``(items, total)``, a
    single endpoint an entity dict (None when there is none), a raw one a
    :class:`~buildbot_rest.data.rawdata.RawData` (None when there is none).
    """

    kind: ClassVar[Kind] = Kind.COLLECTION
    patterns: ClassVar[Sequence[str]] = ()
    #: the path variables whose entities need not exist for this endpoint
    unchecked: ClassVar[frozenset[str]] = frozenset()
    #: the name given for ``rootlinks``
    root_link: ClassVar[str | None] = None

    def __init__(self, rtype: ResourceType) -> None:
        self.rtype = rtype

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        """The answer to a read: :meth:`get_in` in a database thread."""
        return await ctx.run(self.get_in, ctx, spec, kwargs)

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> Any:
        """The answer to a read, in a database thread on ``conn``."""
        raise NotImplementedError(f"{type(self).__name__} answers no read")

    def streams(self, spec: ResultSpec) -> bool:
        """Whether a read with ``spec`` is answered in batches (:meth:`batches_in`)."""
        return False

    def batches_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
                   kwargs: Mapping[str, Any], size: int) -> engine.Batches:
        """For an endpoint that :meth:`streams`: its collection read in batches of
        ``size`` items, in a database thread on ``conn``."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def control(self, ctx: Context, method: str, params: Mapping[str, Any],
                      kwargs: Mapping[str, Any]) -> Any:
        """Run the control action ``method`` (a JSON-RPC call on one of the patterns).

        An action must be declared in the resource type's ``actions`` and implemented
        here as ``action_<method>(ctx, params, kwargs)``; anything else is
        :class:`InvalidControl` (501). On a single endpoint, a missing entity is
        :class:`NotFound` before the action looks at ``params`` (the documented order:
        404 before 400); the action reads it again in its own transaction."""
        action = self.control_method(method)
        if self.kind is Kind.SINGLE and await self.get(ctx, ResultSpec(), kwargs) is None:
            # a missing entity is told before anything about the params (404, then 400)
            raise ctx.not_found()
        return await action(ctx, params, kwargs)

    def control_method(self, method: str) -> Any:
        """The method that runs action ``method`` (case-sensitive, COMPAT 8);
        :class:`InvalidControl` (501) if there is none."""
        handler = getattr(self, f"action_{method}", None)
        if method not in self.rtype.actions or handler is None:
            raise InvalidControl(method)
        return handler

    def entity_in(self, conn: sa.Connection, ctx: Context,
                  kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """For a single endpoint: the entity its path names, as a GET answers it, read
        on ``conn`` (in a write's transaction, for an action); NotFound if there is
        none. Every path form of the endpoint is resolved the same way as for a read."""
        entity = self.get_in(conn, ctx, ResultSpec(), kwargs)
        if entity is None:
            raise ctx.not_found()
        assert isinstance(entity, dict)
        return entity

    def describe(self) -> str:
        return ", ".join(self.patterns)


class SQLEndpoint(Endpoint):
    """An endpoint answered by the result-spec engine: the resource type's rows that
    :meth:`where_in` selects, filtered, sorted and paged by the spec in SQL.

    Subclasses give :meth:`where` (or :meth:`where_in` when the conditions need the
    database) and may change the spec with :meth:`prepare`. They must not override
    :meth:`get`, :meth:`get_in` or :meth:`batches_in`: the same conditions serve a whole
    answer and a streamed one."""

    #: the sort used when a request gives none (the key always breaks ties)
    default_order: ClassVar[tuple[str, ...]] = ()

    def where(self, ids: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
        """SQL conditions selecting this endpoint's rows for resolved path ids."""
        return []

    def where_in(self, conn: sa.Connection, ctx: Context, ids: Mapping[str, Any]
                 ) -> list[sa.ColumnElement[bool]] | None:
        """:meth:`where`, for conditions that need the database; None when no row can
        match (the answer is then empty without a query)."""
        return self.where(ids)

    def source(self, ids: Mapping[str, Any]) -> ResourceType:
        """The resource type whose SQL yields the rows (this endpoint's own by default)."""
        return self.rtype

    def prepare(self, spec: ResultSpec) -> tuple[ResultSpec, list[sa.ColumnElement[bool]]]:
        """The spec to run (never the caller's object changed) and extra conditions
        that stand for filters taken out of it."""
        if self.default_order and not spec.order:
            spec = dataclasses.replace(spec, order=list(self.default_order))
        return spec, []

    def _resolved(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
                  kwargs: Mapping[str, Any]
                  ) -> tuple[ResourceType, ResultSpec, list[sa.ColumnElement[bool]] | None]:
        ids = ctx.resolve_in(conn, kwargs, self.unchecked)
        spec, extra = self.prepare(spec)
        where = self.where_in(conn, ctx, ids)
        return self.source(ids), spec, None if where is None else where + extra

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> Any:
        rtype, spec, where = self._resolved(conn, ctx, spec, kwargs)
        if self.kind is Kind.COLLECTION:
            if where is None:
                return [], 0
            return engine.fetch_collection(conn, ctx, rtype, spec, where)
        if where is None:
            return None
        return engine.fetch_one(conn, ctx, rtype, spec, where)

    def streams(self, spec: ResultSpec) -> bool:
        if self.kind is not Kind.COLLECTION or spec.paged:
            return False
        return engine.streamable(self.rtype, self.prepare(spec)[0])

    def batches_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
                   kwargs: Mapping[str, Any], size: int) -> engine.Batches:
        rtype, spec, where = self._resolved(conn, ctx, spec, kwargs)
        return engine.Batches(conn, ctx, rtype, spec, [sa.false()] if where is None else where,
                              size)
