"""Bearer tokens, one test per way in that must stay shut: forged, expired, revoked,
malformed and empty tokens are 401 with ``WWW-Authenticate: Bearer`` on every channel
(REST, JSON-RPC, /config, /sse, /ws, /auth/tokens) and never anonymous (COMPAT 33); a
read token cannot control nor hear control messages; bad tokens are rate-limited per
address (429); no token reaches a log; a database outage is a 503, not a 401."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest

from buildbot_rest.auth.service import AuthService
from buildbot_rest.auth.tokens import TokenStore
from buildbot_rest.config import Config
from buildbot_rest.data.errors import TooManyRequests, Unauthenticated
from tests.www import test_tokens_api
from tests.www.test_tokens_api import Server, auth_config, bearer
from tests.www.test_ws import Client, connect

#: the server of the /auth/tokens tests (each backend, a real login), a module's own
server = test_tokens_api.server


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line written during the test (the access log's among them)."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event) or "")
        lines.append(repr(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


async def bad_tokens(server: Server) -> dict[str, str]:
    """A token of each kind that must be refused."""
    assert server.auth.tokens is not None
    good = await server.make("alice", scope="control")
    revoked = await server.make("alice", scope="control")
    await server.auth.tokens.revoke(revoked["id"])
    # made an hour ago for half an hour
    past = TokenStore(server.db, clock=lambda: time.time() - 3600)
    expired, _ = await past.create({"username": "alice"}, ["admins"], "control", 1800)
    last = "B" if good["token"][-1] != "B" else "C"
    return {
        "forged": good["token"][:-1] + last,
        "another id": good["token"].replace(f"bbrest_{good['id']}_",
                                            f"bbrest_{revoked['id']}_"),
        "revoked": revoked["token"],
        "expired": expired,
        "malformed": "bbrest_1_' OR 1=1 --",
        "empty": "",
        "huge": "x" * 6000,
        "unknown id": "bbrest_2147483647_" + "A" * 43,
        "id too big": "bbrest_99999999999_" + "A" * 43,
    }


def assert_invalid_token(reply: Any, what: str) -> None:
    assert reply.code == 401, (what, reply.code, reply.body)
    challenge = reply.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="buildbot", error="invalid_token"'), what
    assert reply.json, what


@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_401_on_every_channel(server: Server) -> None:
    for what, token in (await bad_tokens(server)).items():
        headers = bearer(token)
        assert_invalid_token(await server.api.get("builders", headers=headers), what)
        reply = await server.api.request("HEAD", "api/v2/builders", headers=headers)
        assert reply.code == 401, what
        reply = await server.api.rpc("forceschedulers/force", "force",
                                     {"builderid": 1, "reason": "x"}, headers=headers)
        assert_invalid_token(reply, what)
        assert reply.json["error"]["code"] == -32600, what
        assert_invalid_token(await server.api.get("/config", headers=headers), what)
        assert_invalid_token(await server.api.get("/sse/builds/*/new", headers=headers),
                             what)
        assert_invalid_token(await server.api.get("/auth/tokens", headers=headers), what)
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                   "Sec-WebSocket-Version": "13", **headers}
        assert_invalid_token(await server.api.get("/ws", headers=upgrade), what)


@pytest_twisted.ensureDeferred
async def test_a_good_token_opens_ws_and_sse(server: Server) -> None:
    made = await server.make("alice", scope="read")
    port = int(server.api.root.rsplit(":", 1)[1].rstrip("/"))
    client: Client = await connect(port, headers=bearer(made["token"]))
    try:
        reply = await client.reply({"cmd": "startConsuming", "path": "builds/*/new"})
        assert reply["code"] == 200
        refused = await client.reply({"cmd": "startConsuming",
                                      "path": "control/builds/*/stop"})
        assert refused["code"] == 403  # a read token hears no control messages
    finally:
        client.transport.abortConnection()  # type: ignore[union-attr]
    reply = await server.api.get("/sse/control/builds/*/stop",
                                 headers=bearer(made["token"]))
    assert reply.code == 403


@pytest_twisted.ensureDeferred
async def test_other_schemes_are_not_tokens(server: Server) -> None:
    made = await server.make("alice", scope="control")
    for header in (f"Token {made['token']}", f"Basic {made['token']}",
                   f"{made['token']}"):
        reply = await server.api.get("/config", headers={"Authorization": header})
        assert reply.code == 200, header
        assert reply.json["user"] == {"anonymous": True}, header
    # nor a token in the query (RFC 6750 2.3 is not offered: URLs end up in logs)
    reply = await server.api.get(f"/config?access_token={made['token']}")
    assert reply.json["user"] == {"anonymous": True}
    # the scheme's case does not matter (RFC 9110 11.1)
    reply = await server.api.get("/config",
                                 headers={"Authorization": f"bEaReR {made['token']}"})
    assert reply.json["user"]["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_a_read_token_cannot_control(server: Server) -> None:
    made = await server.make("alice", scope="read")  # alice is an admin: scope alone stops
    reply = await server.api.rpc("forceschedulers/force", "force",
                                 {"builderid": 1, "reason": "x"},
                                 headers=bearer(made["token"]))
    assert reply.code == 403
    assert reply.json["error"]["message"] == 'this token may only read (scope "read")'
    # and its roles are alice's: the same token with control scope may
    control = await server.make("alice", scope="control")
    reply = await server.api.rpc("forceschedulers/force", "force",
                                 {"builderid": 1, "reason": "x"},
                                 headers=bearer(control["token"]))
    assert reply.code == 200, reply.body


@pytest_twisted.ensureDeferred
async def test_no_token_in_any_log(server: Server, logged: list[str]) -> None:
    made = await server.make("alice", scope="control")
    token = made["token"]
    secret = token[-43:]
    await server.api.get("builders", headers=bearer(token))
    await server.api.get("builders", headers=bearer(token[:-1] + "Q"))
    await server.api.get("builders", headers=bearer(token + "x"))
    await server.api.rpc("forceschedulers/force", "force", {"builderid": 1, "reason": "x"},
                         headers=bearer(token))
    await server.call("revoke", path=f"/{made['id']}", headers=bearer(token))
    await server.api.get("builders", headers=bearer(token))
    assert server.auth.tokens is not None
    await server.auth.tokens.settle()
    text = "\n".join(logged)
    assert "GET /api/v2/builders HTTP/1.1" in text  # the access log is among them
    assert f"bearer token #{made['id']}" in text    # failures are logged, by id
    assert secret not in text and secret[:20] not in text
    assert (await server.login("alice")).split("=", 1)[1] not in text


def request_from(address: str, token: str) -> DummyRequest:
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", address, 5000)
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    return request


@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_rate_limited_per_address(server: Server) -> None:
    config = Config(db_url=server.db.url,
                    auth={**auth_config(), "login_failures": 3, "login_period": 60})
    auth = AuthService(config, server.db)
    good = await server.make("alice")
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await auth.caller(request_from("192.0.2.1", good["token"][:-1] + "!"))
    with pytest.raises(TooManyRequests) as raised:
        await auth.caller(request_from("192.0.2.1", "bbrest_1_x"))
    assert raised.value.retry_after > 0
    # A good token is served all the same: a 256-bit secret cannot be guessed, and
    # another client behind the same address (a proxy) must not lock it out.
    caller = await auth.caller(request_from("192.0.2.1", good["token"]))
    assert caller.user["username"] == "alice"
    with pytest.raises(TooManyRequests):  # (and bad ones are still refused with 429)
        await auth.caller(request_from("192.0.2.1", "bbrest_1_y"))
    caller = await auth.caller(request_from("192.0.2.2", good["token"]))  # others go on
    assert caller.user["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_database_outage_is_503_not_401(server: Server) -> None:
    made = await server.make("alice")
    server.db.pool.stop()
    try:
        reply = await server.api.get("builders", headers=bearer(made["token"]))
        assert reply.code == 503
        assert reply.header("retry-after")
        assert reply.header("www-authenticate") is None
    finally:
        server.db.pool.start()
    assert (await server.api.get("builders", headers=bearer(made["token"]))).code == 200


@pytest_twisted.ensureDeferred
async def test_a_token_is_never_ignored(server: Server) -> None:
    """A token after a tab, or beside another Authorization header, is not silently
    dropped (a bad token beside a good one was ignored: the last header won)."""
    import treq
    from twisted.web.http_headers import Headers
    made = await server.make("alice", scope="control")
    reply = await server.api.get("/config",
                                 headers={"Authorization": f"Bearer\t{made['token']}"})
    assert reply.json["user"]["username"] == "alice"
    reply = await server.api.get("/config", headers={"Authorization": "Bearer\tnope"})
    assert reply.code == 401
    for pair in ([f"Bearer {made['token']}x", f"Bearer {made['token']}"],
                 [f"Bearer {made['token']}", "Basic YTpi"]):
        response = await treq.get(server.api.root + "api/v2/builders", persistent=False,
                                  headers=Headers({"Authorization": pair}))
        body = await response.json()
        assert response.code == 401, pair
        assert "one Authorization header" in body["error"]
        assert response.headers.getRawHeaders("www-authenticate")[0].startswith("Bearer")


@pytest_twisted.ensureDeferred
async def test_bad_tokens_sent_together_are_limited_too(server: Server) -> None:
    """Tokens being checked count before their check ends: a burst of bad tokens from
    one address gets at most ``login_failures`` 401s, the rest 429."""
    config = Config(db_url=server.db.url,
                    auth={**auth_config(), "login_failures": 3, "login_period": 60})
    auth = AuthService(config, server.db)
    good = await server.make("alice")
    # (well formed, so that each is looked up in the database: checks overlap)
    wrong = good["token"][:-1] + ("A" if good["token"][-1] != "A" else "B")
    attempts = [defer.ensureDeferred(auth.caller(request_from("192.0.2.9", wrong)))
                for _ in range(20)]
    outcomes = await defer.DeferredList(attempts, consumeErrors=True)
    kinds = [type(result.value).__name__ for ok, result in outcomes if not ok]
    assert len(kinds) == 20
    assert kinds.count("Unauthenticated") <= 3, kinds
    assert kinds.count("TooManyRequests") >= 17, kinds
    # and the good token is still served from there
    assert (await auth.caller(request_from("192.0.2.9", good["token"]))).user[
        "username"] == "alice"
