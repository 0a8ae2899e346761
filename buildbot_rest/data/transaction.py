# -*- test-case-name: tests.data.test_transaction -*-
"""One write of the data API: its connection, its time, and the events it publishes.

An update method or a control action writes through :meth:`DataConnector.transact
<buildbot_rest.data.connector.DataConnector.transact>`: it is handed a :class:`Write` in
a database thread, inside one transaction, and says what happened with :meth:`Write.emit`
(an entity event under every routing key its resource type declares) or
:meth:`Write.produce` (any other message). The events go out once the transaction has
committed, in order; a write that fails publishes nothing.

Messages are what a GET of the entity answers at that moment (upstream, protocol.md
8.1): :meth:`Write.entity` reads them with the same SQL as the read API, in the same
transaction.

The rules every update method shares live here too: a row that must exist
(:meth:`Write.require`, :meth:`Write.update`: NotFound in one style, :func:`no_row`), the
id of a new row (:meth:`Write.insert`), and finding a row or creating it when a
concurrent write may create it first (:meth:`Write.find_or_create`,
:meth:`Write.find_or_create_named`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data.errors import NotFound
from buildbot_rest.db.hashes import name_hash

if TYPE_CHECKING:
    from buildbot_rest.data.base import ResourceType
    from buildbot_rest.data.context import Context

#: an event to publish: (routing key, message)
Event = tuple[tuple[str, ...], Mapping[str, Any]]


def no_row(what: str, key: str, ident: Any) -> NotFound:
    """The NotFound of an update method's argument that names no row, in the one style
    they all use: ``no_row("build", "buildid", 7)``: ``no build with buildid 7``."""
    return NotFound(f"no {what} with {key} {ident}")


class Write:
    """One write transaction (see the module's text).

    ``conn`` is the connection, inside the transaction; ``now`` the time of the write
    in integer epoch seconds (the same for everything it stores, as upstream takes
    ``reactor.seconds()`` once per call); ``dialect`` the database's name (``sqlite``,
    ``postgresql``, ``mysql``)."""

    def __init__(self, conn: sa.Connection, ctx: Context, now: int) -> None:
        self.conn = conn
        self.ctx = ctx
        self.now = now
        self.dialect: str = conn.dialect.name
        self.events: list[Event] = []

    def rtype(self, name: str) -> ResourceType:
        """A resource type by name (``"build"``)."""
        rtype: ResourceType = self.ctx.connector.rtypes[name]
        return rtype

    def entity(self, rtype_name: str, key: Any) -> dict[str, Any] | None:
        """The entity of resource type ``rtype_name`` whose id (its ``<name>id`` field,
        ``buildid``; else the first of its ``key``) is ``key``, as a GET of it answers
        now; None if there is none."""
        rtype = self.rtype(rtype_name)
        field = rtype.field_map.get(f"{rtype.name}id") or rtype.field_map[rtype.key[0]]
        assert field.sql is not None, f"{rtype_name} has no key column"
        return engine.fetch_one(self.conn, self.ctx, rtype, None, [field.sql == key])

    def emit(self, rtype_name: str, event: str, entity: Mapping[str, Any]) -> None:
        """Publish ``event`` (``"new"``, ``"finished"``...) about ``entity`` under each
        routing key its resource type declares (in declaration order), with the entity
        as the message."""
        rtype = self.rtype(rtype_name)
        message = copy.deepcopy(dict(entity))
        for routing_key in rtype.routing_keys(message, event):
            self.events.append((routing_key, message))

    def emit_entity(self, rtype_name: str, event: str, key: Any) -> dict[str, Any]:
        """:meth:`entity` then :meth:`emit`; answers the entity. LookupError if it does
        not exist (a bug of the caller: it has just written it)."""
        entity = self.entity(rtype_name, key)
        if entity is None:
            raise LookupError(f"no {rtype_name} {key!r} to publish {event!r} about")
        self.emit(rtype_name, event, entity)
        return entity

    def produce(self, routing_key: tuple[str, ...], message: Mapping[str, Any]) -> None:
        """Publish any message (a control message, a partial entity) after the commit."""
        self.events.append((tuple(routing_key), message))

    def savepoint(self) -> sa.NestedTransaction:
        """A nested transaction, to try a statement that may violate a constraint (a
        unique name or number taken by a concurrent write) and go on after it: on
        PostgreSQL a failed statement otherwise spoils the whole transaction."""
        return self.conn.begin_nested()

    # -- rows -------------------------------------------------------------------------

    def insert(self, table: sa.Table, **values: Any) -> int:
        """Insert one row; answers the primary key the database gave it."""
        key = self.conn.execute(table.insert().values(**values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def require(self, table: sa.Table, ident: Any, what: str, key: str,
                *columns: sa.ColumnElement[Any], lock: bool = False,
                key_share: bool = False) -> sa.Row[Any]:
        """The row of ``table`` whose ``id`` is ``ident`` (its ``columns``; its id when
        none are named); NotFound ``no <what> with <key> <ident>`` (``no build with
        buildid 7``) if there is none. ``lock``: the row is locked until the end of the
        transaction (PostgreSQL, MySQL; SQLite writers take turns anyway), with
        ``key_share`` a lock that still lets other rows refer to it."""
        stmt = sa.select(*(columns or (table.c.id,))).where(table.c.id == ident)
        if lock:
            stmt = stmt.with_for_update(key_share=key_share)
        row = self.conn.execute(stmt).first()
        if row is None:
            raise no_row(what, key, ident)
        return row

    def update(self, table: sa.Table, ident: Any, what: str, key: str,
               **values: Any) -> None:
        """Store ``values`` in the row of ``table`` whose ``id`` is ``ident``; NotFound as
        :meth:`require` says it if there is none."""
        done = self.conn.execute(table.update().where(table.c.id == ident).values(**values))
        if done.rowcount == 0:
            raise no_row(what, key, ident)

    def find_or_create(self, table: sa.Table, where: Sequence[sa.ColumnElement[bool]],
                       values: Mapping[str, Any], *, create: bool = True,
                       id_column: sa.Column[Any] | None = None) -> tuple[int | None, bool]:
        """:func:`find_or_create` in this write's transaction."""
        return find_or_create(self.conn, table, where, values, create=create,
                              id_column=id_column)

    @overload
    def find_or_create_named(self, table: sa.Table, name: str, *,
                             where: Sequence[sa.ColumnElement[bool]] = (),
                             values: Mapping[str, Any] | None = None,
                             create: Literal[True] = True) -> int: ...

    @overload
    def find_or_create_named(self, table: sa.Table, name: str, *,
                             where: Sequence[sa.ColumnElement[bool]] = (),
                             values: Mapping[str, Any] | None = None,
                             create: bool) -> int | None: ...

    def find_or_create_named(self, table: sa.Table, name: str, *,
                             where: Sequence[sa.ColumnElement[bool]] = (),
                             values: Mapping[str, Any] | None = None,
                             create: bool = True) -> int | None:
        """:func:`find_or_create_named` in this write's transaction."""
        return find_or_create_named(self.conn, table, name, where=where, values=values,
                                    create=create)


def find_or_create(conn: sa.Connection, table: sa.Table,
                   where: Sequence[sa.ColumnElement[bool]], values: Mapping[str, Any], *,
                   create: bool = True,
                   id_column: sa.Column[Any] | None = None) -> tuple[int | None, bool]:
    """``(id, created)`` of the row of ``table`` that ``where`` selects; when there is
    none and ``create``, the row inserted with ``values`` (in a savepoint: see
    :meth:`Write.savepoint`). A concurrent write that inserts the same row first (a
    unique index refuses ours) is found instead, as upstream's ``findSomethingId`` does.
    ``(None, False)`` when there is none and not ``create``. ``id_column``: the primary
    key, when it is not ``id``."""
    key = id_column if id_column is not None else table.c.id
    select = sa.select(key).where(*where).order_by(key).limit(1)
    found = conn.execute(select).scalar()
    if found is not None or not create:
        return found, False
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**values))
            created = conn.execute(select).scalar()
    except sa.exc.IntegrityError:
        found = conn.execute(select).scalar()
        if found is None:
            raise
        return found, False
    assert created is not None
    return int(created), True


def find_or_create_named(conn: sa.Connection, table: sa.Table, name: str, *,
                         where: Sequence[sa.ColumnElement[bool]] = (),
                         values: Mapping[str, Any] | None = None,
                         create: bool = True) -> int | None:
    """The id of the row of ``table`` named ``name``, found as upstream finds it by its
    ``name_hash`` (and ``where``); when there is none and ``create``, the row inserted
    with the name, its hash and ``values`` (see :func:`find_or_create`). None when there
    is none and not ``create``."""
    digest = name_hash(name)
    found, _ = find_or_create(conn, table, [*where, table.c.name_hash == digest],
                              {"name": name, "name_hash": digest, **(values or {})},
                              create=create)
    return found
