# -*- test-case-name: tests.data.test_engine -*-
"""The context of one data API call: the database, the configuration and the user."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from buildbot_rest.data import engine
from buildbot_rest.data.errors import NotFound
from buildbot_rest.data.resolve import Missing, resolve

if TYPE_CHECKING:
    from buildbot_rest.data.base import Endpoint, ResourceType
    from buildbot_rest.data.connector import DataConnector
    from buildbot_rest.data.resultspec import ResultSpec

T = TypeVar("T")


class Context:
    """Everything an endpoint needs for one call. Endpoints never touch HTTP."""

    def __init__(self, connector: DataConnector, *, user: dict[str, Any] | None = None,
                 endpoint: Endpoint | None = None, kwargs: dict[str, Any] | None = None
                 ) -> None:
        self.connector = connector
        self.db = connector.db
        self.config = connector.config
        self.user = user if user is not None else {"anonymous": True}
        self.endpoint = endpoint
        self.kwargs = kwargs or {}

    @property
    def base_url(self) -> str:
        return self.connector.base_url

    def not_found(self) -> NotFound:
        where = self.endpoint.describe() if self.endpoint else "?"
        return NotFound(f"not found while getting from endpoint for {where} "
                        f"with arguments {self.kwargs!r}")

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(conn, *args, **kw)`` in a database thread."""
        return await self.db.pool.do(fn, *args, **kw)

    async def resolve(self, kwargs: dict[str, Any],
                      unchecked: Iterable[str] = ()) -> dict[str, Any]:
        if not kwargs:
            return {}  # nothing to look up: no trip to a database thread
        return await self.run(self.resolve_in, kwargs, tuple(unchecked))

    def resolve_in(self, conn: sa.Connection, kwargs: dict[str, Any],
                   unchecked: Iterable[str] = ()) -> dict[str, Any]:
        """:meth:`resolve` on a connection in a database thread, so that an endpoint can
        resolve its path and read its rows in one trip."""
        if not kwargs:
            return {}
        try:
            return resolve(conn, kwargs, unchecked)
        except Missing:
            raise self.not_found() from None

    async def fetch_collection(self, rtype: ResourceType, spec: ResultSpec,
                               where: Sequence[Any], base: sa.Select[Any] | None = None
                               ) -> tuple[list[dict[str, Any]], int]:
        return await self.run(engine.fetch_collection, self, rtype, spec, where, base)
