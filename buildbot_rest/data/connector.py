# -*- test-case-name: tests.data.test_connector -*-
"""The data connector: every resource type, its endpoints, the path matcher, reads (whole
or in batches), update methods, and writes that publish their events after commit.

The top of ``data/``: the web layer talks to the data API through this module only."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from buildbot_rest.data.base import Kind, ResourceType
from buildbot_rest.data.context import Context, unavailable
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.errors import InvalidPath, InvalidQuery
from buildbot_rest.data.matcher import Matcher
from buildbot_rest.data.rawdata import RawData
from buildbot_rest.data.reads import (
    Collection,
    CollectionStream,
    Single,
    collection_pieces,
    drain,
    open_collection,
)
from buildbot_rest.data.resultspec import ResultSpec, parse
from buildbot_rest.data.transaction import Event, Write
from buildbot_rest.data.types import in_int_range
from buildbot_rest.data.updates import Updates
from buildbot_rest.db.pool import DatabaseUnavailable

if TYPE_CHECKING:
    from buildbot_rest.db import Database
    from buildbot_rest.mq.base import MessageQueue

T = TypeVar("T")

#: Resource modules in upstream's registration order, which is also the match priority.
MODULES = (
    "build_data", "builders", "builds", "buildrequests", "codebases", "codebase_commits",
    "codebase_branches", "workers", "steps", "logs", "logchunks", "buildsets", "changes",
    "changesources", "masters", "sourcestamps", "schedulers", "forceschedulers", "root",
    "projects", "properties", "test_results", "test_result_sets",
)

#: Singular spellings accepted as aliases of the plural collection names.
ALIASES = {
    "builder": "builders", "build": "builds", "buildrequest": "buildrequests",
    "buildset": "buildsets", "change": "changes", "changesource": "changesources",
    "master": "masters", "scheduler": "schedulers", "sourcestamp": "sourcestamps",
    "step": "steps", "log": "logs", "worker": "workers", "project": "projects",
    "codebase": "codebases", "forcescheduler": "forceschedulers",
    "test_result_set": "test_result_sets",
}

#: what :meth:`DataConnector.read` answers
Read = Collection | CollectionStream | Single | RawData


class DataConnector:
    """Owns the resource types and answers reads and writes of the data API.

    ``mq`` is the message queue events are published on (None: events are dropped, for
    tools that only read)."""

    def __init__(self, db: Database, *, config: Any = None, base_url: str = "/",
                 mq: MessageQueue | None = None,
                 modules: Iterable[str] = MODULES) -> None:
        self.db = db
        self.config = config
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.mq = mq
        #: the time of writes, in epoch seconds (tests may set another clock)
        self.clock: Callable[[], float] = time.time
        #: the id of the master this process is (a build master that embeds the server
        #: sets it once its ``masters`` row exists), for update methods that act as a
        #: master (claims); None: such writes use the server's own, inactive, masters row
        self.masterid: int | None = None
        self.rtypes: dict[str, ResourceType] = {}
        self.endpoints: list[Endpoint] = []
        self.matcher: Matcher[Endpoint] = Matcher()
        self.updates = Updates()
        for module_name in modules:
            module = importlib.import_module(f"buildbot_rest.data.resources.{module_name}")
            for rtype_class in module.RESOURCE_TYPES:
                self.register(rtype_class())

    def register(self, rtype: ResourceType) -> None:
        """Add a resource type: its endpoints' patterns and its update methods.

        ValueError if its name, one of its update methods or one of its patterns is
        already taken (then nothing is added)."""
        if rtype.name in self.rtypes:
            raise ValueError(f"resource type {rtype.name!r} is already registered")
        for name in rtype.updates:
            if name in self.updates.names():
                raise ValueError(f"update method {name!r} is already defined")
        self.rtypes[rtype.name] = rtype
        rtype.connector = self
        for endpoint_class in rtype.endpoints:
            endpoint = endpoint_class(rtype)
            self.endpoints.append(endpoint)
            for pattern in endpoint.patterns:
                self.matcher.add(pattern, endpoint)
        for name in rtype.updates:
            self.updates.register(name, getattr(rtype, name))

    # -- reads ------------------------------------------------------------------------

    def match(self, path: Sequence[str]) -> tuple[Endpoint, dict[str, Any]]:
        """The endpoint and variables for a path; raises InvalidPath (404)."""
        path = tuple(path)
        if path and path[0] in ALIASES:
            path = (ALIASES[path[0]], *path[1:])
        return self.matcher.match(path)

    def parse_spec(self, endpoint: Endpoint, args: Mapping[str, list[str]]) -> ResultSpec:
        """A query's arguments as a ResultSpec checked against the endpoint's fields;
        raises InvalidQuery (400)."""
        return parse(args, endpoint.rtype.field_types,
                     collection=endpoint.kind is Kind.COLLECTION)

    def context(self, endpoint: Endpoint | None = None,
                kwargs: Mapping[str, Any] | None = None, *,
                user: Mapping[str, Any] | None = None) -> Context:
        """The context of one call by ``user`` (anonymous if None)."""
        return Context(self, self.db, config=self.config, user=user, endpoint=endpoint,
                       kwargs=kwargs)

    async def read(self, ctx: Context, endpoint: Endpoint, spec: ResultSpec,
                   kwargs: dict[str, Any]) -> Read:
        """Answer a read. The one place that decides whether a collection streams: an
        unpaged collection that the engine can stream and that is longer than one batch
        comes as a :class:`CollectionStream`; a download's bytes come as a started
        stream in :attr:`RawData.stream`. Raises NotFound when there is no answer, and
        ServiceUnavailable (503) when the database cannot answer."""
        try:
            return await self._read(ctx, endpoint, spec, kwargs)
        except DatabaseUnavailable as e:
            raise unavailable(e) from e

    async def _read(self, ctx: Context, endpoint: Endpoint, spec: ResultSpec,
                    kwargs: dict[str, Any]) -> Read:
        if not ids_in_range(kwargs):
            # no row can have it, and SQL would refuse it as a parameter
            raise ctx.not_found()
        if endpoint.kind is Kind.COLLECTION and endpoint.streams(spec):
            stream = self.db.pool.stream(
                lambda conn: collection_pieces(conn, ctx, endpoint, spec, kwargs))
            return await open_collection(stream, endpoint.rtype)
        result = await endpoint.get(ctx, spec, kwargs)
        if result is None:
            raise ctx.not_found()
        if endpoint.kind is Kind.COLLECTION:
            items, total = result
            return Collection(items, total)
        if endpoint.kind is Kind.SINGLE:
            return Single(result)
        assert isinstance(result, RawData)
        if result.generate is not None:
            stream = self.db.pool.stream(result.generate)
            try:
                # a download that cannot start fails before anything is written
                await stream.first()
            except BaseException:
                await stream.close()
                raise
            result.stream = stream
        return result

    async def get(self, path: str | Sequence[str],
                  query: Mapping[str, str | Sequence[str]] | None = None,
                  *, user: Mapping[str, Any] | None = None) -> Any:
        """A read as plain values, for programs that embed the server: a collection as
        ``(items, total)`` (read whole), an entity as a dict, a download as bytes.

        ``path`` is relative to ``/api/v2`` (``"builders/1/builds"``), ``query`` the
        query arguments, each a string or a list of strings (``{"limit": "10",
        "order": ["-number"]}``). Raises the data API's errors; ServiceUnavailable when
        the database stops before the answer is complete."""
        parts = tuple(p for p in path.split("/") if p) if isinstance(path, str) else path
        if not all(isinstance(p, str) for p in parts):
            raise InvalidPath("/".join(map(str, parts)))
        endpoint, kwargs = self.match(parts)
        spec = self.parse_spec(endpoint, _arguments(query or {}))
        ctx = self.context(endpoint, kwargs, user=user)
        answer = await self.read(ctx, endpoint, spec, kwargs)
        if isinstance(answer, Collection):
            return answer.items, answer.total
        if isinstance(answer, CollectionStream):
            items = await answer.read_all()
            return items, answer.total if answer.total is not None else len(items)
        if isinstance(answer, Single):
            return answer.entity
        if answer.stream is None:
            return answer.body or b""
        return b"".join(await drain(answer.stream))

    # -- control ----------------------------------------------------------------------

    async def control(self, ctx: Context, endpoint: Endpoint, method: str,
                      params: Mapping[str, Any], kwargs: dict[str, Any]) -> Any:
        """Run control action ``method`` on a matched path (a JSON-RPC call): its result,
        a JSON value. Raises InvalidControl (501) for a method the endpoint does not
        have, NotFound for a path whose entity does not exist, InvalidParams (400) for
        unusable ``params``, ServiceUnavailable (503) when the database cannot answer."""
        try:
            if not ids_in_range(kwargs):
                endpoint.control_method(method)  # an unknown method is still a 501
                raise ctx.not_found()
            return await endpoint.control(ctx, method, params, kwargs)
        except DatabaseUnavailable as e:
            raise unavailable(e) from e

    def root_links(self) -> list[dict[str, str]]:
        return [{"name": e.root_link} for e in self.endpoints if e.root_link]

    # -- writes -----------------------------------------------------------------------

    async def write(self, fn: Callable[..., tuple[T, Iterable[Event]]], *args: Any,
                    **kw: Any) -> T:
        """Run ``fn(conn, *args, **kw)`` in one transaction in a database thread; it
        returns ``(result, events)``. Once the transaction has committed, each event
        ``(routing key, message)`` is published on the message queue, in order, and
        ``result`` is returned. Nothing is published when the write fails, and a write
        whose answer is not such a pair (or whose events cannot be listed) is rolled
        back with a TypeError.

        A transient error before the commit runs ``fn`` again; a failed commit is never
        re-run (see :meth:`buildbot_rest.db.pool.DBThreadPool.run_in_transaction_sync`)."""
        try:
            result, events = await self.db.pool.do_in_transaction(_checked_write, fn, args,
                                                                  kw)
        except DatabaseUnavailable as e:
            raise unavailable(e) from e
        if self.mq is not None:
            for routing_key, message in events:
                self.mq.produce(routing_key, message)
        return result

    async def transact(self, fn: Callable[..., T], *args: Any,
                       user: Mapping[str, Any] | None = None, **kw: Any) -> T:
        """Run ``fn(write, *args, **kw)`` with a :class:`~buildbot_rest.data.transaction.
        Write` in one transaction in a database thread; once committed, publish the
        events it collected, in order, and answer what ``fn`` returned. The data API's
        errors raised by ``fn`` (NotFound, InvalidParams...) roll the write back and
        reach the caller; ServiceUnavailable (503) when the database cannot answer.
        ``fn`` may run more than once (a transient error before the commit), so it must
        do nothing outside the transaction."""
        ctx = self.context(user=user)

        def run(conn: Any) -> tuple[T, list[Event]]:
            write = Write(conn, ctx, int(self.clock()))
            return fn(write, *args, **kw), write.events

        return await self.write(run)

    def produce(self, routing_key: tuple[str, ...], message: Mapping[str, Any]) -> None:
        """Publish a message at once (a control message that writes nothing)."""
        if self.mq is not None:
            self.mq.produce(routing_key, message)


def ids_in_range(kwargs: Mapping[str, Any]) -> bool:
    """Whether every number among a path's variables fits the database's integers
    (a larger id names nothing: 404, never a database error)."""
    return all(in_int_range(v) for v in kwargs.values()
               if isinstance(v, int) and not isinstance(v, bool))


def _arguments(query: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    """Query arguments as the parser takes them (lists of strings, as a URL gives)."""
    args: dict[str, list[str]] = {}
    for key, value in query.items():
        if not isinstance(key, str):
            raise InvalidQuery(f"invalid query parameter {key!r}: give its name as a string")
        values = [value] if isinstance(value, str) else value
        if (not isinstance(values, (list, tuple)) or not values
                or not all(isinstance(v, str) for v in values)):
            raise InvalidQuery(f"invalid value for {key}: give a string or a list of "
                               "strings")
        args[key] = list(values)
    return args


def _checked_write(conn: Any, fn: Callable[..., tuple[T, Iterable[Event]]],
                   args: tuple[Any, ...], kw: dict[str, Any]) -> tuple[T, list[Event]]:
    # In the transaction: a malformed answer rolls the write back instead of being
    # found out after the commit.
    answer = fn(conn, *args, **kw)
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise TypeError(f"a write must return (result, events), not {answer!r:.100}")
    result, events = answer
    if events is None or isinstance(events, (str, bytes, Mapping)):
        raise TypeError(f"a write's events must be (routing key, message) pairs, not "
                        f"{events!r:.100}")
    listed = []
    for event in events:
        if (not isinstance(event, tuple) or len(event) != 2
                or not isinstance(event[0], tuple)
                or not all(isinstance(part, str) for part in event[0])):
            raise TypeError(f"an event must be (routing key tuple of strings, message), "
                            f"not {event!r:.100}")
        listed.append(event)
    return result, listed
