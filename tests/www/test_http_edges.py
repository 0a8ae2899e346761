"""The standalone server at the edge of HTTP (:mod:`buildbot_rest.www.channel`): limits
answered in JSON with their own status, absolute-form request targets, and bounded waits
for clients that send too slowly, say nothing, or do not read their answers.

Each test serves over a real port with a short ``client_timeout`` (:data:`TIMEOUT`), and
talks to it with a raw client that sends exactly the bytes given."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.www import WebApp
from buildbot_rest.www.channel import MAX_BODY, MAX_FIELDS, MAX_HEAD, origin_form
from buildbot_rest.www.encoding import JSON_TYPE
from buildbot_rest.www.headers import SERVER
from buildbot_rest.www.site import ApiSite
from tests.www.conftest import Api
from tests.www.test_disconnect import (  # noqa: F401 - fixtures
    BigData,
    Watch,
    assert_stopped_early,
    big_data,
    big_postgresql,
    big_sqlite,
    until,
    within,
)

#: the client_timeout of the servers here, in seconds
TIMEOUT = 0.5
#: how late past a timeout the server may act (a loaded machine)
LATE = 3.0


# -- a raw client -------------------------------------------------------------------------

@dataclass
class Exchange:
    """What a raw client saw: the bytes received, and when the server closed."""

    data: bytearray = field(default_factory=bytearray)
    opened: float = field(default_factory=time.monotonic)
    closed_at: float | None = None

    @property
    def took(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.opened

    def answer(self) -> tuple[int, dict[str, list[str]], bytes]:
        head, _, body = bytes(self.data).partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            key, _, value = line.partition(":")
            headers.setdefault(key.strip().lower(), []).append(value.strip())
        return int(status.split()[1]), headers, body


class RawClient(Protocol):
    """Sends ``pieces`` (one every ``every`` seconds), keeps every byte of the answer; it
    reads nothing when ``stalled``."""

    def __init__(self, pieces: list[bytes], every: float = 0.0, *,
                 stalled: bool = False) -> None:
        self.pieces = list(pieces)
        self.every = every
        self.stalled = stalled
        self.seen = Exchange()
        self.closed: defer.Deferred[Exchange] = defer.Deferred()
        self._sending: defer.Deferred[None] | None = None

    def connectionMade(self) -> None:
        self.seen.opened = time.monotonic()
        if self.stalled:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self._send()

    def _send(self) -> None:
        if self.pieces and self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.write(self.pieces.pop(0))
            if self.pieces:
                self._sending = task.deferLater(reactor, self.every, self._send)
                self._sending.addErrback(lambda _: None)

    def dataReceived(self, data: bytes) -> None:
        self.seen.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.seen.closed_at = time.monotonic()
        if self._sending is not None:
            self._sending.cancel()
        self.closed.callback(self.seen)

    def close(self) -> None:
        if self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[attr-defined]


async def exchange(port: int, *pieces: bytes, every: float = 0.0,
                   seconds: float = 10.0) -> Exchange:
    """Send ``pieces`` and wait until the server closes the connection."""
    client = RawClient(list(pieces), every)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoints.connectProtocol(endpoint, client)
    try:
        seen: Exchange = await within(client.closed, "the server closing the connection",
                                      seconds)
        return seen
    finally:
        client.close()


# -- servers ------------------------------------------------------------------------------

@dataclass
class Served:
    port: int
    site: ApiSite
    events: list[dict[str, Any]]

    def failures(self) -> list[str]:
        return [formatEvent(e) for e in self.events
                if e.get("log_failure") is not None
                or e.get("log_level") in (LogLevel.error, LogLevel.critical)]

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


async def _serving(connector: DataConnector) -> AsyncIterator[Served]:
    site = ApiSite(WebApp(connector).resource(), "off", None, reactor, timeout=TIMEOUT)
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield Served(port.getHost().port, site, events)
    finally:
        globalLogPublisher.removeObserver(events.append)
        for channel in site.connections:
            channel.transport.abortConnection()  # type: ignore[union-attr]
        await port.stopListening()


@pytest.fixture
def served(api_sqlite: Api) -> Iterator[Served]:
    """The demo database served by the standalone site, with short timeouts."""
    gen = _serving(api_sqlite.connector)
    yield pytest_twisted.blockon(defer.ensureDeferred(gen.__anext__()))
    pytest_twisted.blockon(defer.ensureDeferred(gen.aclose()))


def request(target: str = "/api/v2/builders", *headers: str, version: str = "HTTP/1.1",
            method: str = "GET") -> bytes:
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", "Accept: application/json",
             *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_refused(seen: Exchange, status: int, message: str) -> None:
    """The server answered ``status`` with a JSON error saying ``message``, and closed."""
    code, headers, body = seen.answer()
    assert code == status, bytes(seen.data[:300])
    assert headers["content-type"] == [JSON_TYPE.decode()]
    assert headers["connection"] == ["close"]
    assert headers["server"] == [SERVER.decode()]
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["content-length"] == [str(len(body))]
    assert "date" in headers
    error = json.loads(body)
    assert list(error) == ["error"]
    assert message in error["error"], error
    assert seen.closed_at is not None


# -- limits -------------------------------------------------------------------------------

PADDING = tuple(f"X-Pad-{i}: {'p' * 1000}" for i in range(MAX_HEAD // 1000 + 1))
CHUNK = b"%x\r\n%s\r\n" % (64 * 1024, b"c" * 64 * 1024)

REFUSALS = {
    "request line too long": (
        [request("/api/v2/builders/" + "y" * MAX_HEAD)], 414, "request line too long"),
    "request line too long, still coming": (
        [b"GET /api/v2/builders/" + b"y" * (MAX_HEAD + 10)], 414, "request line too long"),
    "header line too long": (
        [request("/api/v2/builders", "X-Big: " + "b" * MAX_HEAD)], 431,
        "request header fields too large"),
    "header fields too large": (
        [request("/api/v2/builders", *PADDING)], 431, "request header fields too large"),
    "too many header fields": (
        [request("/api/v2/builders", *(f"X-{i}: {i}" for i in range(MAX_FIELDS + 1)))], 431,
        "too many request header fields"),
    "not an HTTP request line": ([b"NONSENSE\r\n\r\n"], 400, "malformed HTTP request"),
    "a header without a colon": (
        [request("/api/v2/builders", "Broken header")], 400, "malformed HTTP request"),
    "a content length that is no number": (
        [request("/api/v2/builders", "Content-Length: ten")], 400, "malformed HTTP request"),
    "a body too large": (
        [request("/api/v2/builders", f"Content-Length: {MAX_BODY + 1}", method="POST")],
        413, "request body too large"),
    "a chunked body too large": (
        [request("/api/v2/builders", "Transfer-Encoding: chunked", method="POST"),
         CHUNK * (MAX_BODY // len(CHUNK) + 2) + b"0\r\n\r\n"],
        413, "request body too large"),
    "HTTP/2.0": ([request(version="HTTP/2.0")], 505, "HTTP version not supported"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
@pytest_twisted.ensureDeferred
async def test_refusals_are_answered_in_json(served: Served, case: str) -> None:
    """What Twisted refused with a bare 400 (or by closing the connection without a word,
    for a line over 16 KB) is answered with its own status and ``{"error": ...}`` in
    JSON, and the connection closes; the server goes on answering."""
    pieces, status, message = REFUSALS[case]
    assert_refused(await exchange(served.port, *pieces), status, message)
    seen = await exchange(served.port, request("/api/v2/builders?limit=1",
                                               "Connection: close"))
    assert seen.answer()[0] == 200
    assert served.failures() == []


@pytest_twisted.ensureDeferred
async def test_limits_are_not_refusals_below_them(served: Served) -> None:
    """A request line, header fields and a head just within the limits are answered."""
    target = "/api/v2/builders?limit=1&name__ne=" + "z" * (MAX_HEAD // 2)
    fields = [f"X-{i}: {i}" for i in range(MAX_FIELDS - 10)]
    seen = await exchange(served.port, request(target, "Connection: close", *fields))
    assert seen.answer()[0] == 200, bytes(seen.data[:300])


# -- absolute-form targets ----------------------------------------------------------------

@pytest.mark.parametrize("target, origin", [
    ("http://ci.example.org/api/v2/builders?limit=2&order=-builderid",
     "/api/v2/builders?limit=2&order=-builderid"),
    ("HTTP://CI.EXAMPLE.ORG:8010/api/v2/builds/1", "/api/v2/builds/1"),
    ("https://user@ci.example.org/api", "/api"),
    ("http://ci.example.org/api/v2/nothing", "/api/v2/nothing"),
    ("http://ci.example.org", "/"),
    ("http://ci.example.org?x=1", "/?x=1"),
])
@pytest_twisted.ensureDeferred
async def test_absolute_form_is_answered_as_its_path(served: Served, target: str,
                                                     origin: str) -> None:
    """RFC 9112 3.2.2: a server MUST accept the absolute form of a request target; it
    answers as the origin form (the path and query) would."""
    absolute = await exchange(served.port, request(target, "Connection: close"))
    plain = await exchange(served.port, request(origin, "Connection: close"))
    (code, headers, body), (plain_code, plain_headers, plain_body) = (
        absolute.answer(), plain.answer())
    assert code == plain_code
    assert headers["content-type"] == plain_headers["content-type"]
    assert body == plain_body


def test_origin_form() -> None:
    assert origin_form(b"http://h:1/a/b?c#d") == (b"h:1", b"/a/b?c#d")
    assert origin_form(b"hTTps://u:p@h") == (b"h", b"/")
    assert origin_form(b"/api/v2") is None
    assert origin_form(b"*") is None
    assert origin_form(b"ftp://h/x") is None


# -- waiting for clients ------------------------------------------------------------------

@pytest.mark.parametrize("pieces", [
    [b"GET /api/v2/builders HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
    [b"GET /api/v2/builders HTTP/1.1\r\n"],
    [b"G"],
    [request("/api/v2/builders", "Content-Length: 10", method="POST") + b"abc"],
], ids=["head without its end", "request line alone", "one byte", "body not all sent"])
@pytest_twisted.ensureDeferred
async def test_a_request_not_sent_whole_times_out(served: Served,
                                                  pieces: list[bytes]) -> None:
    """A request that stops arriving is answered 408 once ``client_timeout`` has passed,
    and its connection closed."""
    seen = await exchange(served.port, *pieces)
    assert_refused(seen, 408, f"the request did not arrive whole within {TIMEOUT:g}s")
    assert TIMEOUT * 0.9 <= seen.took < TIMEOUT + LATE
    assert served.failures() == []


@pytest_twisted.ensureDeferred
async def test_a_request_sent_a_byte_at_a_time_times_out(served: Served) -> None:
    """A client that keeps sending, a byte at a time, never finishing its head (which
    resets an idle timeout at each byte): the request must arrive whole within
    ``client_timeout`` of its first byte."""
    head = request("/api/v2/builders", *(f"X-{i}: {i}" for i in range(50)))
    seen = await exchange(served.port, *(head[i:i + 1] for i in range(len(head))),
                          every=TIMEOUT / 10)
    assert_refused(seen, 408, "the request did not arrive whole")
    assert seen.took < TIMEOUT + LATE


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_is_closed_quietly(served: Served) -> None:
    """A connection with nothing to say (before a request, or after an answer on a
    kept-alive connection) is closed after ``client_timeout``, without an answer or a
    line in the log."""
    seen = await exchange(served.port)
    assert seen.data == b"" and TIMEOUT * 0.9 <= seen.took < TIMEOUT + LATE
    seen = await exchange(served.port, request("/api/v2/builders?limit=1"))
    code, headers, body = seen.answer()
    assert code == 200 and len(body) == int(headers["content-length"][0])
    assert TIMEOUT * 0.9 <= seen.took < TIMEOUT + LATE
    assert not [line for line in served.lines() if "127.0.0.1" in line], served.lines()


@pytest_twisted.ensureDeferred
async def test_a_kept_alive_connection_answers_within_the_timeout(served: Served) -> None:
    """Requests that follow each other (each within ``client_timeout``) are answered on
    one connection, however long it lives in all."""
    seen = await exchange(served.port, *[request("/api/v2/builders?limit=1")] * 4,
                          request("/api/v2/builders?limit=1", "Connection: close"),
                          every=TIMEOUT / 2)
    assert bytes(seen.data).count(b"HTTP/1.1 200 OK") == 5
    assert seen.took >= 2 * TIMEOUT


# -- clients that do not read -------------------------------------------------------------

@pytest.fixture
def big_served(big_data: BigData) -> Iterator[tuple[Served, Watch, BigData]]:  # noqa: F811
    """The large database, from a pool of ONE connection: a streamed answer that is never
    cut holds it, and the next request is never answered."""
    db = Database(big_data.url, pool_size=1)
    db.prepare_sync()
    watch = Watch(db)
    db.start()
    gen = _serving(DataConnector(db, base_url="http://testserver/"))
    try:
        yield pytest_twisted.blockon(defer.ensureDeferred(gen.__anext__())), watch, big_data
    finally:
        watch.cancel_all()
        pytest_twisted.blockon(defer.ensureDeferred(gen.aclose()))
        db.stop()


@pytest.mark.parametrize("path", ["/api/v2/builds", "raw", "/api/v2/builds?limit=8000"],
                         ids=["collection", "raw log", "page written whole"])
@pytest_twisted.ensureDeferred
async def test_a_client_that_does_not_read_is_cut(
        big_served: tuple[Served, Watch, BigData], path: str) -> None:
    """A client that reads nothing of its answer (streamed, or written whole and waiting
    in the server's buffer): once the transport has kept the answer paused for
    ``client_timeout``, the connection is cut, which stops the database read and frees
    its connection. It is said in one info line."""
    served, watch, data = big_served
    target = data.raw_path if path == "raw" else path
    client = RawClient([request(target)], stalled=True)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", served.port)
    await endpoints.connectProtocol(endpoint, client)
    try:
        await until(lambda: len(served.site.connections) == 1, "the connection")
        # (+ reading and writing what fills the buffers)
        await until(lambda: len(served.site.connections) == 0,
                    "the server cutting the connection", TIMEOUT + LATE + 2)
        took = time.monotonic() - client.seen.opened
        client.transport.resumeProducing()  # type: ignore[union-attr]
        seen = await within(client.closed, "the client seeing the connection closed")
    finally:
        client.close()
    assert took >= TIMEOUT and len(seen.data) < 8000 * 700
    if path != "/api/v2/builds?limit=8000":
        await assert_stopped_early(watch.only())
    # the one database connection is free
    answer = await exchange(served.port, request("/api/v2/builds?limit=1",
                                                 "Connection: close"))
    assert json.loads(answer.answer()[2])["meta"]["total"] == data.builds
    assert served.failures() == []
    cut = [line for line in served.lines() if line.startswith("cut the answer")]
    assert len(cut) == 1 and target in cut[0] and f"{TIMEOUT:g}s" in cut[0], cut


@pytest_twisted.ensureDeferred
async def test_a_client_that_reads_slowly_is_not_cut(
        big_served: tuple[Served, Watch, BigData]) -> None:
    """A client that takes its answer, if slowly (a little every half ``client_timeout``),
    gets all of it."""
    served, _, data = big_served
    client = RawClient([request(data.raw_path, "Connection: close")], stalled=True)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", served.port)
    await endpoints.connectProtocol(endpoint, client)
    try:
        for _ in range(6):
            # (a paused transport: let it read for a moment, then pause it again)
            client.transport.resumeProducing()  # type: ignore[union-attr]
            await task.deferLater(reactor, 0.01, lambda: None)
            client.transport.pauseProducing()  # type: ignore[union-attr]
            await task.deferLater(reactor, TIMEOUT / 2, lambda: None)
            assert client.seen.closed_at is None, "the server cut a client that reads"
        client.transport.resumeProducing()  # type: ignore[union-attr]
        seen = await within(client.closed, "the rest of the log", 30)
    finally:
        client.close()
    assert seen.answer()[0] == 200
    assert bytes(seen.data).endswith(b"\r\n0\r\n\r\n")
    assert served.failures() == []
