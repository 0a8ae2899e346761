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
transaction."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from buildbot_rest.data import engine

if TYPE_CHECKING:
    from buildbot_rest.data.base import ResourceType
    from buildbot_rest.data.context import Context

#: an event to publish: (routing key, message)
Event = tuple[tuple[str, ...], Mapping[str, Any]]


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
