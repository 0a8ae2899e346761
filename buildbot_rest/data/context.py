# -*- test-case-name: tests.data.test_connector -*-
"""The context of one data API call: the database, the configuration and the user.

At the bottom of ``data/``: it imports no other part of the data layer but the path
resolver and the errors, and knows the connector only through :class:`Catalog`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa

from buildbot_rest.data.errors import NotFound, ServiceUnavailable
from buildbot_rest.data.matcher import Matcher
from buildbot_rest.data.resolve import Missing, resolve
from buildbot_rest.db.pool import DatabaseUnavailable

if TYPE_CHECKING:
    from buildbot_rest.db import Database

T = TypeVar("T")

#: the seconds a client is told to wait (``Retry-After``) when the database is
#: unavailable: about the time a restarted database server takes to accept connections
RETRY_AFTER = 5


def unavailable(error: DatabaseUnavailable) -> ServiceUnavailable:
    """The data API's 503 for a database that cannot answer now."""
    return ServiceUnavailable(str(error), retry_after=RETRY_AFTER)


#: who makes an anonymous call (upstream's ``{"anonymous": true}`` user info)
ANONYMOUS: Mapping[str, Any] = {"anonymous": True}


class Catalog(Protocol):
    """What a call may look up in the data connector."""

    base_url: str
    #: the master this process is, or None (see DataConnector.masterid)
    masterid: int | None

    @property
    def rtypes(self) -> Mapping[str, Any]:
        """Resource types by name (``"build"``, ``"sourcestamp"``...)."""

    @property
    def matcher(self) -> Matcher[Any]:
        """The path matcher."""

    def root_links(self) -> list[dict[str, str]]: ...

    async def write(self, fn: Callable[..., tuple[T, Iterable[Any]]], *args: Any,
                    **kw: Any) -> T:
        """Run a write in one transaction, then publish its events (see
        :meth:`buildbot_rest.data.connector.DataConnector.write`)."""

    async def transact(self, fn: Callable[..., T], *args: Any,
                       user: Mapping[str, Any] | None = None, **kw: Any) -> T:
        """Run ``fn(write, *args)`` in one transaction, then publish its events (see
        :meth:`buildbot_rest.data.connector.DataConnector.transact`)."""

    def produce(self, routing_key: tuple[str, ...], message: Mapping[str, Any]) -> None:
        """Publish a message now."""


class Described(Protocol):
    """An endpoint, as far as an error message needs it."""

    def describe(self) -> str: ...


class Context:
    """Everything an endpoint needs for one call. Endpoints never touch HTTP.

    ``user`` is the caller's user info as the auth layer found it (anonymous when not
    given); ``endpoint`` and ``kwargs`` are the matched endpoint and path variables."""

    def __init__(self, connector: Catalog, db: Database, *, config: Any = None,
                 user: Mapping[str, Any] | None = None, endpoint: Described | None = None,
                 kwargs: Mapping[str, Any] | None = None) -> None:
        self.connector = connector
        self.db = db
        self.config = config
        self.user: Mapping[str, Any] = user if user is not None else ANONYMOUS
        self.endpoint = endpoint
        self.kwargs: Mapping[str, Any] = kwargs or {}

    @property
    def base_url(self) -> str:
        return self.connector.base_url

    def not_found(self) -> NotFound:
        where = self.endpoint.describe() if self.endpoint else "?"
        return NotFound(f"not found while getting from endpoint for {where} "
                        f"with arguments {dict(self.kwargs)!r}")

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(conn, *args, **kw)`` in a database thread (a read); ServiceUnavailable
        (503) when the database cannot answer."""
        try:
            return await self.db.pool.do(fn, *args, **kw)
        except DatabaseUnavailable as e:
            raise unavailable(e) from e

    def resolve_in(self, conn: sa.Connection, kwargs: Mapping[str, Any],
                   unchecked: Iterable[str] = ()) -> dict[str, Any]:
        """Path variables turned into ids on ``conn`` (see
        :func:`buildbot_rest.data.resolve.resolve`); :class:`NotFound` for a missing
        entity."""
        if not kwargs:
            return {}
        try:
            return resolve(conn, dict(kwargs), unchecked)
        except Missing:
            raise self.not_found() from None
