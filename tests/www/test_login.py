"""``/auth/login`` and ``/auth/logout`` (buildbot_rest.www.login) over a listening port:
every backend, the cookie's attributes, upstream's redirect, JSON errors, methods, and
sessions off on a database without a secret."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from passlib.hash import bcrypt, ldap_sha1
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.www import WebApp
from tests.www.conftest import Reply

BASE_URL = "http://testserver/"
ALICE_PASSWORD = "wonderland"
USERS = {
    "alice": {"password": bcrypt.using(rounds=4).hash(ALICE_PASSWORD),
              "email": "alice@example.org", "full_name": "Alice", "groups": ["admins"]},
    "zoë": {"password": bcrypt.using(rounds=4).hash("pässwörd:x")},
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class AuthServer:
    """A server with an auth service over its own database, on a listening port."""

    root: str
    auth: AuthService
    db: Database

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      cookie: str | None = None) -> Reply:
        fields = {k: [v] for k, v in (headers or {}).items()}
        if cookie is not None:
            fields["Cookie"] = [cookie]
        response = await treq.request(method, self.root + path, headers=fields,
                                      allow_redirects=False, persistent=False)
        return Reply(response.code, response.headers, await response.content())

    async def login(self, user: str = "alice", password: str = ALICE_PASSWORD,
                    path: str = "auth/login") -> tuple[Reply, str]:
        """Log in; the reply and the cookie to send back (``name=value``)."""
        reply = await self.request("GET", path, headers={"Authorization": basic(user,
                                                                                password)})
        return reply, session_cookie(reply)

    async def whoami(self, cookie: str | None = None, **headers: str) -> Any:
        reply = await self.request("GET", "config", cookie=cookie, headers=headers)
        assert reply.code == 200, reply.body
        return reply.json["user"]


def set_cookies(reply: Reply) -> list[SimpleCookie]:
    found = []
    for line in reply.headers.getRawHeaders("set-cookie") or []:
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        found.append(cookie)
    return found


def session_cookie(reply: Reply) -> str:
    """``name=value`` of the session cookie the reply sets ("" when none)."""
    for cookie in set_cookies(reply):
        for name, morsel in cookie.items():
            if name.startswith("TWISTED_"):
                return f"{name}={morsel.value}"
    return ""


def _build(url: str, auth_table: dict[str, Any], *, prepare: bool,
           clock: Any) -> tuple[Site, AuthService, Database]:
    db = Database(url, pool_size=2)
    db.prepare_sync(create=True)
    auth = AuthService(Config(auth=auth_table), db, clock=clock)
    if prepare:
        auth.prepare_sync()
    db.start()
    connector = DataConnector(db, base_url=BASE_URL)
    return Site(WebApp(connector, auth=auth).resource()), auth, db


LISTEN = "tcp:0:interface=127.0.0.1"


def serve_auth(url: str, auth_table: dict[str, Any], *, prepare: bool = True,
               clock: Any = time.time) -> Iterator[AuthServer]:
    """Serve a new database at ``url`` with ``[auth]`` = ``auth_table`` until closed
    (for fixtures: it waits on the reactor, which tests are already running in)."""
    site, auth, db = _build(url, auth_table, prepare=prepare, clock=clock)
    port = pytest_twisted.blockon(endpoints.serverFromString(reactor, LISTEN).listen(site))
    try:
        yield AuthServer(f"http://127.0.0.1:{port.getHost().port}/", auth, db)
    finally:
        pytest_twisted.blockon(port.stopListening())
        db.stop()


@contextlib.asynccontextmanager
async def running_auth(url: str, auth_table: dict[str, Any], *, prepare: bool = True,
                       clock: Any = time.time) -> AsyncIterator[AuthServer]:
    """:func:`serve_auth` inside a test (``async with running_auth(...) as server``)."""
    site, auth, db = _build(url, auth_table, prepare=prepare, clock=clock)
    port = await endpoints.serverFromString(reactor, LISTEN).listen(site)
    try:
        yield AuthServer(f"http://127.0.0.1:{port.getHost().port}/", auth, db)
    finally:
        await port.stopListening()
        db.stop()


@pytest.fixture(scope="module")
def users_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('login') / 'users.sqlite'}"
    yield from serve_auth(url, {"backend": "users", "users": USERS,
                                "groups": {"alice": ["devs"]}})


@pytest_twisted.ensureDeferred
async def test_login_and_logout(users_server: AuthServer) -> None:
    server = users_server
    assert (await server.request("GET", "config")).json["auth"] == {"name":
                                                                    "UserPasswordAuth"}
    reply, cookie = await server.login(path="auth/login?redirect=/builders/1%3Fx=a%20b")
    assert reply.code == 302
    assert reply.header("location") == BASE_URL + "#/builders/1?x=a%20b"
    assert reply.header("cache-control") == "no-store"
    assert reply.body == b""
    (line,) = reply.headers.getRawHeaders("set-cookie")
    attributes = [part.strip().lower() for part in line.split(";")[1:]]
    assert sorted(a.split("=")[0] for a in attributes) == [
        "expires", "httponly", "max-age", "path", "samesite"]
    assert "path=/" in attributes and "samesite=lax" in attributes
    assert "max-age=604800" in attributes
    assert "secure" not in attributes  # (plain HTTP: no Secure, upstream's name)
    assert cookie.startswith("TWISTED_SESSION=")
    user = {"username": "alice", "email": "alice@example.org", "full_name": "Alice",
            "groups": ["admins", "devs"]}
    assert await server.whoami(cookie) == user
    assert (await server.request("GET", "api/v2/builders", cookie=cookie)).code == 200

    out = await server.request("GET", "auth/logout?redirect=/about", cookie=cookie)
    assert out.code == 302 and out.header("location") == BASE_URL + "#/about"
    cleared = set_cookies(out)[0]["TWISTED_SESSION"]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert await server.whoami(cookie) == {"anonymous": True}
    # (logging in again works; POST logs out too)
    _, cookie = await server.login()
    assert await server.whoami(cookie) == user
    out = await server.request("POST", "auth/logout", cookie=cookie)
    assert out.code == 302 and out.header("location") == BASE_URL + "#/"
    assert await server.whoami(cookie) == {"anonymous": True}


@pytest_twisted.ensureDeferred
async def test_utf8_credentials(users_server: AuthServer) -> None:
    reply, cookie = await users_server.login("zoë", "pässwörd:x")
    assert reply.code == 302 and reply.header("location") == BASE_URL + "#/"
    assert await users_server.whoami(cookie) == {"username": "zoë", "email": "zoë"}


@pytest_twisted.ensureDeferred
async def test_no_or_bad_credentials(users_server: AuthServer) -> None:
    server = users_server
    challenge = 'Basic realm="buildbot", charset="UTF-8"'
    for headers in ({}, {"Authorization": "Bearer x"},
                    {"Authorization": basic("alice", "wrong")},
                    {"Authorization": basic("mallory", ALICE_PASSWORD)},
                    {"Authorization": "Basic !!!"},
                    {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
                    {"Authorization": "Basic " + base64.b64encode(b"\xff:x").decode()}):
        reply = await server.request("GET", "auth/login", headers=headers)
        assert reply.code == 401, headers
        assert reply.header("www-authenticate") == challenge
        assert reply.header("content-type") == "application/json; charset=utf-8"
        assert set(reply.json) == {"error"}
        assert session_cookie(reply) == ""
    head = await server.request("HEAD", "auth/login")
    assert head.code == 401 and head.body == b""


@pytest_twisted.ensureDeferred
async def test_methods_and_paths(users_server: AuthServer) -> None:
    server = users_server
    for method, path, allow in (("POST", "auth/login", "GET, HEAD"),
                                ("PUT", "auth/logout", "GET, HEAD, POST"),
                                ("DELETE", "auth/login", "GET, HEAD")):
        reply = await server.request(method, path)
        assert reply.code == 405 and reply.header("allow") == allow
        assert "error" in reply.json
    for path in ("auth/nothing", "auth/login/x", "auth/logout/"):
        reply = await server.request("GET", path)
        assert reply.code == 404 and "error" in reply.json, path
    head = await server.request("HEAD", "auth/logout")
    assert head.code == 302 and head.body == b""


@pytest_twisted.ensureDeferred
async def test_htpasswd_login(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"bob:{ldap_sha1.hash('builder')}\n")
    async with running_auth(f"sqlite:///{tmp_path / 'h.sqlite'}",
                            {"backend": "htpasswd", "htpasswd": str(path)}) as server:
        assert (await server.request("GET", "config")).json["auth"] == {"name":
                                                                        "HTPasswdAuth"}
        reply, cookie = await server.login("bob", "builder")
        assert reply.code == 302
        assert await server.whoami(cookie) == {"username": "bob", "email": "bob"}
        assert (await server.login("bob", "builder2"))[0].code == 401


@pytest_twisted.ensureDeferred
async def test_no_auth(tmp_path: Path) -> None:
    async with running_auth(f"sqlite:///{tmp_path / 'n.sqlite'}", {}) as server:
        assert (await server.request("GET", "config")).json["auth"] == {"name": "NoAuth"}
        reply = await server.request("GET", "auth/login",
                                     headers={"Authorization": basic("a", "b")})
        assert reply.code == 404 and "nothing to log in" in reply.json["error"]
        out = await server.request("GET", "auth/logout?redirect=/x")
        assert out.code == 302 and out.header("location") == BASE_URL + "#/x"


@pytest_twisted.ensureDeferred
async def test_remote_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    async with running_auth(url, {"backend": "remote_user",
                                  "trusted_proxies": ["127.0.0.0/8"],
                                  "groups": {"carol": ["admins"]}}) as server:
        assert (await server.request("GET", "config")).json["auth"] == {"name":
                                                                        "RemoteUserAuth"}
        carol = {"realm": "realm", "username": "carol", "email": "carol",
                 "groups": ["admins"]}
        assert await server.whoami(REMOTE_USER="carol@realm") == carol
        reply = await server.request("GET", "auth/login?redirect=/builds",
                                     headers={"REMOTE_USER": "carol@realm"})
        assert reply.code == 302 and reply.header("location") == BASE_URL + "#/builds"
        assert await server.whoami(session_cookie(reply)) == carol
        for headers in ({}, {"REMOTE_USER": "no-realm"}):
            refused = await server.request("GET", "auth/login", headers=headers)
            assert refused.code == 403 and "error" in refused.json
    # the same header from an address that is not a trusted proxy: ignored
    async with running_auth(url, {"backend": "remote_user",
                                  "trusted_proxies": ["10.0.0.0/8"]}) as server:
        assert await server.whoami(REMOTE_USER="carol@realm") == {"anonymous": True}
        refused = await server.request("GET", "auth/login",
                                       headers={"REMOTE_USER": "carol@realm"})
        assert refused.code == 403 and session_cookie(refused) == ""


@pytest_twisted.ensureDeferred
async def test_sessions_off_answer_503(tmp_path: Path) -> None:
    # (the secret was never read: as on a read-only database that has none)
    async with running_auth(f"sqlite:///{tmp_path / 'o.sqlite'}",
                            {"backend": "users", "users": USERS}, prepare=False) as server:
        reply, cookie = await server.login()
        assert reply.code == 503 and "sessions are off" in reply.json["error"]
        assert cookie == ""
        with server.db.engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from object_state")).scalar() == 0




@pytest_twisted.ensureDeferred
async def test_redirects_follow_the_origin_used_when_base_url_is_derived(
        tmp_path: Path) -> None:
    """Without ``base_url`` (derived from the port: ``http://localhost:<port>/``), a
    browser at ``http://127.0.0.1:<port>/`` is sent back there, where its new cookie
    is: as ``/config``'s ``buildbotURL`` (the UI at 127.0.0.1 looked logged out)."""
    from buildbot_rest.service import RestService
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 'derived.sqlite'}",
                              create=True, port="tcp:0:interface=127.0.0.1",
                              auth={"backend": "users", "users": USERS}))
    rest.startService()
    try:
        port = rest.web.port.getHost().port  # type: ignore[union-attr]
        root = f"http://127.0.0.1:{port}/"
        server = AuthServer(root, rest.auth, rest.db)  # type: ignore[arg-type]
        reply, cookie = await server.login(path="auth/login?redirect=/builders")
        assert reply.code == 302 and cookie
        assert reply.header("location") == f"{root}#/builders"
        config = (await server.request("GET", "config", cookie=cookie)).json
        assert config["buildbotURL"] == root
        assert config["user"]["username"] == "alice"
        reply = await server.request("GET", "auth/logout?redirect=/x", cookie=cookie)
        assert reply.header("location") == f"{root}#/x"
    finally:
        await rest.stopService()
