# -*- test-case-name: tests.mq.test_simple -*-
"""The in-process message queue: delivery to the consumers of this process, in the
reactor thread, in order of publication (a message published by a consumer while it is
being called is delivered after the current one), to consumers in the order they
subscribed."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from buildbot_rest.mq.base import (
    Callback,
    Consumer,
    KeyFilter,
    RoutingKey,
    check_filter,
    check_key,
    matches,
)

log = Logger()


class SimpleConsumer:
    """A subscription to a :class:`SimpleMQ`."""

    def __init__(self, mq: SimpleMQ, callback: Callback, key_filter: KeyFilter) -> None:
        self.mq = mq
        self.callback = callback
        self.key_filter = key_filter

    def stopConsuming(self) -> None:
        self.mq._consumers.pop(self, None)


class SimpleMQ(Service):
    """A :class:`~buildbot_rest.mq.base.MessageQueue` within one process.

    Call :meth:`produce` from the reactor thread. A consumer that raises is logged and
    the others still get the message. Stopping the service ends every subscription."""

    name = "mq"

    def __init__(self) -> None:
        # a dict as an ordered set: delivery in order of subscription
        self._consumers: dict[SimpleConsumer, None] = {}
        self._queue: collections.deque[tuple[RoutingKey, Mapping[str, Any]]] = (
            collections.deque())
        self._delivering = False

    def produce(self, routing_key: RoutingKey, message: Mapping[str, Any]) -> None:
        self._queue.append((check_key(routing_key), message))
        if self._delivering:
            return  # a consumer publishes: delivered once the current message is
        self._delivering = True
        try:
            while self._queue:
                self._deliver(*self._queue.popleft())
        finally:
            self._delivering = False

    def _deliver(self, key: RoutingKey, message: Mapping[str, Any]) -> None:
        # a copy: a callback may start or stop consuming
        for consumer in list(self._consumers):
            if consumer in self._consumers and matches(consumer.key_filter, key):
                try:
                    consumer.callback(key, message)
                except Exception:  # noqa: BLE001 - one consumer must not stop the rest
                    log.failure("a consumer of {key} failed", key="/".join(key))

    def consume(self, callback: Callback, key_filter: KeyFilter) -> SimpleConsumer:
        """:meth:`startConsuming` without the Deferred: subscribed when it returns."""
        consumer = SimpleConsumer(self, callback, check_filter(key_filter))
        self._consumers[consumer] = None
        return consumer

    def startConsuming(self, callback: Callback,  # upstream's name
                       key_filter: KeyFilter) -> defer.Deferred[Consumer]:
        return defer.succeed(self.consume(callback, key_filter))

    def stopService(self) -> None:
        self._consumers.clear()
        super().stopService()
