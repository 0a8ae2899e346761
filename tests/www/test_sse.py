"""``/sse`` over a real listening port: the stream and its handshake, events of update
methods and control actions with upstream's keys and bodies, add and remove with every
error, resume with ``Last-Event-ID``, keepalive comments, a slow client dropped, the
authorization of subscriptions, and a server stop with streams open."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import endpoints, reactor, task
from twisted.logger import formatEvent
from twisted.web.server import Site

from buildbot_rest.auth.service import ANONYMOUS_CALLER, AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.db import schema as s
from buildbot_rest.service import RestService
from buildbot_rest.www import WebApp, sse
from tests.www.conftest import Api, own_server
from tests.www.test_disconnect import (  # noqa: F401 - logged is a fixture
    Client,
    connect,
    logged,
    mine,
    until,
    within,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: events kept for resuming on the test servers: few, to reach the end of the window
WINDOW = 20
#: bytes a client may leave unread on the test servers
BUFFER = 64 * 1024


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A writable demo server on each backend, for the events of writes."""
    config = Config(ping_interval=0, resume_window=WINDOW, live_buffer=BUFFER)
    for api, _ in own_server(request, tmp_path_factory, "sse", lambda api: None,
                             config=config, writable=True):
        yield api


@pytest.fixture(scope="module", params=["sqlite"])
def sqlite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Api]:
    """The same on SQLite only, for what does not depend on the data."""
    config = Config(ping_interval=0, resume_window=WINDOW, live_buffer=BUFFER)
    for api, _ in own_server(request, tmp_path_factory, "sse1", lambda api: None,
                             config=config, writable=True):
        yield api


class Stream:
    """An /sse stream read over a raw socket, as an EventSource would."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def records(self) -> list[dict[str, str]]:
        """The records received whole, each as its fields (a comment as ``":"``)."""
        body = self.client.response()[2] if self.client.data.count(b"\r\n\r\n") else b""
        records = []
        for block in body.decode().split("\n\n")[:-1]:
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                fields[name or ":"] = value.removeprefix(" ")
            records.append(fields)
        return records

    def events(self) -> list[tuple[int, list[str], Any]]:
        """The events received: (id, key, message)."""
        return [(int(r["id"]), *json.loads(r["data"]).values()) for r in self.records()
                if r.get("event") == "event"]

    @property
    def uuid(self) -> str:
        return self.records()[0]["data"]

    async def wait(self, n: int, what: str = "the events") -> list[tuple[int, list[str], Any]]:
        await until(lambda: len(self.events()) >= n, what)
        return self.events()

    def close(self) -> None:
        self.client.hang_up()


def port_of(api: Api) -> int:
    return int(api.root.rsplit(":", 1)[1].rstrip("/"))


async def open_stream(port: int, path: str, headers: dict[str, str] | None = None, *,
                      keep_alive: bool = False, **client: Any) -> Stream:
    """Open ``path`` and wait for the handshake."""
    reader = Client(path, **client)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    reader.request = reader.request.replace(b"\r\n\r\n", f"\r\n{extra}\r\n".encode())
    if keep_alive:
        reader.request = reader.request.replace(b"Connection: close\r\n", b"")
    stream = Stream(await connect(port, reader))
    if not client.get("stalled"):
        await until(lambda: len(stream.records()) >= 1, "the handshake")
    return stream


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    """Streams to close after the test: ``streams.append(await open_stream(...))``."""
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


async def new_requests(api: Api) -> tuple[int, int, int]:
    """A new buildset with one waiting request: (bsid, builderid, brid)."""
    builderid = api.rows(sa.select(sa.func.min(s.builders.c.id)))[0][0]
    bsid, brids = await api.connector.updates.addBuildset(
        waited_for=False, scheduler="test", reason="sse", builderids=[builderid],
        sourcestamps=[{"branch": "main", "revision": "r1", "repository": "https://r",
                       "project": "p", "codebase": ""}])
    return bsid, builderid, brids[builderid]


# -- the stream ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/sse", "/sse/", "/sse/listen", "/sse/listen/",
                                  "/sse/buildsets/*/new", "/sse/listen/buildsets/*/new/",
                                  "/sse/buildsets/*/new?x=1", "/sse/listen?a=1&a=2"])
@pytest_twisted.ensureDeferred
async def test_the_handshake(sqlite: Api, streams: list[Stream], path: str) -> None:
    stream = await open_stream(port_of(sqlite), path)
    streams.append(stream)
    status, headers, body, ended = stream.client.response()
    assert (status, ended) == (200, False)
    assert headers[b"content-type"] == b"text/event-stream"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert body.startswith(b"event: handshake\ndata: ")
    assert stream.records() == [{"event": "handshake", "data": stream.uuid}]
    assert UUID.fullmatch(stream.uuid)


@pytest_twisted.ensureDeferred
async def test_events_of_update_methods_and_control_actions(
        server: Api, streams: list[Stream]) -> None:
    """Upstream's keys (a list of strings) and bodies (what a GET answers), one stream
    per form of the URL, each event numbered."""
    port = port_of(server)
    every = await open_stream(port, "/sse/buildrequests/*/*")
    mine_only = await open_stream(port, "/sse/listen/buildsets/*/new/")
    streams += [every, mine_only]
    bsid, _, brid = await new_requests(server)
    reply = await server.rpc(f"buildrequests/{brid}", "cancel", {"reason": "not needed"})
    assert reply.code == 200
    events = await every.wait(4)
    assert [key for _, key, _ in events] == [
        ["buildrequests", str(brid), "new"], ["buildrequests", str(brid), "claimed"],
        ["buildrequests", str(brid), "complete"], ["buildrequests", str(brid), "cancel"]]
    now = (await server.get(f"buildrequests/{brid}")).json["buildrequests"][0]
    assert events[-1][2] == events[-2][2] == now
    ids = [seq for seq, _, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    [(seq, key, message)] = await mine_only.wait(1)
    assert key == ["buildsets", str(bsid), "new"]
    buildset = (await server.get(f"buildsets/{bsid}")).json["buildsets"][0]
    # (upstream's message of a new buildset is not its GET: no parent_relationship,
    # and the scheduler's name)
    same = ("bsid", "external_idstring", "reason", "parent_buildid", "rebuilt_buildid",
            "submitted_at", "sourcestamps")
    assert message == {**{k: buildset[k] for k in same}, "complete": False,
                       "complete_at": None, "results": None, "scheduler": "test"}
    assert seq < ids[0]
    # the data line is upstream's json.dumps: default separators, the key first
    raw = [r["data"] for r in every.records() if r.get("event") == "event"][-1]
    assert raw.startswith(f'{{"key": ["buildrequests", "{brid}", "cancel"], "message": {{')
    assert raw == json.dumps(json.loads(raw))


@pytest_twisted.ensureDeferred
async def test_percent_decoded_paths(sqlite: Api, streams: list[Stream]) -> None:
    stream = await open_stream(port_of(sqlite), "/sse/%6Cisten/builders/b%C3%A9%2Fx/%2A")
    streams.append(stream)
    assert sqlite.mq is not None
    sqlite.mq.produce(("builders", "bé/x", "new"), {"n": 1})
    sqlite.mq.produce(("builders", "bé", "new"), {"n": 2})
    sqlite.mq.produce(("builders", "bé/x", "changed"), {"n": 3})
    events = await stream.wait(2)
    assert [(key, m) for _, key, m in events] == [
        (["builders", "bé/x", "new"], {"n": 1}), (["builders", "bé/x", "changed"], {"n": 3})]


@pytest.mark.parametrize("path", ["/sse/builders/%FF", "/sse/add/%FF/x",
                                  "/sse/listen/%C3/x"])
@pytest_twisted.ensureDeferred
async def test_a_path_that_is_not_utf8_is_400(sqlite: Api, path: str) -> None:
    reply = await sqlite.get(path)
    assert (reply.code, reply.header("content-type")) == (400, "application/json; charset=utf-8")
    assert "not UTF-8" in reply.json["error"]


# -- add and remove ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_stream_has_at_most_max_subscriptions_paths(
        sqlite: Api, streams: list[Stream], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_SUBSCRIPTIONS", 3)
    stream = await open_stream(port_of(sqlite), "/sse/listen/a/1")
    streams.append(stream)
    for n in (2, 3):
        assert (await sqlite.get(f"/sse/add/{stream.uuid}/a/{n}")).code == 200
    assert (await sqlite.get(f"/sse/add/{stream.uuid}/a/2")).code == 200  # (had it)
    reply = await sqlite.get(f"/sse/add/{stream.uuid}/a/4")
    assert (reply.code, reply.json) == (400, {"error": "too many paths: a stream may have "
                                                       "at most 3"})
    assert (await sqlite.get(f"/sse/remove/{stream.uuid}/a/1")).code == 200
    assert (await sqlite.get(f"/sse/add/{stream.uuid}/a/4")).code == 200


@pytest_twisted.ensureDeferred
async def test_add_and_remove(sqlite: Api, streams: list[Stream]) -> None:
    assert sqlite.mq is not None
    stream = await open_stream(port_of(sqlite), "/sse")
    streams.append(stream)
    uuid = stream.uuid
    for query in ("", "?x=1", "?x=1&x=2&y"):
        reply = await sqlite.get(f"/sse/add/{uuid}/workers/*/new/{query}")
        assert (reply.code, reply.body) == (200, b"ok")
        assert reply.header("content-type") == "text/plain; charset=utf-8"
    assert (await sqlite.get(f"/sse/add/{uuid}/workers/7/*")).code == 200
    sqlite.mq.produce(("workers", "7", "new"), {"n": 1})
    sqlite.mq.produce(("workers", "8", "gone"), {"n": 2})
    sqlite.mq.produce(("workers", "7", "last"), {"n": 3})
    # one event per subscription that matches; workers/*/new, added three times, is one
    assert [m for _, _, m in await stream.wait(3)] == [{"n": 1}, {"n": 1}, {"n": 3}]
    reply = await sqlite.get(f"/sse/remove/{uuid}/workers/*/new?x=1")
    assert (reply.code, reply.body) == (200, b"ok")
    sqlite.mq.produce(("workers", "8", "new"), {"n": 4})
    sqlite.mq.produce(("workers", "7", "new"), {"n": 5})
    assert [m for _, _, m in await stream.wait(4)][3:] == [{"n": 5}]
    assert stream.records()[-1]["event"] == "event"


@pytest.mark.parametrize(("path", "code", "error"), [
    ("/sse/add", 400, "need uuid"),
    ("/sse/add/", 400, "need uuid"),
    ("/sse/remove?x=1", 400, "need uuid"),
    ("/sse/add/0b8f4c1e-1d1a-4c53-9a63-2f0d1f1e0a7a/builds/*/new", 400, "unknown uuid"),
    ("/sse/remove/nope/builds/*/new", 400, "unknown uuid"),
    ("/sse/remove/{uuid}/builds/*/new", 404, "consumer is not listening to this event"),
    ("/sse/remove/{uuid}/workers/*/*?a=b", 404, "consumer is not listening to this event"),
    ("/sse/add/{uuid}", 400, "need a path to add after the uuid"),
    ("/sse/remove/{uuid}/", 400, "need a path to remove after the uuid"),
])
@pytest_twisted.ensureDeferred
async def test_add_and_remove_errors(sqlite: Api, streams: list[Stream], path: str,
                                     code: int, error: str) -> None:
    stream = await open_stream(port_of(sqlite), "/sse/workers/*/new")
    streams.append(stream)
    reply = await sqlite.get(path.format(uuid=stream.uuid))
    assert (reply.code, reply.json) == (code, {"error": error})
    assert reply.header("content-type") == "application/json; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_a_closed_streams_uuid_is_unknown(sqlite: Api) -> None:
    stream = await open_stream(port_of(sqlite), "/sse")
    uuid = stream.uuid
    stream.close()
    await within(mine(stream.client.closed), "the stream closing")
    reply: Any = None

    async def gone() -> bool:
        nonlocal reply
        reply = await sqlite.get(f"/sse/add/{uuid}/builds/*/new")
        return reply.code == 400

    for _ in range(100):  # (the server learns of the hang-up as soon as it reads)
        if await gone():
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert (reply.code, reply.json) == (400, {"error": "unknown uuid"})


# -- resume ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_resume_with_last_event_id(server: Api, streams: list[Stream]) -> None:
    """The events missed since the last one seen come first, once and in order, and
    then the new ones."""
    port = port_of(server)
    first = await open_stream(port, "/sse/buildsets/*/*")
    streams.append(first)
    bsid1, _, brid1 = await new_requests(server)
    [(seen, _, _)] = await first.wait(1)
    first.close()
    bsid2, _, brid2 = await new_requests(server)
    assert (await server.rpc(f"buildrequests/{brid2}", "cancel", {})).code == 200
    again = await open_stream(port, "/sse/buildsets/*/*", {"Last-Event-ID": str(seen)})
    streams.append(again)
    missed = await again.wait(2)
    assert [key for _, key, _ in missed] == [["buildsets", str(bsid2), "new"],
                                             ["buildsets", str(bsid2), "complete"]]
    assert missed[1][2] == (await server.get(f"buildsets/{bsid2}")).json["buildsets"][0]
    assert again.records()[0]["event"] == "handshake"
    assert (await server.rpc(f"buildrequests/{brid1}", "cancel", {})).code == 200
    events = await again.wait(3)
    assert [key for _, key, _ in events[2:]] == [["buildsets", str(bsid1), "complete"]]
    ids = [seq for seq, _, _ in events]
    assert ids == sorted(set(ids)) and ids[0] > seen


@pytest_twisted.ensureDeferred
async def test_last_event_id_of_the_latest_event_misses_nothing(
        sqlite: Api, streams: list[Stream]) -> None:
    assert sqlite.mq is not None
    stream = await open_stream(port_of(sqlite), "/sse/jobs/*")
    streams.append(stream)
    sqlite.mq.produce(("jobs", "1"), {})
    [(seen, _, _)] = await stream.wait(1)
    again = await open_stream(port_of(sqlite), "/sse/jobs/*", {"Last-Event-ID": str(seen)})
    streams.append(again)
    sqlite.mq.produce(("jobs", "2"), {})
    assert [key for _, key, _ in await again.wait(1)] == [["jobs", "2"]]


@pytest_twisted.ensureDeferred
async def test_410_when_the_events_are_gone(sqlite: Api, streams: list[Stream]) -> None:
    assert sqlite.mq is not None
    stream = await open_stream(port_of(sqlite), "/sse/old/*")
    streams.append(stream)
    sqlite.mq.produce(("old", "0"), {})
    [(seen, _, _)] = await stream.wait(1)
    for i in range(WINDOW + 1):
        sqlite.mq.produce(("old", str(i + 1)), {})
    for last in (str(seen), "5", str(seen + 10**9)):  # dropped, before the start, to come
        reply = await sqlite.get("/sse/old/*", headers={"Last-Event-ID": last})
        assert reply.code == 410
        assert reply.header("content-type") == "application/json; charset=utf-8"
        assert f"Last-Event-ID {last} are no longer kept" in reply.json["error"]


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "+3", "0x10", "١٢", "1" * 5000])
@pytest_twisted.ensureDeferred
async def test_a_last_event_id_that_is_no_number_is_400(sqlite: Api, value: str) -> None:
    reply = await sqlite.get("/sse/listen/builds/*/new", headers={"Last-Event-ID": value})
    assert reply.code == 400
    assert "Last-Event-ID must be the id of an event" in reply.json["error"]


@pytest.mark.parametrize("value", ["", " "])
@pytest_twisted.ensureDeferred
async def test_an_empty_last_event_id_is_no_resume(
        sqlite: Api, streams: list[Stream], value: str) -> None:
    stream = await open_stream(port_of(sqlite), "/sse/listen/builds/*/new",
                               {"Last-Event-ID": value})
    streams.append(stream)
    assert [r["event"] for r in stream.records()] == ["handshake"]


@pytest_twisted.ensureDeferred
async def test_last_event_id_on_a_stream_without_path_is_ignored(
        sqlite: Api, streams: list[Stream]) -> None:
    for value in ("5", "x"):
        stream = await open_stream(port_of(sqlite), "/sse", {"Last-Event-ID": value})
        streams.append(stream)
        assert stream.records()[0]["event"] == "handshake"


# -- slow clients --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_slow_client_is_dropped_and_the_others_go_on(
        sqlite: Api, streams: list[Stream],
        logged: list[dict[str, Any]]) -> None:  # noqa: F811 - the fixture imported above
    assert sqlite.mq is not None
    port = port_of(sqlite)
    slow = await open_stream(port, "/sse/big/*", stalled=True)
    fast = await open_stream(port, "/sse/big/*")
    streams += [slow, fast]
    await within(mine(slow.client.has_stalled), "the slow client stalling")
    local: Any = slow.client.transport.getHost()  # type: ignore[union-attr]
    chunk = "x" * 100_000

    def dropped() -> list[str]:
        return [line for line in map(formatEvent, logged) if "dropped the /sse" in line]
    sent = 0
    while not dropped() and sent < 400:  # (40 MB: never reached)
        sqlite.mq.produce(("big", str(sent)), {"data": chunk})
        sent += 1
        await fast.wait(sent, "the fast client's events")
    slow.client.resume()  # (a client that reads nothing does not see the connection go)
    await within(mine(slow.client.closed), "the slow client's connection closing")
    assert len(dropped()) == 1
    assert dropped()[0].startswith(f"dropped the /sse stream of {local.host}:{local.port}: ")
    sqlite.mq.produce(("big", "after"), {"data": "small"})
    events = await fast.wait(sent + 1)
    assert [key for _, key, _ in events] == [["big", str(i)] for i in range(sent)] + [
        ["big", "after"]]
    assert not fast.client.closed.called


# -- authorization -------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serving(api: Api, auth: AuthService) -> AsyncIterator[tuple[Api, WebApp]]:
    """``api``'s database and queue served on a port of their own with ``auth``: a
    client of it, and its web application."""
    web = WebApp(api.connector, auth=auth)
    listening = await endpoints.serverFromString(
        reactor, "tcp:0:interface=127.0.0.1").listen(Site(web.resource()))
    try:
        yield Api(f"http://127.0.0.1:{listening.getHost().port}/", api.db, api.connector), web
    finally:
        await listening.stopListening()
        assert web.live is not None
        await web.live.stopService()


def NoControl() -> AuthService:
    """Anonymous callers, whom a rule refuses every control action: they may not see
    control messages (COMPAT 20)."""
    return AuthService(Config(authz={"allow": [{"match": "any_control",
                                                 "role": "admins"}]}))


@pytest_twisted.ensureDeferred
async def test_subscriptions_are_authorized(sqlite: Api, streams: list[Stream]) -> None:
    async with serving(sqlite, NoControl()) as (other, web):
        for path in ("/sse/control/builds/*/stop", "/sse/listen/*/builds/1/stop",
                     "/sse/listen/control/*/*/*"):
            reply = await other.get(path)
            assert reply.code == 403, path
            assert "not allowed to receive the events of" in reply.json["error"]
        stream = await open_stream(port_of(other), "/sse/builds/*/new")
        streams.append(stream)
        reply = await other.get(f"/sse/add/{stream.uuid}/control/worker/1/stop")
        assert (reply.code, reply.json) == (403, {
            "error": "not allowed to receive the events of control/worker/1/stop"})
        assert (await other.get(f"/sse/add/{stream.uuid}/builds/*/finished")).code == 200
        assert web.live is not None and web.live.clients == 1
        stream.close()
        await until(lambda: web.live is not None and web.live.clients == 0,
                    "the stream's end noticed")


class ByHeader(AuthService):
    """The user a request's ``X-User`` header names (anonymous without one)."""

    async def _find_caller(self, request: Any) -> Caller:
        name = request.getHeader(b"x-user")
        return Caller(user={"username": name.decode()}) if name else ANONYMOUS_CALLER


@pytest_twisted.ensureDeferred
async def test_only_the_streams_user_adds_to_it(sqlite: Api, streams: list[Stream]) -> None:
    async with serving(sqlite, ByHeader()) as (other, _):
        stream = await open_stream(port_of(other), "/sse", {"X-User": "alice"})
        streams.append(stream)
        for who in ({"X-User": "bob"}, {}):
            for verb in ("add", "remove"):
                reply = await other.get(f"/sse/{verb}/{stream.uuid}/builds/*/new",
                                        headers=who)
                assert (reply.code, reply.json) == (403, {
                    "error": "this stream was opened by another user"})
        for verb in ("add", "remove"):
            reply = await other.get(f"/sse/{verb}/{stream.uuid}/builds/*/new",
                                    headers={"X-User": "alice"})
            assert (reply.code, reply.body) == (200, b"ok")


# -- the server's stop and keepalive -------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_keepalive_comments_keep_an_idle_stream_open(tmp_path: Path) -> None:
    """With pings every 0.05 s, a stream with no event outlives a client_timeout of
    0.2 s (Twisted's idle timeout is off while an answer is made; the comments keep
    proxies from closing it), and its events still come."""
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
                              port="tcp:0:interface=127.0.0.1", ping_interval=0.05,
                              client_timeout=0.2))
    rest.startService()
    stream: Stream | None = None
    try:
        port = rest.web.port.getHost().port  # type: ignore[union-attr]
        stream = await open_stream(port, "/sse/idle/*")
        # 12 comments 0.05 s apart: at least 0.55 s idle, more than the client_timeout
        await until(lambda: sum(":" in r for r in stream.records()) >= 12, "the comments")
        assert not stream.client.closed.called
        assert stream.client.data.count(b": keepalive\n\n") >= 12
        assert rest.mq is not None
        rest.mq.produce(("idle", "1"), {"still": "here"})
        assert [m for _, _, m in await stream.wait(1)] == [{"still": "here"}]
    finally:
        if stream is not None:
            stream.close()
        await rest.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stop_ends_the_streams_promptly_and_cleanly(tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
                              port="tcp:0:interface=127.0.0.1"), shutdown_timeout=60)
    rest.startService()
    port = rest.web.port.getHost().port  # type: ignore[union-attr]
    # (the first stream's connection is kept alive: once it ends, the stop closes it)
    opened = [await open_stream(port, "/sse", keep_alive=True),
              await open_stream(port, "/sse/builds/*/new")]
    try:
        assert rest.live is not None and rest.live.clients == 2
        assert rest.mq is not None
        rest.mq.produce(("builds", "1", "new"), {"buildid": 1})
        await opened[1].wait(1)
        await within(mine(rest.stopService()), "the stop")
        for stream in opened:
            await within(mine(stream.client.closed), "the stream ending")
            status, _, _, ended = stream.client.response()
            assert (status, ended) == (200, True)
        assert rest.live.clients == 0
    finally:
        for stream in opened:
            stream.close()
    assert rest.stopped_cleanly


@pytest_twisted.ensureDeferred
async def test_head_answers_the_headers_of_a_stream(sqlite: Api) -> None:
    reply = await sqlite.request("HEAD", "sse/builds/*/new", raw=True)
    assert (reply.code, reply.body) == (200, b"")
    assert reply.header("content-type") == "text/event-stream"
    reply = await sqlite.request("HEAD", "sse/control/*/*/*",
                                 headers={"Last-Event-ID": "x"}, raw=True)
    assert reply.code == 400


@pytest_twisted.ensureDeferred
async def test_no_live_events_without_a_message_queue(api_sqlite: Api) -> None:
    for path in ("/sse", "/sse/builds/*/new", "/sse/add/x/y"):
        reply = await api_sqlite.get(path)
        assert reply.code == 404
        assert "no message queue" in reply.json["error"]
