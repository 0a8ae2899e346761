# -*- test-case-name: tests.mq.test_live -*-
"""Live events for clients: every message of the queue, numbered, with a window of the
latest ones for clients that come back (/ws ``since``, /sse ``Last-Event-ID``).

Upstream's /ws and /sse subscribe each client to the message queue directly, so a client
whose connection drops loses what was published meanwhile. Here one :class:`LiveEvents`
consumes every message of the queue once, gives it the next sequence number and keeps the
latest ``window`` of them; clients subscribe to it, and one that names the last number it
saw is first given the events it missed (or told that they are gone: :class:`TooOld`).

Sequence numbers grow by one per event. The first one of a server is the microseconds
since the epoch at its start, so the numbers of a restarted server are larger than any
its predecessor gave (at less than a million events per second) and a number from before
a restart is never taken for one of now: it is either :class:`TooOld` or unknown."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from buildbot_rest.mq.base import Consumer, KeyFilter, MessageQueue, RoutingKey, matches

log = Logger()

#: the longest routing key consumed (upstream's longest has 7 elements:
#: ``buildsets/1/builders/2/buildrequests/3/new``)
MAX_KEY_LENGTH = 16


class Event:
    """One message of the queue, numbered: ``seq`` (int), ``key`` (a routing key) and
    ``message`` (JSON values, shared: never change it). The encodings clients are sent
    are made once, whatever the number of clients."""

    __slots__ = ("_encoded", "key", "message", "seq")

    def __init__(self, seq: int, key: RoutingKey, message: Mapping[str, Any]) -> None:
        self.seq = seq
        self.key = key
        self.message = message
        self._encoded: dict[str, Any] = {}

    def encoded(self, form: str, encode: Callable[[Event], Any]) -> Any:
        """``encode(self)``, computed once per ``form`` name (a /ws frame, an /sse
        record) and kept with the event."""
        try:
            return self._encoded[form]
        except KeyError:
            value = self._encoded[form] = encode(self)
            return value

    def ws_frame(self) -> bytes:
        """The /ws text frame's payload: upstream's ``{"k": "builds/1/new", "m": {...}}``
        plus this server's ``"s"``, the sequence number (compact JSON, UTF-8)."""
        return self.encoded("ws", _ws_frame)

    def __repr__(self) -> str:
        return f"<Event {self.seq} {'/'.join(self.key)}>"


def _ws_frame(event: Event) -> bytes:
    return orjson.dumps({"k": "/".join(event.key), "m": event.message, "s": event.seq},
                        option=orjson.OPT_NON_STR_KEYS)


class TooOld(Exception):
    """The events after the number a client resumes from are no longer all kept (or the
    number is not one of this server's): it must read the state again. ``oldest`` is
    the number of the oldest event kept, ``last`` that of the latest one given."""

    def __init__(self, since: int, oldest: int, last: int) -> None:
        super().__init__(f"events after {since} are no longer available (kept: "
                         f"{oldest} to {last}); read the state again and subscribe "
                         f"without 'since'")
        self.since = since
        self.oldest = oldest
        self.last = last


#: a client's test of each event it may receive, ``accept(routing key, message)`` (the
#: auth service's ``event_filter``: view rules)
Accept = Callable[[RoutingKey, Mapping[str, Any]], bool]


class Subscription:
    """A client's subscription to :class:`LiveEvents`: ``callback(event)`` for each event
    whose key matches ``key_filter`` (and that ``accept`` accepts, when given), until
    :meth:`stop`."""

    __slots__ = ("_live", "accept", "callback", "key_filter")

    def __init__(self, live: LiveEvents, callback: Callable[[Event], None],
                 key_filter: KeyFilter, accept: Accept | None = None) -> None:
        self._live = live
        self.callback = callback
        self.key_filter = key_filter
        self.accept = accept

    def stop(self) -> None:
        """End it (idempotent): no event is given once this returns."""
        self._live._unsubscribe(self)


class _Group:
    """The subscriptions to one filter: an event is matched once for all of them (most
    clients subscribe to the same few paths)."""

    __slots__ = ("_members", "_snapshot")

    def __init__(self) -> None:
        # (a dict as an ordered set: given in order of subscription)
        self._members: dict[Subscription, None] = {}
        self._snapshot: tuple[Subscription, ...] | None = ()

    def add(self, subscription: Subscription) -> None:
        self._members[subscription] = None
        self._snapshot = None

    def discard(self, subscription: Subscription) -> bool:
        """Remove ``subscription``; whether the group is empty now."""
        if self._members.pop(subscription, False) is None:
            self._snapshot = None
        return not self._members

    def members(self) -> tuple[Subscription, ...]:
        """The subscriptions now (a copy: a callback may subscribe or unsubscribe)."""
        if self._snapshot is None:
            self._snapshot = tuple(self._members)
        return self._snapshot

    def __contains__(self, subscription: Subscription) -> bool:
        return subscription in self._members


class LiveEvents(Service):
    """Numbers every message of ``mq`` and hands them to subscribers, keeping the
    latest ``window`` events for subscribers that resume.

    Events are given in the reactor thread, in the order the queue delivers them (to the
    subscribers of one filter in the order they subscribed). A
    subscriber's callback must not raise (one that does is logged and the others still
    get the event). The connections of live clients register with :meth:`register` so
    that a stop closes them first (:meth:`close_clients`)."""

    name = "live"

    def __init__(self, mq: MessageQueue, *, window: int, clock: Callable[[], float] =
                 time.time) -> None:
        self.mq = mq
        self.window = window
        self._events: deque[Event] = deque(maxlen=window or 1)
        #: the number the next event gets
        self._next = int(clock() * 1_000_000)
        # the subscriptions, by filter in a trie per filter length: each level maps an
        # element (None: the wildcard) to the next level, the last one to the group of
        # the filter's subscriptions. An event follows its own elements and the
        # wildcards: the cost does not grow with the number of filters that do not
        # match it (a client may subscribe to many).
        self._index: dict[int, dict[Any, Any]] = {}
        self._consumers: list[Consumer] = []
        #: the live connections (each with a ``close_live(code, reason)``)
        self._clients: dict[Any, None] = {}
        self._waiters: list[defer.Deferred[bool]] = []
        #: callables given every event, whatever its key (see :meth:`_observe`)
        self._observers: list[Callable[[RoutingKey, Mapping[str, Any]], None]] = []

    # -- the queue ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if not self._consumers:
            # every key of every length: the queue's filters have no multi-element wildcard
            for length in range(1, MAX_KEY_LENGTH + 1):
                self.mq.startConsuming(self._received, (None,) * length).addCallback(
                    self._consumers.append)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.close_clients(1001, "server stopping")
        consumers, self._consumers = self._consumers, []
        return defer.gatherResults(
            [defer.maybeDeferred(c.stopConsuming) for c in consumers]).addCallback(
                lambda _: None)

    def _received(self, key: RoutingKey, message: Mapping[str, Any]) -> None:
        event = Event(self._next, key, message)
        self._next += 1
        if self.window:
            self._events.append(event)
        for observe in self._observers:
            try:
                observe(key, message)
            except Exception:  # noqa: BLE001 - the event still goes to the clients
                log.failure("an observer of the live events failed on {key}",
                            key="/".join(key))
        for group in self._groups(key):
            for subscription in group.members():
                if subscription not in group:
                    continue  # (stopped by an earlier callback of this event)
                try:
                    accept = subscription.accept
                    if accept is not None and not accept(key, message):
                        continue  # (the client may not see it: the event stays shared)
                    subscription.callback(event)
                except Exception:  # noqa: BLE001 - one client must not stop the rest
                    log.failure("a live client of {key} failed", key="/".join(key))

    # -- subscribers ----------------------------------------------------------------------

    @property
    def last(self) -> int:
        """The number of the latest event (one less than the first one's before any)."""
        return self._next - 1

    def subscribe(self, callback: Callable[[Event], None], key_filter: KeyFilter, *,
                  since: int | None = None, accept: Accept | None = None) -> Subscription:
        """Subscribe ``callback`` to the events whose key matches ``key_filter`` and
        that ``accept`` (when given: the client's event filter) accepts.

        With ``since``, the kept events numbered above it that match are given first,
        before this returns, in order; TooOld (and no subscription) when events after
        ``since`` are missing from the window, or ``since`` is not a number this server
        gave (larger than :attr:`last`, or from before the server started and older than
        the window)."""
        self._observe(accept)
        missed: list[Event] = []
        if since is not None:
            missed = list(self.missed(key_filter, since, accept=accept))
        subscription = Subscription(self, callback, tuple(key_filter), accept)
        if key_filter:
            node = self._index.setdefault(len(key_filter), {})
            for element in key_filter[:-1]:
                node = node.setdefault(element, {})
            group = node.get(key_filter[-1])
            if group is None:
                group = node[key_filter[-1]] = _Group()
            group.add(subscription)
        for event in missed:
            callback(event)
        return subscription

    def _groups(self, key: RoutingKey) -> list[_Group]:
        """The groups of the filters that match ``key``."""
        root = self._index.get(len(key))
        if root is None or not key:
            return []
        nodes: list[dict[Any, Any]] = [root]
        for element in key[:-1]:
            nodes = [child for node in nodes
                     for child in (node.get(element), node.get(None)) if child is not None]
            if not nodes:
                return []
        return [group for node in nodes
                for group in (node.get(key[-1]), node.get(None)) if group is not None]

    def _unsubscribe(self, subscription: Subscription) -> None:
        key_filter = subscription.key_filter
        node = self._index.get(len(key_filter))
        if node is None or not key_filter:
            return
        path: list[tuple[dict[Any, Any], Any]] = []
        for element in key_filter[:-1]:
            path.append((node, element))
            node = node.get(element)
            if node is None:
                return
        group = node.get(key_filter[-1])
        if group is None or not group.discard(subscription):
            return
        # the group is empty: drop it, and the levels it leaves empty
        del node[key_filter[-1]]
        for parent, element in reversed(path):
            if parent[element]:
                return
            del parent[element]
        if not self._index[len(key_filter)]:
            del self._index[len(key_filter)]

    def missed(self, key_filter: KeyFilter, since: int, *,
               accept: Accept | None = None) -> Iterator[Event]:
        """The kept events numbered above ``since`` that match ``key_filter`` (and that
        ``accept`` accepts, when given); TooOld (see :meth:`subscribe`) before any when
        they are not all kept."""
        self._observe(accept)
        oldest = self._events[0].seq if self._events else self._next
        # (the kept events are numbered oldest..last without a gap)
        if not oldest - 1 <= since <= self.last:
            raise TooOld(since, oldest, self.last)
        events = itertools.islice(self._events, since - oldest + 1, None)
        return (e for e in events if matches(key_filter, e.key)
                and (accept is None or accept(e.key, e.message)))

    def _observe(self, accept: Accept | None) -> None:
        """When an ``accept`` has an ``observe(routing key, message)`` (the view rules'
        filter: it learns which builder each build, step and log belongs to), give it
        every event from now on, whatever the client subscribed to, and at once the
        events kept: a filter that only saw the events of its own client's filters would
        not know the build of a step whose build's events that client did not take, and
        would hide it (events of builders the client may see lost, live or resumed)."""
        observe = getattr(accept, "observe", None)
        if observe is None or observe in self._observers:
            return
        for event in list(self._events):
            observe(event.key, event.message)
        self._observers.append(observe)

    # -- clients --------------------------------------------------------------------------

    def register(self, client: Any) -> None:
        """Note a live connection (it has ``close_live(code: int, reason: str)``), so
        that a stop closes it."""
        self._clients[client] = None

    def unregister(self, client: Any) -> None:
        self._clients.pop(client, None)
        if not self._clients:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(True)

    def closed(self, reactor: Any, timeout: float) -> defer.Deferred[bool]:
        """Fires with True once no live connection is open (after
        :meth:`close_clients`: once every one has closed), or False after ``timeout``
        seconds."""
        if not self._clients:
            return defer.succeed(True)
        waiter: defer.Deferred[bool] = defer.Deferred()
        self._waiters.append(waiter)
        waiter.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: False)
        return waiter

    @property
    def clients(self) -> int:
        """How many live connections are open."""
        return len(self._clients)

    def close_clients(self, code: int, reason: str) -> None:
        """Close every live connection (a stop: /ws close ``code`` and ``reason``)."""
        for client in list(self._clients):
            try:
                client.close_live(code, reason)
            except Exception:  # noqa: BLE001 - the others are closed all the same
                log.failure("cannot close a live connection")
