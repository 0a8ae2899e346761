# -*- test-case-name: tests.www.test_sse -*-
"""Live events as Server-Sent Events: upstream's ``/sse`` (protocol.md 8.3), authorized
like ``/ws`` (COMPAT 19) and resumable with ``Last-Event-ID``.

URL forms, below ``/sse`` (a trailing ``/`` stripped, each element percent-decoded):

- ``/sse``, ``/sse/listen``: a stream with no subscription yet;
- ``/sse/listen/<path...>``, ``/sse/<path...>`` (the first element not ``listen``,
  ``add`` or ``remove``): a stream subscribed to ``<path>`` (``*`` matches any one
  element, and a path only matches keys of its own length, as on ``/ws``);
- ``/sse/add/<uuid>/<path...>``, ``/sse/remove/<uuid>/<path...>``: subscribe the open
  stream ``<uuid>`` (its handshake's data) to ``<path>``, or end that subscription.

A stream is ``text/event-stream``: ``event: handshake`` with the stream's uuid as data,
then one record per event, ``id: <seq>``, ``event: event`` and ``data: {"key": [...],
"message": {...}}`` (upstream's, plus the ``id`` line), and a ``: keepalive`` comment
every ``ping_interval`` seconds. Add and remove answer ``ok`` in ``text/plain`` as
upstream; their errors, and every other error, are JSON ``{"error": ...}`` with
upstream's status and text (COMPAT 4 and 6), not upstream's text followed by an HTML
page (COMPAT 19). Query parameters are ignored (upstream's 500, COMPAT 4)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.auth.service import AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.data.errors import ApiError, BadRequest, Forbidden, NotFound
from buildbot_rest.mq.base import KeyFilter
from buildbot_rest.mq.live import Event, LiveEvents, Subscription, TooOld
from buildbot_rest.www.encoding import JSON_TYPE
from buildbot_rest.www.headers import set_status
from buildbot_rest.www.live import (
    MAX_SUBSCRIPTIONS,
    Backlog,
    CredentialsWatch,
    LiveResource,
    key_filter,
)
from buildbot_rest.www.rest import decode_path, error_body, error_headers

log = Logger()

STREAM_TYPE = b"text/event-stream"
#: the content type of the ``ok`` of add and remove (upstream's)
TEXT_TYPE = b"text/plain; charset=utf-8"
KEEPALIVE = b": keepalive\n\n"
#: what ``Last-Event-ID`` may hold: an event's number (plain decimal digits, COMPAT 5;
#: this server's have 16)
_SEQ = re.compile(rb"[0-9]{1,30}")


class Gone(ApiError):
    """The events after a ``Last-Event-ID`` are no longer kept: read the state again."""

    status = 410


def _record(event: Event) -> bytes:
    """An event's SSE record: upstream's data (``json.dumps`` with its default
    separators, the key as a list of strings) after this server's ``id`` line."""
    data = json.dumps({"key": list(event.key), "message": event.message})
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event.seq, data.encode())


def _identity(user: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells two callers apart: the stream's owner and whoever adds to it."""
    return (bool(user.get("anonymous")), user.get("username"), user.get("email"))


class _Stream:
    """One open stream: its request, its subscriptions (by filter) and what it has yet
    to send (a :class:`Backlog` of ``live_buffer`` bytes, the request's producer)."""

    def __init__(self, resource: SseResource, request: Request, caller: Caller) -> None:
        self._resource = resource
        self.request = request
        #: who opened the stream (only they may add to it or remove from it)
        self.caller = caller
        #: which events it may receive (view rules), None: all
        self.accept = resource.event_filter(caller)
        self.owner = _identity(caller.user)
        self.uuid = str(uuid.uuid4())
        self.subscriptions: dict[KeyFilter, Subscription] = {}
        self.backlog = Backlog(self._write, resource.config.live_buffer, self._overflow,
                               resource.flusher)
        #: the records given before the handshake is written (a resume's missed events)
        self._early: list[bytes] | None = []
        self._ping: task.LoopingCall | None = None
        #: ends the stream when its token or session stops being valid
        self._watch = CredentialsWatch(resource, caller, self.close_live)
        self.ended = False

    def deliver(self, event: Event) -> None:
        """A live subscription's callback: the event's record, encoded once for all."""
        record: bytes = event.encoded("sse", _record)
        if self._early is not None:
            self._early.append(record)
        else:
            self.backlog.send(record)

    def start(self) -> None:
        """Answer 200 and write the handshake, then the records given so far."""
        request = self.request
        request.notifyFinish().addBoth(self._ended)
        request.setResponseCode(200)
        request.setHeader(b"content-type", STREAM_TYPE)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")  # (nginx: pass each record at once)
        request.registerProducer(self.backlog, True)
        early, self._early = self._early or [], None
        for record in [b"event: handshake\ndata: %s\n\n" % self.uuid.encode(), *early]:
            self.backlog.send(record)
        self._watch.start()
        interval = self._resource.config.ping_interval
        if interval:
            self._ping = task.LoopingCall(self._keepalive)
            self._ping.clock = self._resource.reactor
            self._ping.start(interval, now=False)

    def _write(self, data: bytes) -> None:
        if not self.ended:
            self.request.write(data)

    def _keepalive(self) -> None:
        # (a stream whose client lags behind has bytes on their way: no comment needed)
        if not self.backlog.paused:
            self.backlog.send(KEEPALIVE)

    def _overflow(self, waiting: int) -> None:
        peer = self.request.getClientAddress()
        log.info("dropped the /sse stream of {peer}: {n} bytes of events unread, more "
                 "than live_buffer", peer=f"{getattr(peer, 'host', peer)}:"
                 f"{getattr(peer, 'port', '')}", n=waiting)
        self._stop()
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def _stop(self) -> None:
        """Take no more events: end every subscription and the keepalive."""
        self._watch.stop()
        self.backlog.close()
        for subscription in self.subscriptions.values():
            subscription.stop()
        self.subscriptions.clear()
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        self._ping = None

    def _ended(self, _result: Any) -> None:
        # the client went away, or close_live finished the answer
        self._stop()
        self.ended = True
        self._resource.forget(self)

    def close_live(self, code: int, reason: str) -> None:
        """End the stream (the server stops): its answer ends, the connection stays
        usable. ``code`` and ``reason`` are /ws's; an SSE stream has no place for them."""
        if self.ended or self.request.finished:
            return
        self._stop()
        self.request.unregisterProducer()
        self.request.finish()


class SseResource(LiveResource):
    """``/sse`` (see the module's docstring). ``live`` is None on a server without a
    message queue: every URL is then a 404. ``auth`` (None: everyone anonymous, allowed
    everything) tells who makes a request; an :class:`AuthService` also says which
    subscriptions each user may have (``may_subscribe``: else 403, COMPAT 19)."""

    def __init__(self, live: LiveEvents | None, *, auth: AuthService | None, config: Config,
                 reactor: Any) -> None:
        super().__init__(live, auth=auth, config=config, reactor=reactor)
        #: the open streams, by uuid
        self.streams: dict[str, _Stream] = {}

    def render(self, request: Request) -> int:
        d = defer.ensureDeferred(self._answer(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _answer(self, request: Request) -> None:
        try:
            caller = await self.caller(request)
            body = self._render(request, caller)
        except ApiError as e:
            set_status(request, e.status)
            request.setHeader(b"content-type", JSON_TYPE)
            for name, value in (error_headers(e) or {}).items():
                request.setHeader(name, value)
            body = error_body(e.message)
        if body is NOT_DONE_YET or request._disconnected:
            return
        assert isinstance(body, bytes)
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()

    @staticmethod
    def _failed(failure: Any, request: Request) -> None:
        log.failure("answering {uri}", failure, uri=request.uri)
        if not request._disconnected and not request.finished:
            if request.startedWriting:
                request.finish()
                return
            request.setResponseCode(500)
            request.setHeader(b"content-type", JSON_TYPE)
            request.write(error_body("internal error - see logs"))
            request.finish()

    def _render(self, request: Request, caller: Caller) -> bytes | int:
        if self.live is None:
            raise NotFound("no live events here: this server has no message queue")
        segments = list(request.postpath or [])
        if segments and segments[-1] == b"":
            segments.pop()
        path = list(decode_path(request, segments))
        command = path.pop(0) if path and path[0] in ("listen", "add", "remove") else "listen"
        if command == "listen":
            return self._listen(request, self.live, caller, path)
        if not path:
            raise BadRequest("need uuid")
        stream = self.streams.get(path.pop(0))
        if stream is None:
            raise BadRequest("unknown uuid")
        if stream.owner != _identity(caller.user):
            raise Forbidden("this stream was opened by another user")
        if not path:
            raise BadRequest(f"need a path to {command} after the uuid")
        wanted = key_filter(path)
        if command == "add":
            self._authorize(caller, wanted, path)
            if (wanted not in stream.subscriptions
                    and len(stream.subscriptions) >= MAX_SUBSCRIPTIONS):
                raise BadRequest(f"too many paths: a stream may have at most "
                                 f"{MAX_SUBSCRIPTIONS}")
            if wanted not in stream.subscriptions:
                stream.subscriptions[wanted] = self.live.subscribe(stream.deliver, wanted,
                                                                   accept=stream.accept)
        else:
            subscription = stream.subscriptions.pop(wanted, None)
            if subscription is None:
                raise NotFound("consumer is not listening to this event")
            subscription.stop()
        request.setHeader(b"content-type", TEXT_TYPE)
        return b"ok"

    def _listen(self, request: Request, live: LiveEvents, caller: Caller,
                path: list[str]) -> int | bytes:
        stream = _Stream(self, request, caller)
        if path:
            wanted = key_filter(path)
            self._authorize(caller, wanted, path)
            since = self._last_event_id(request)
            try:
                stream.subscriptions[wanted] = live.subscribe(stream.deliver, wanted,
                                                              accept=stream.accept,
                                                              since=since)
            except TooOld as e:
                raise Gone(f"the events after Last-Event-ID {since} are no longer kept "
                           f"(the oldest kept is {e.oldest}): read the state again and "
                           f"open a new stream") from None
        if request.method == b"HEAD":  # (the headers of a stream, which never ends)
            for subscription in stream.subscriptions.values():
                subscription.stop()
            request.setHeader(b"content-type", STREAM_TYPE)
            return b""
        self.streams[stream.uuid] = stream
        live.register(stream)
        stream.start()
        return NOT_DONE_YET

    def forget(self, stream: _Stream) -> None:
        """A stream has ended: its uuid is unknown from now on."""
        self.streams.pop(stream.uuid, None)
        if self.live is not None:
            self.live.unregister(stream)

    def _authorize(self, caller: Caller, wanted: KeyFilter, path: list[str]) -> None:
        if not self.may_subscribe(caller, wanted):
            raise Forbidden(f"not allowed to receive the events of {'/'.join(path)}")

    @staticmethod
    def _last_event_id(request: Request) -> int | None:
        """The ``Last-Event-ID`` header's number (a stream to resume), None without one;
        400 for anything but a number."""
        value = request.getHeader(b"last-event-id")
        if value is None or not value.strip(b" \t"):
            return None  # (an empty one: nothing to resume, as the header's absence)
        if not _SEQ.fullmatch(value.strip(b" \t")):
            raise BadRequest(f"Last-Event-ID must be the id of an event (a number), not "
                             f"{value.decode('latin-1')!r}")
        return int(value)
