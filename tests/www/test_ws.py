"""The WebSocket of live events, ``/ws``, with a real autobahn client over a listening
port: the handshake, every command and error of protocol.md 8.2 (with COMPAT 20's fixes),
subscriptions, events from update methods and control actions on both backends, resume
with ``since``, authorization, slow consumers, keepalive, and the stop of the server."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor, task
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.web.http_headers import Headers
from zope.interface import implementer

from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import Config
from buildbot_rest.service import RestService
from buildbot_rest.www import ws
from tests.www.conftest import Api, own_server
from tests.www.test_control_builds import _fill, _running_build
from tests.www.test_disconnect import until, within


class Client(WebSocketClientProtocol):
    """A client that keeps every text frame it gets (``raw`` as sent, ``frames``
    decoded), counts pings, and tells when it is closed (``closed``: ``(wasClean,
    code, reason)``)."""

    #: whether it answers pings (a dead peer does not)
    answers_pings = True

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []
        self.frames: list[dict[str, Any]] = []
        self.pings = 0
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self._next_id = 0

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary
        self.raw.append(payload)
        self.frames.append(json.loads(payload))

    def onPing(self, payload: bytes) -> None:
        self.pings += 1
        if self.answers_pings:
            super().onPing(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"not opened: {reason}"))
        if not self.closed.called:
            self.closed.callback((wasClean, code, reason))

    def send(self, frame: Any) -> None:
        self.sendMessage(json.dumps(frame).encode())

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "k" in f]

    async def reply(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` (given a fresh ``_id`` unless it has one) and return the reply
        with its ``_id``."""
        if "_id" not in frame:
            self._next_id += 1
            frame = {**frame, "_id": f"c{self._next_id}"}
        before = len(self.frames)
        self.send(frame)
        await until(lambda: self._reply_after(before, frame["_id"]) is not None,
                    f"a reply to {frame}")
        found = self._reply_after(before, frame["_id"])
        assert found is not None
        return found

    def _reply_after(self, start: int, _id: Any) -> dict[str, Any] | None:
        for f in self.frames[start:]:
            if "k" not in f and f.get("_id") == _id:
                return f
        return None

    async def consume(self, path: str, **more: Any) -> dict[str, Any]:
        return await self.reply({"cmd": "startConsuming", "path": path, **more})

    async def synced(self) -> None:
        """Wait until everything the server sent before now has arrived (a ping's
        pong comes after it)."""
        assert (await self.reply({"cmd": "ping"}))["msg"] == "pong"


async def connect(port: int, cls: type[Client] = Client, **options: Any) -> Client:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", **options)
    factory.protocol = cls
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = cast(Client, await endpoint.connect(factory))
    await within(client.opened, "the opening handshake")
    return client


async def closed(client: Client) -> tuple[bool, int | None, str | None]:
    if client.state != client.STATE_CLOSED and not client.closed.called:
        client.transport.abortConnection()  # type: ignore[union-attr]
    result: tuple[bool, int | None, str | None] = await within(client.closed, "the close")
    return result


# -- servers ---------------------------------------------------------------------------------

def start(tmp_path: Path, auth: AuthService | None = None, **options: Any) -> RestService:
    """A RestService over a new empty SQLite database, on a port of its own; ``auth``
    in place of its AuthService for ``/ws``."""
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 'ws.sqlite'}", create=True,
                              port="tcp:0:interface=127.0.0.1", **options))
    rest.prepare()
    if auth is not None:
        assert rest.web is not None
        rest.web.app.ws.auth = auth
    rest.startService()
    return rest


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, auth: AuthService | None = None,
                  **options: Any) -> AsyncIterator[RestService]:
    """:func:`start`, and stop it at the end."""
    rest = start(tmp_path, auth, **options)
    try:
        yield rest
    finally:
        await within(rest.stopService(), "the stop")


def port_of(rest: RestService) -> int:
    assert rest.web is not None and rest.web.port is not None
    return int(rest.web.port.getHost().port)  # type: ignore[attr-defined]


def produce(rest: RestService, key: str, message: dict[str, Any]) -> None:
    assert rest.mq is not None
    rest.mq.produce(tuple(key.split("/")), message)


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestService]:
    service = start(tmp_path_factory.mktemp("ws"))
    yield service
    pytest_twisted.blockon(service.stopService())


# -- the handshake ---------------------------------------------------------------------------

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize(("method", "headers", "code", "says"), [
    ("GET", {}, 426, "WebSocket client"),
    ("POST", UPGRADE, 405, "GET"),
    ("GET", {**UPGRADE, "Connection": "keep-alive"}, 400, "Connection: Upgrade"),
    ("GET", {**UPGRADE, "Sec-WebSocket-Version": "8"}, 426, "version must be 13"),
    ("GET", {**UPGRADE, "Sec-WebSocket-Key": "short"}, 400, "Sec-WebSocket-Key"),
])
@pytest_twisted.ensureDeferred
async def test_what_is_no_websocket_handshake_gets_a_json_error(
        rest: RestService, method: str, headers: dict[str, str], code: int,
        says: str) -> None:
    response = await treq.request(method, f"http://127.0.0.1:{port_of(rest)}/ws",
                                  headers=Headers({k: [v] for k, v in headers.items()}),
                                  persistent=False)
    body = json.loads(await response.content())
    assert response.code == code
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert says in body["error"]
    if "version" in says:  # (Twisted's client keeps Upgrade to itself)
        assert response.headers.getRawHeaders("sec-websocket-version") == ["13"]


@pytest_twisted.ensureDeferred
async def test_a_426_has_its_reason_phrase_and_the_upgrade_its_access_log_line(
        tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with serving(tmp_path, access_log=str(log)) as rest:
        response = await treq.get(f"http://127.0.0.1:{port_of(rest)}/ws", persistent=False)
        await response.content()
        assert (response.code, response.phrase) == (426, b"Upgrade Required")
        client = await connect(port_of(rest))
        await client.synced()
        await closed(client)
    assert re.findall(r'"(GET /ws HTTP/1.1)" (\d+) ', log.read_text()) == [
        ("GET /ws HTTP/1.1", "426"), ("GET /ws HTTP/1.1", "101")]


@pytest_twisted.ensureDeferred
async def test_a_page_of_another_site_may_not_open_it(rest: RestService) -> None:
    own = await connect(port_of(rest), origin=f"http://127.0.0.1:{port_of(rest)}")
    await own.synced()
    await closed(own)
    response = await treq.get(f"http://127.0.0.1:{port_of(rest)}/ws", persistent=False,
                              headers=Headers({**{k: [v] for k, v in UPGRADE.items()},
                                               "Origin": ["http://evil.example"]}))
    assert response.code == 403
    assert "another site" in json.loads(await response.content())["error"]


@pytest_twisted.ensureDeferred
async def test_no_live_events_without_a_message_queue(api_sqlite: Api) -> None:
    reply = await api_sqlite.request("GET", "ws", headers=UPGRADE)
    assert reply.code == 404
    assert "no message queue" in reply.json["error"]


# -- commands and errors (protocol.md 8.2) ---------------------------------------------------

@pytest.mark.parametrize("_id", [1, "x", [1, 2], {"a": None}, 0.5])
@pytest_twisted.ensureDeferred
async def test_ping_echoes_any_id_in_compact_json(rest: RestService, _id: Any) -> None:
    client = await connect(port_of(rest))
    await client.reply({"cmd": "ping", "_id": _id})
    assert client.raw == [b'{"msg":"pong","code":200,"_id":' +
                          json.dumps(_id, separators=(",", ":")).encode() + b"}"]
    await closed(client)


ERRORS: list[tuple[Any, dict[str, Any]]] = [
    ({"cmd": "ping"}, {"error": "no '_id' or 'type' in websocket frame", "code": 400,
                       "_id": None}),
    ({"cmd": "ping", "_id": None}, {"error": "no '_id' or 'type' in websocket frame",
                                    "code": 400, "_id": None}),
    ({"_id": 1}, {"error": "no 'cmd' in websocket frame", "code": 400, "_id": None}),
    ({"type": "t"}, {"error": "no 'cmd' in websocket frame", "code": 400, "_id": None}),
    ({"_id": 2, "cmd": "nope"}, {"error": "no such command type 'nope'", "code": 404,
                                 "_id": 2}),
    ({"_id": 3, "cmd": 5}, {"error": "no such command type '5'", "code": 404, "_id": 3}),
    ({"_id": 4, "cmd": "startConsuming", "path": 5},
     {"error": "invalid path format '5'", "code": 400, "_id": 4}),
    ({"_id": 5, "cmd": "stopConsuming", "path": None},
     {"error": "invalid path format 'None'", "code": 400, "_id": 5}),
    ({"_id": 6, "cmd": "stopConsuming", "path": "builds/*/*"},
     {"error": "path was not consumed 'builds/*/*'", "code": 400, "_id": 6}),
    ({"_id": 7, "cmd": "startConsuming", "path": "a", "since": "12"},
     {"error": "invalid since '12': the sequence number ('s') of an event is expected",
      "code": 400, "_id": 7}),
    ({"_id": 8, "cmd": "startConsuming", "path": "a", "since": True},
     {"error": "invalid since 'True': the sequence number ('s') of an event is expected",
      "code": 400, "_id": 8}),
    ({"_id": 9, "cmd": "startConsuming", "path": "a", "since": 1.5},
     {"error": "invalid since '1.5': the sequence number ('s') of an event is expected",
      "code": 400, "_id": 9}),
]


@pytest.mark.parametrize(("frame", "reply"), ERRORS)
@pytest_twisted.ensureDeferred
async def test_error_replies(rest: RestService, frame: Any, reply: dict[str, Any]) -> None:
    client = await connect(port_of(rest))
    client.send(frame)
    await until(lambda: len(client.frames) == 1, "the reply")
    assert client.frames == [reply]
    await client.synced()  # the connection stays
    await closed(client)


@pytest.mark.parametrize(("frame", "_id", "says"), [
    ({"_id": 1, "cmd": "startConsuming"}, 1, "startConsuming: missing path"),
    ({"_id": 1, "cmd": "ping", "path": "x"}, 1, "ping: unexpected path"),
    ({"_id": 1, "cmd": "stopConsuming", "since": 3}, 1,
     "stopConsuming: missing path; unexpected since"),
    # upstream: a ping with a type but no _id is called without its _id
    ({"type": "x", "cmd": "ping"}, None, "ping: missing _id"),
])
@pytest_twisted.ensureDeferred
async def test_missing_or_extra_arguments(rest: RestService, frame: dict[str, Any], _id: Any,
                                          says: str) -> None:
    client = await connect(port_of(rest))
    client.send(frame)
    await until(lambda: len(client.frames) == 1, "the reply")
    assert client.frames == [{"error": f"Invalid method argument '{says}'", "code": 400,
                              "_id": _id}]
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_type_is_popped_and_ignored(rest: RestService) -> None:
    client = await connect(port_of(rest))
    assert await client.reply({"cmd": "ping", "type": "t", "_id": None}) == {
        "msg": "pong", "code": 200, "_id": None}
    assert await client.reply({"cmd": "startConsuming", "type": 1, "path": "a/*",
                               "_id": 7}) == {"msg": "OK", "code": 200, "_id": 7}
    await closed(client)


@pytest.mark.parametrize(("payload", "binary", "says"), [
    (b"not json", False, "not JSON"),
    (b"", False, "not JSON"),
    (b'{"cmd": "ping", "_id": NaN}', False, "not JSON"),
    (b'{"cmd": "ping", "_id": 1e999}', False, "out of range"),
    (b'{"cmd": "ping", "_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", False, "nested too deeply"),
    (b"[" * 30000 + b"]" * 30000, False, "nested too deeply"),
    (b"[1, 2]", False, "not a JSON object"),
    (b'"ping"', False, "not a JSON object"),
    (b'{"cmd": "ping", "_id": 1}', True, "binary"),
])
@pytest_twisted.ensureDeferred
async def test_a_malformed_frame_gets_an_error_and_the_connection_stays(
        rest: RestService, payload: bytes, binary: bool, says: str) -> None:
    """COMPAT 20 (upstream drops the connection)."""
    client = await connect(port_of(rest))
    client.sendMessage(payload, isBinary=binary)
    await until(lambda: len(client.frames) == 1, "the reply")
    [reply] = client.frames
    assert (reply["code"], reply["_id"], list(reply)) == (400, None, ["error", "code", "_id"])
    assert says in reply["error"]
    await client.consume("builds/*/*")
    produce(rest, "builds/1/new", {"buildid": 1})
    await until(lambda: client.events() != [], "an event")
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_ids_near_the_parsers_depth_limit_get_a_reply_and_keep_the_connection(
        rest: RestService) -> None:
    """Around the depth where reading the frame or writing its ``_id`` back runs out of
    stack, each frame gets a reply: its pong (the ``_id`` echoed, or null when it is too
    deep to write) or a 400."""
    client = await connect(port_of(rest))
    depths = range(900, 1001, 10)
    for depth in depths:
        client.sendMessage(b'{"cmd": "ping", "_id": ' + b"[" * depth + b"1" + b"]" * depth
                           + b"}")
    await until(lambda: len(client.frames) == len(depths), "the replies")
    for reply in client.frames:
        assert reply in ({"msg": "pong", "code": 200, "_id": None},
                         {"error": "a frame that is not JSON: nested too deeply",
                          "code": 400, "_id": None}) or (
            reply["code"] == 200 and isinstance(reply["_id"], list)), reply
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_fails_the_connection_as_rfc_6455_says(rest: RestService) -> None:
    client = await connect(port_of(rest))
    client.sendMessage(b'{"cmd": "\xff"}')
    was_clean, code, _ = await within(client.closed, "the close")
    assert (was_clean, code) == (True, 1007)


@pytest_twisted.ensureDeferred
async def test_replies_to_the_commands_read_before_a_failing_frame_come_before_the_close(
        rest: RestService) -> None:
    client = await connect(port_of(rest))
    # (written in one turn: the server reads them together)
    client.send({"cmd": "ping", "_id": 1})
    client.send({"cmd": "startConsuming", "path": "a/*", "_id": 2})
    client.send({"cmd": "ping", "_id": "x" * 70000})
    was_clean, code, _ = await within(client.closed, "the close")
    assert (was_clean, code) == (True, 1009)
    assert client.frames == [{"msg": "pong", "code": 200, "_id": 1},
                             {"msg": "OK", "code": 200, "_id": 2}]


@pytest_twisted.ensureDeferred
async def test_a_frame_over_64_kib_closes_with_1009(rest: RestService) -> None:
    client = await connect(port_of(rest))
    client.send({"cmd": "ping", "_id": "x" * 70000})
    was_clean, code, _ = await within(client.closed, "the close")
    assert (was_clean, code) == (True, 1009)


# -- subscriptions ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_events_of_the_paths_consumed_in_order(rest: RestService) -> None:
    client = await connect(port_of(rest))
    assert await client.consume("builds/*/*", _id=1) == {"msg": "OK", "code": 200, "_id": 1}
    assert await client.consume("workers/3/*") == {"msg": "OK", "code": 200, "_id": "c1"}
    produce(rest, "builds/5/new", {"buildid": 5, "x": [1, None]})
    produce(rest, "builds/5/steps/1/new", {"no": "longer filter"})  # (length rule)
    produce(rest, "builds/5", {"no": "shorter key"})
    produce(rest, "workers/4/connected", {"no": "other worker"})
    produce(rest, "workers/3/connected", {"workerid": 3})
    await client.synced()
    events = client.events()
    assert [(e["k"], e["m"]) for e in events] == [
        ("builds/5/new", {"buildid": 5, "x": [1, None]}),
        ("workers/3/connected", {"workerid": 3})]
    assert [list(e) for e in events] == [["k", "m", "s"]] * 2
    assert events[0]["s"] < events[1]["s"]
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_the_same_path_twice_only_acks_and_overlaps_deliver_twice(
        rest: RestService) -> None:
    client = await connect(port_of(rest))
    for path in ("builds/*/*", "builds/*/*", "builds/7/*"):
        assert (await client.consume(path))["msg"] == "OK"
    produce(rest, "builds/8/new", {"buildid": 8})
    produce(rest, "builds/7/new", {"buildid": 7})
    await client.synced()
    assert [e["k"] for e in client.events()] == ["builds/8/new", "builds/7/new",
                                                 "builds/7/new"]
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_stop_consuming(rest: RestService) -> None:
    client = await connect(port_of(rest))
    await client.consume("builds/*/*")
    await client.consume("changes/*/*")
    assert await client.reply({"cmd": "stopConsuming", "path": "builds/*/*", "_id": 4}) == {
        "msg": "OK", "code": 200, "_id": 4}
    produce(rest, "builds/1/update", {"buildid": 1})
    produce(rest, "changes/1/new", {"changeid": 1})
    await until(lambda: client.events() != [], "an event")
    await client.synced()
    assert [e["k"] for e in client.events()] == ["changes/1/new"]
    assert await client.reply({"cmd": "stopConsuming", "path": "builds/*/*", "_id": 5}) == {
        "error": "path was not consumed 'builds/*/*'", "code": 400, "_id": 5}
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_a_disconnect_ends_the_subscriptions(rest: RestService) -> None:
    live = rest.live
    assert live is not None
    client = await connect(port_of(rest))
    await client.consume("builds/*/*")
    await client.consume("builds/1/*")
    assert live.clients >= 1
    await closed(client)
    # (the connections of the tests before are gone too by now, or soon)
    await until(lambda: live.clients == 0, "the unregistering")
    assert live._index == {}  # (no subscription left)


# -- resume ------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_resume_since_gives_the_missed_events_once_then_live_ones(
        rest: RestService) -> None:
    first = await connect(port_of(rest))
    await first.consume("builds/*/*")
    produce(rest, "builds/1/new", {"buildid": 1})
    await until(lambda: first.events() != [], "an event")
    seen = first.events()[0]["s"]
    await closed(first)
    produce(rest, "builds/1/update", {"n": 1})
    produce(rest, "changes/1/new", {"changeid": 1})  # not consumed
    produce(rest, "builds/1/finished", {"n": 2})
    second = await connect(port_of(rest))
    assert await second.consume("builds/*/*", since=seen, _id=9) == {
        "msg": "OK", "code": 200, "_id": 9}
    produce(rest, "builds/2/new", {"n": 3})
    await until(lambda: len(second.events()) == 3, "three events")
    await second.synced()
    frames = second.frames
    assert frames[0] == {"msg": "OK", "code": 200, "_id": 9}
    assert [(e["k"], e["m"]) for e in second.events()] == [
        ("builds/1/update", {"n": 1}), ("builds/1/finished", {"n": 2}),
        ("builds/2/new", {"n": 3})]
    numbers = [e["s"] for e in second.events()]
    assert numbers == sorted(numbers) and numbers[0] > seen
    # since on a path already consumed: the missed events again, on one subscription
    assert (await second.consume("builds/*/*", since=numbers[1]))["msg"] == "OK"
    produce(rest, "builds/3/new", {"n": 4})
    await until(lambda: len(second.events()) == 5, "two more events")
    await second.synced()
    assert [e["m"] for e in second.events()[3:]] == [{"n": 3}, {"n": 4}]
    await closed(second)


@pytest_twisted.ensureDeferred
async def test_resume_from_events_no_longer_kept_is_410(tmp_path: Path) -> None:
    async with serving(tmp_path, resume_window=2) as rest:
        client = await connect(port_of(rest))
        await client.consume("builds/*/*")
        for n in range(4):
            produce(rest, f"builds/{n}/new", {"n": n})
        await until(lambda: len(client.events()) == 4, "four events")
        first = client.events()[0]["s"]
        for since in (first, 0, first + 100):
            reply = await client.consume("changes/*/*", since=since, _id=since)
            assert (reply["code"], reply["_id"], list(reply)) == (410, since,
                                                                  ["error", "code", "_id"])
            assert "read the state again" in reply["error"]
        produce(rest, "changes/1/new", {"changeid": 1})
        await client.synced()
        assert len(client.events()) == 4  # nothing consumed after a 410
        # the last two are kept: the 4th build's and the change's
        assert (await client.consume("changes/*/*", since=first + 2))["msg"] == "OK"
        await until(lambda: len(client.events()) == 5, "the missed change")
        assert client.events()[-1]["k"] == "changes/1/new"
        await closed(client)


# -- authorization ---------------------------------------------------------------------------

def NoControl() -> AuthService:
    """Anonymous callers, whom a rule refuses every control action: they may not see
    control messages (COMPAT 20)."""
    return AuthService(Config(authz={"allow": [{"match": "any_control",
                                                 "role": "admins"}]}))


@pytest_twisted.ensureDeferred
async def test_control_keys_are_for_those_who_may_control(tmp_path: Path) -> None:
    """COMPAT 20: upstream lets anyone consume ``control/...``."""
    async with serving(tmp_path, auth=NoControl()) as rest:
        client = await connect(port_of(rest))
        for path in ("control/builds/*/stop", "*/builds/1/stop", "*/*/*"):
            assert await client.consume(path, _id=path) == {
                "error": f"not allowed to consume '{path}'", "code": 403, "_id": path}
        assert (await client.consume("builds/*/*"))["msg"] == "OK"
        produce(rest, "control/builds/1/stop", {"reason": "x"})
        produce(rest, "builds/1/stop", {"buildid": 1})
        await until(lambda: client.events() != [], "an event")
        await client.synced()
        assert [e["k"] for e in client.events()] == ["builds/1/stop"]
        await closed(client)


# -- events of the data API --------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, int]]]:
    yield from own_server(request, tmp_path_factory, "ws", _fill, writable=True)


def _port(api: Api) -> int:
    return int(api.root.rsplit(":", 1)[1].strip("/"))


@pytest_twisted.ensureDeferred
async def test_events_of_update_methods_are_upstreams(
        server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    client = await connect(_port(api))
    for path in ("builds/*/*", "builders/*/builds/*/*", "steps/*/*", "logs/*/*"):
        await client.consume(path)
    build = await _running_build(api, masters["active"])
    buildid = build["buildid"]
    await api.connector.updates.finishBuild(buildid, 0)
    await until(lambda: any(e["k"] == f"builds/{buildid}/finished" for e in client.events()),
                "the finished build")
    await client.synced()
    keys = [e["k"] for e in client.events()]
    number, builderid = build["number"], build["builderid"]
    for key in (f"builds/{buildid}/new", f"builders/{builderid}/builds/{number}/new",
                f"steps/{build['steps'][0]}/finished", f"logs/{build['open_log']}/new",
                f"builders/{builderid}/builds/{number}/finished"):
        assert key in keys
    finished = [e for e in client.events() if e["k"] == f"builds/{buildid}/finished"]
    assert finished[0]["m"] == (await api.get(f"builds/{buildid}")).json["builds"][0]
    step = [e for e in client.events() if e["k"] == f"steps/{build['steps'][0]}/finished"]
    assert step[-1]["m"] == (await api.get(f"steps/{build['steps'][0]}")).json["steps"][0]
    await closed(client)


@pytest_twisted.ensureDeferred
async def test_events_of_control_actions(server: tuple[Api, dict[str, int]]) -> None:
    api, masters = server
    client = await connect(_port(api))
    await client.consume("control/builds/*/stop")
    await client.consume("builds/*/*")
    active = await _running_build(api, masters["active"])
    gone = await _running_build(api, masters["inactive"])
    await client.synced()
    start_at = len(client.events())
    reply = await api.rpc(f"builds/{active['buildid']}", "stop", {"reason": "user said so"})
    assert reply.code == 200
    reply = await api.rpc(f"builds/{gone['buildid']}", "stop", {"reason": "stuck"})
    assert reply.code == 200
    await until(lambda: len(client.events()) >= start_at + 3, "the events")
    await client.synced()
    events = client.events()[start_at:]
    assert [(e["k"]) for e in events] == [
        f"control/builds/{active['buildid']}/stop", f"builds/{gone['buildid']}/update",
        f"builds/{gone['buildid']}/finished"]
    assert events[0]["m"] == {"reason": "user said so"}
    assert events[2]["m"] == (await api.get(f"builds/{gone['buildid']}")).json["builds"][0]
    await closed(client)


# -- slow consumers ---------------------------------------------------------------------------

@implementer(ILogObserver)
class LogLines:
    """The log events of the ws module while it is open."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == ws.__name__:
            self.lines.append(event)

    def __enter__(self) -> LogLines:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *_: Any) -> None:
        globalLogPublisher.removeObserver(self)


async def _flood(rest: RestService, until_true: Callable[[], bool]) -> int:
    """Publish 16 KB events, one per reactor turn, until ``until_true()``; how many."""
    pad = "x" * 16384
    for n in range(20000):
        if until_true():
            return n
        produce(rest, f"builds/{n}/update", {"n": n, "pad": pad})
        await task.deferLater(reactor, 0, lambda: None)
    pytest.fail("the slow client was never closed", pytrace=False)


@pytest.mark.parametrize("comes_back", [True, False])
@pytest_twisted.ensureDeferred
async def test_a_client_that_does_not_read_is_closed_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comes_back: bool) -> None:
    if not comes_back:
        monkeypatch.setattr(ws, "CLOSE_TIMEOUT", 0.5)
    async with serving(tmp_path, live_buffer=65536) as rest:
        slow, fast = await connect(port_of(rest)), await connect(port_of(rest))
        for client in (slow, fast):
            await client.consume("builds/*/*")
        slow.transport.pauseProducing()  # type: ignore[union-attr]
        with LogLines() as log:
            sent = await _flood(rest, lambda: bool(log.lines))
        [line] = log.lines
        local: Any = slow.transport.getHost()  # type: ignore[union-attr]
        assert line["peer"] == f"tcp4:127.0.0.1:{local.port}"
        assert "too slow" in line["log_format"]
        if comes_back:
            # it reads again: what was sent, then the close frame
            slow.transport.resumeProducing()  # type: ignore[union-attr]
            was_clean, code, reason = await within(slow.closed, "the close")
            assert (was_clean, code) == (True, 1008)
            assert reason is not None and reason.startswith("too slow: ")
            assert "bytes of events unread" in reason
        else:
            # it is cut once the close handshake times out
            await until(lambda: rest.live.clients == 1, "the cut")  # type: ignore[union-attr]
            slow.transport.abortConnection()  # type: ignore[union-attr]
        await until(lambda: len(fast.events()) == sent, "every event for the other")
        assert [e["m"]["n"] for e in fast.events()] == list(range(sent))
        await closed(fast)


# -- keepalive -----------------------------------------------------------------------------------

class Deaf(Client):
    answers_pings = False


@pytest_twisted.ensureDeferred
async def test_pings_and_a_peer_that_does_not_answer_is_dropped(tmp_path: Path) -> None:
    async with serving(tmp_path, ping_interval=0.2) as rest:
        alive, deaf = await connect(port_of(rest)), await connect(port_of(rest), Deaf)
        await until(lambda: alive.pings >= 3 and deaf.pings >= 1, "pings")
        was_clean, _, _ = await within(deaf.closed, "the drop of the deaf peer")
        assert not was_clean
        await until(lambda: rest.live.clients == 1, "one client left")  # type: ignore[union-attr]
        await alive.synced()
        await closed(alive)


def test_no_pings_with_an_interval_of_0(tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 'ws.sqlite'}", create=True,
                              port=None, ping_interval=0))
    rest.prepare()
    assert rest.web is not None
    assert rest.web.app.ws.factory.autoPingInterval == 0


# -- the HTTP connection and the stop ------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_idle_websocket_outlives_client_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, client_timeout=0.2) as rest:
        client = await connect(port_of(rest))
        await client.consume("builds/*/*")
        assert rest.web is not None and rest.web.site is not None
        assert len(rest.web.site.connections) == 0  # (the HTTP channel let it go)
        await task.deferLater(reactor, 1.0, lambda: None)  # five client_timeouts
        produce(rest, "builds/1/new", {"buildid": 1})
        await until(lambda: client.events() != [], "an event")
        assert not client.closed.called
        await closed(client)


@pytest_twisted.ensureDeferred
async def test_a_stop_closes_the_websockets_with_1001(tmp_path: Path) -> None:
    rest = start(tmp_path)
    clients = [await connect(port_of(rest)) for _ in range(3)]
    await clients[0].consume("builds/*/*")
    await within(rest.stopService(), "the stop")
    assert rest.stopped_cleanly
    for client in clients:
        assert await within(client.closed, "the close") == (True, 1001, "server stopping")
