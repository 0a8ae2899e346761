"""AuthService: who calls (a bearer token, then a trusted proxy's header, then the
session cookie, else anonymous), a read-only token refused control, and whether the
credentials of a long connection still hold (expiry, revocation, logout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from buildbot_rest.auth import tables
from buildbot_rest.auth.service import ANONYMOUS_CALLER, AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.data.errors import Forbidden, Unauthenticated
from buildbot_rest.db import Database

PROXY = "10.1.2.3"


class Request(DummyRequest):
    """A request from ``address`` with ``headers`` (DummyRequest lacks what the auth
    service reads: the peer, TLS, cookies)."""

    def __init__(self, headers: dict[str, str], address: str = "192.0.2.7") -> None:
        super().__init__([b"api", b"v2", b"builders"])
        for name, value in headers.items():
            self.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        self._peer = IPv4Address("TCP", address, 40000)

    def getClientAddress(self) -> IPv4Address:
        return self._peer

    def isSecure(self) -> bool:
        return False

    def getCookie(self, key: bytes) -> bytes | None:
        jar: SimpleCookie = SimpleCookie()
        jar.load((self.getHeader(b"cookie") or b"").decode())
        morsel = jar.get(key.decode())
        return morsel.value.encode() if morsel is not None else None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AuthService]:
    db = Database(f"sqlite:///{tmp_path / 'auth.sqlite'}", pool_size=2)
    db.prepare_sync(create=True)
    config = Config(auth={"backend": "remote_user", "trusted_proxies": [PROXY],
                          "groups": {"carol": ["admins"]}})
    auth = AuthService(config, db)
    auth.prepare_sync()
    db.start()
    try:
        yield auth
    finally:
        db.stop()


def cookie_of(auth: AuthService, user: dict[str, str]) -> str:
    return "TWISTED_SESSION=" + auth.sessions.encode(user)


@pytest_twisted.ensureDeferred
async def test_who_calls_in_order(service: AuthService) -> None:
    assert service.tokens is not None
    token, info = await service.tokens.create({"username": "tok"}, roles=["r"],
                                              scope="read", expires_in=3600)
    cookie = cookie_of(service, {"username": "carol", "email": "carol@example.org"})
    everything = {"Authorization": f"Bearer {token}", "Cookie": cookie,
                  "REMOTE_USER": "dan@realm"}
    # a token first, whatever else the request carries
    caller = await service.caller(Request(everything, PROXY))
    assert (caller.user["username"], caller.roles, caller.scope, caller.token_id) == (
        "tok", frozenset({"r"}), "read", info.id)
    assert caller.expires is not None and caller.expires > time.time()
    # then the header of a trusted proxy (ignored from anyone else)
    del everything["Authorization"]
    caller = await service.caller(Request(everything, PROXY))
    assert caller.user["username"] == "dan" and caller.issued is None
    caller = await service.caller(Request(everything))
    assert caller.user["username"] == "carol"
    # then the cookie: its user, roles from the configuration, and its times
    assert caller.roles == {"admins"}
    assert caller.issued is not None and caller.expires is not None
    assert caller.expires - caller.issued == pytest.approx(7 * 24 * 3600, abs=1)
    # and nothing: anonymous; a request's caller is found once
    request = Request({})
    assert await service.caller(request) is ANONYMOUS_CALLER
    assert service.user_for(request) == {"anonymous": True}


@pytest_twisted.ensureDeferred
async def test_a_bad_token_is_401_even_with_a_good_cookie(service: AuthService) -> None:
    cookie = cookie_of(service, {"username": "carol"})
    with pytest.raises(Unauthenticated) as raised:
        await service.caller(Request({"Authorization": "Bearer bbrest_1_nope",
                                      "Cookie": cookie}))
    assert raised.value.challenge.startswith('Bearer realm="buildbot"')


@pytest_twisted.ensureDeferred
async def test_a_read_token_may_not_control(service: AuthService) -> None:
    reader = Caller(user={"username": "r"}, scope="read", token_id=1)
    assert not service.may_control(reader)
    assert not service.may_subscribe(reader, ("control", "builds", None, "stop"))
    assert service.may_subscribe(reader, ("builds", None, "new"))
    with pytest.raises(Forbidden, match="may only read"):
        await service.authorize_control(reader, None, {}, "stop", {})  # type: ignore[arg-type]
    assert service.may_control(Caller(user={"username": "w"}, token_id=2))


@pytest_twisted.ensureDeferred
async def test_credentials_that_stop_holding(service: AuthService) -> None:
    assert service.tokens is not None
    assert not service.revocable(ANONYMOUS_CALLER)
    proxied = await service.caller(Request({"REMOTE_USER": "dan@realm"}, PROXY))
    assert not service.revocable(proxied)
    # a token: revoked
    token, info = await service.tokens.create({"username": "tok"}, expires_in=3600)
    caller = await service.caller(Request({"Authorization": f"Bearer {token}"}))
    assert service.revocable(caller) and await service.still_valid(caller)
    await service.tokens.revoke(info.id)
    assert not await service.still_valid(caller)
    # expired (by the caller's own expiry)
    assert not await service.still_valid(Caller(user={"username": "x"},
                                                expires=time.time() - 1))
    # a session: a logout of its user after it was issued
    caller = await service.caller(Request({"Cookie": cookie_of(service,
                                                                {"username": "carol"})}))
    assert await service.still_valid(caller)
    with service.db.engine.begin() as conn:  # type: ignore[union-attr]
        tables.record_logout(conn, "username:carol", int(time.time() * 1000) + 1)
    assert not await service.still_valid(caller)
