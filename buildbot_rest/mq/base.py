# -*- test-case-name: tests.mq.test_simple -*-
"""What every message queue offers: publishing by routing key, and consumers that take
the messages whose keys match a filter.

A routing key is a tuple of strings, upstream's (protocol.md 8.1): ``("builds", "17",
"new")``. A filter is a tuple of the same length whose ``None`` elements match any
value: ``("builds", None, "new")`` (upstream's ``tuplematch``; there is no wildcard for
several elements). The interface is upstream's own (``produce``, ``startConsuming``
answering a Deferred consumer, ``consumer.stopConsuming()``), so that a backend whose
subscriptions take a round trip (WAMP) plugs in without changing its callers; the data
layer only calls :meth:`MessageQueue.produce`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from twisted.internet import defer

#: a routing key: ("builds", "17", "new")
RoutingKey = tuple[str, ...]
#: a routing key filter: None matches any element
KeyFilter = tuple[str | None, ...]
#: what a consumer is called with: the routing key and the message (shared by every
#: consumer of it: read it, never change it)
Callback = Callable[[RoutingKey, Mapping[str, Any]], None]


def matches(key_filter: Sequence[str | None], routing_key: Sequence[str]) -> bool:
    """Whether ``routing_key`` matches ``key_filter`` (same length; None is a wildcard)."""
    return len(key_filter) == len(routing_key) and all(
        want is None or want == got
        for want, got in zip(key_filter, routing_key, strict=True))


def check_key(routing_key: Any) -> RoutingKey:
    """``routing_key`` as a tuple; TypeError unless it is a sequence of strings."""
    if isinstance(routing_key, (str, bytes)) or not all(
            isinstance(p, str) for p in routing_key):
        raise TypeError(f"a routing key is a tuple of strings, not {routing_key!r}")
    return tuple(routing_key)


def check_filter(key_filter: Any) -> KeyFilter:
    """``key_filter`` as a tuple; TypeError unless its elements are strings or None."""
    if isinstance(key_filter, (str, bytes)) or not all(
            p is None or isinstance(p, str) for p in key_filter):
        raise TypeError(f"a routing key filter is a tuple of strings and None, "
                        f"not {key_filter!r}")
    return tuple(key_filter)


class Consumer(Protocol):
    """A subscription."""

    def stopConsuming(self) -> defer.Deferred[None] | None:
        """End the subscription (idempotent): no message is delivered once it returns."""


class MessageQueue(Protocol):
    """A message queue backend."""

    def produce(self, routing_key: RoutingKey, message: Mapping[str, Any]) -> None:
        """Publish ``message`` (JSON values) under ``routing_key`` to every matching
        consumer. Never raises for a consumer's failure; TypeError for a key that is
        not a tuple of strings."""

    def startConsuming(self, callback: Callback,  # upstream's name
                       key_filter: KeyFilter) -> defer.Deferred[Consumer]:
        """Call ``callback(routing_key, message)`` for each message published once the
        answer has fired whose key matches ``key_filter``, until the consumer is
        stopped."""
