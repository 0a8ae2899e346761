"""A /ws connection or an /sse stream finds its caller once, when it opens: it must not
outlive the credentials it was opened with. A revoked bearer token, an expired one, and
a session ended by a logout end the connection (/ws: close code 1008) at the next check,
or at the expiry itself; an anonymous client is not watched at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_twisted

from buildbot_rest.auth.service import ANONYMOUS_CALLER
from tests.www.test_authz_http import BACKENDS, database
from tests.www.test_authz_live import RULES, Server, serve_with_auth
from tests.www.test_disconnect import until, within
from tests.www.test_sse import open_stream
from tests.www.test_ws import Client, closed, connect

#: seconds between checks here (a minute in service)
CHECK = 0.1


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = database(request, tmp_path_factory, "creds")
    for made in serve_with_auth(url, RULES):
        made.auth.prepare_sync()  # (the session secret, for the cookies below)
        made.web.ws.recheck_every = made.web.sse.recheck_every = CHECK
        yield made


def new_token(server: Server, **options: object) -> tuple[str, int]:
    assert server.auth.tokens is not None
    token, info = server.auth.tokens.create_sync({"username": "watched"}, roles=[],
                                                 scope="read", **options)
    return token, info.id


async def ws_with(server: Server, headers: dict[str, str]) -> Client:
    client = await connect(server.port, headers=headers)
    assert (await client.consume("builds/*/*"))["code"] == 200
    return client


@pytest_twisted.ensureDeferred
async def test_a_revoked_token_ends_its_websocket(server: Server) -> None:
    token, token_id = new_token(server)
    client = await ws_with(server, {"Authorization": f"Bearer {token}"})
    other = await ws_with(server, server.bearer("reader"))
    try:
        assert server.auth.tokens is not None
        await server.auth.tokens.revoke(token_id)
        _, code, reason = await within(client.closed, "the close of the revoked one")
        assert code == 1008
        assert reason is not None and "bearer token" in reason and "revoked" in reason
        assert not other.closed.called  # (its own token still holds)
    finally:
        await closed(other)


@pytest_twisted.ensureDeferred
async def test_an_expiring_token_ends_its_websocket_at_expiry(server: Server) -> None:
    token, _ = new_token(server, expires_in=1)
    client = await ws_with(server, {"Authorization": f"Bearer {token}"})
    _, code, reason = await within(client.closed, "the close at expiry")
    assert code == 1008
    assert reason is not None and "expired" in reason


@pytest_twisted.ensureDeferred
async def test_a_revoked_token_ends_its_sse_stream(server: Server) -> None:
    token, token_id = new_token(server)
    stream = await open_stream(server.port, "/sse/builds/*/*",
                               {"Authorization": f"Bearer {token}"})
    try:
        assert server.auth.tokens is not None
        await server.auth.tokens.revoke(token_id)
        await until(lambda: stream.client.closed.called, "the end of the stream")
    finally:
        stream.close()


@pytest_twisted.ensureDeferred
async def test_a_logout_ends_the_sessions_websocket(server: Server) -> None:
    cookie = "TWISTED_SESSION=" + server.auth.sessions.encode(
        {"username": "carol", "email": "carol@example.org"})
    client = await ws_with(server, {"Cookie": cookie})
    reply = await server.api.request("GET", "auth/logout", raw=True,
                                     headers={"Cookie": cookie})
    assert reply.code == 302
    _, code, reason = await within(client.closed, "the close after the logout")
    assert code == 1008
    assert reason is not None and "session" in reason


@pytest_twisted.ensureDeferred
async def test_anonymous_and_untouched_clients_stay(server: Server) -> None:
    """No watch for who has nothing to lose; a valid token's client stays open across
    several checks."""
    anonymous = await ws_with(server, {})
    kept = await ws_with(server, server.bearer("secret"))
    try:
        await _sleep(CHECK * 5)
        assert not anonymous.closed.called and not kept.closed.called
        assert not server.auth.revocable(ANONYMOUS_CALLER)
    finally:
        await closed(anonymous)
        await closed(kept)


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor, task
    await task.deferLater(reactor, seconds, lambda: None)
