# -*- test-case-name: tests.mq.test_simple -*-
"""What every message queue offers: publishing by routing key, and consumers that take
the messages whose keys match a filter.

A routing key is a tuple of strings, upstream's (protocol.md 8.1): ``("builds", "17",
"new")``. A filter is a tuple of the same length whose ``None`` elements match any
value: ``("builds", None, "new")``. Backends (in-process, WAMP) implement
:class:`MessageQueue`; the data layer only calls :meth:`MessageQueue.produce`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

#: a routing key: ("builds", "17", "new")
RoutingKey = tuple[str, ...]
#: a routing key filter: None matches any element
KeyFilter = tuple[str | None, ...]
#: what a consumer is called with
Callback = Callable[[RoutingKey, Mapping[str, Any]], None]


def matches(key_filter: Sequence[str | None], routing_key: Sequence[str]) -> bool:
    """Whether ``routing_key`` matches ``key_filter`` (same length; None is a wildcard)."""
    return len(key_filter) == len(routing_key) and all(
        want is None or want == got
        for want, got in zip(key_filter, routing_key, strict=True))


class Consumer(Protocol):
    """A subscription; :meth:`stop_consuming` ends it (idempotent)."""

    def stop_consuming(self) -> None: ...


class MessageQueue(Protocol):
    """A message queue backend."""

    def produce(self, routing_key: RoutingKey, message: Mapping[str, Any]) -> None:
        """Publish ``message`` under ``routing_key`` to every matching consumer. Never
        raises for a consumer's failure."""

    def start_consuming(self, callback: Callback, key_filter: KeyFilter) -> Consumer:
        """Call ``callback(routing_key, message)`` for each message published from now on
        whose key matches ``key_filter``, until the consumer is stopped."""
