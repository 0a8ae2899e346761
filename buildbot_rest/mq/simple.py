# -*- test-case-name: tests.mq.test_simple -*-
"""The in-process message queue: delivery to the consumers of this process, in the
reactor thread, in order of publication."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from buildbot_rest.mq.base import Callback, KeyFilter, RoutingKey, matches

log = Logger()


class _SimpleConsumer:
    def __init__(self, mq: SimpleMQ, callback: Callback, key_filter: KeyFilter) -> None:
        self.mq = mq
        self.callback = callback
        self.key_filter = key_filter

    def stop_consuming(self) -> None:
        self.mq._consumers.discard(self)


class SimpleMQ(Service):
    """A :class:`~buildbot_rest.mq.base.MessageQueue` within one process.

    Call :meth:`produce` from the reactor thread. A consumer that raises is logged and
    the others still get the message. Stopping the service ends every subscription."""

    name = "mq"

    def __init__(self) -> None:
        self._consumers: set[_SimpleConsumer] = set()

    def produce(self, routing_key: RoutingKey, message: Mapping[str, Any]) -> None:
        key = tuple(routing_key)
        # a copy: a callback may start or stop consuming
        for consumer in list(self._consumers):
            if consumer in self._consumers and matches(consumer.key_filter, key):
                try:
                    consumer.callback(key, message)
                except Exception:  # noqa: BLE001 - one consumer must not stop the rest
                    log.failure("a consumer of {key} failed", key="/".join(key))

    def start_consuming(self, callback: Callback, key_filter: KeyFilter) -> _SimpleConsumer:
        consumer = _SimpleConsumer(self, callback, tuple(key_filter))
        self._consumers.add(consumer)
        return consumer

    def stopService(self) -> None:
        self._consumers.clear()
        super().stopService()
