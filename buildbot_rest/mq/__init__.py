"""The message queue: events published by the data API's writes, delivered to consumers
(/ws and /sse clients, other processes) by routing key."""

from buildbot_rest.mq.base import Consumer, MessageQueue, matches
from buildbot_rest.mq.live import Event, LiveEvents, Subscription, TooOld
from buildbot_rest.mq.simple import SimpleMQ

__all__ = ["Consumer", "Event", "LiveEvents", "MessageQueue", "SimpleMQ", "Subscription",
           "TooOld", "matches"]
