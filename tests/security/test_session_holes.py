"""Upstream's session holes, each shown closed: redirect injection at /auth/login and
/auth/logout (COMPAT 18, 36), forged and tampered session cookies (COMPAT 17), the
cookie's HttpOnly and SameSite (COMPAT 17), a copy of the cookie after logout (COMPAT
36), and brute force (429 with Retry-After, logged without the password)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from tests.www.test_login import (
    ALICE_PASSWORD,
    BASE_URL,
    USERS,
    AuthServer,
    basic,
    running_auth,
    serve_auth,
    session_cookie,
)

ALICE = {"username": "alice", "email": "alice@example.org", "full_name": "Alice",
         "groups": ["admins"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('holes') / 'holes.sqlite'}"
    yield from serve_auth(url, {"backend": "users", "users": USERS,
                                "login_failures": 1000})


#: redirect values (as they appear in the query string) that must send to the site root
EVIL_REDIRECTS = [
    "%0d%0aSet-Cookie:%20x=y", "/%0d%0aSet-Cookie:%20x=y", "/a%0aLocation:%20http://evil",
    "//evil.example", "https://evil.example/", "http:/evil", "javascript:alert(1)",
    "%5Cevil.example", "/%5Cevil.example", "/%5C%5Cevil", "%2F%2Fevil.example",
    "/%2F/evil.example", "/%252F/evil.example", "/%25252F%25252Fevil", "%252F%252Fevil",
    "/%255Cevil", "/%09/evil", "/%E2%80%A8", "/%00", "%C0%AF%C0%AFevil", "evil",
    "", " /x", "/%2525252F%2525252F",
]


@pytest_twisted.ensureDeferred
async def test_redirect_confined_to_the_site(server: AuthServer) -> None:
    for value in EVIL_REDIRECTS:
        login, _ = await server.login(path=f"auth/login?redirect={value}")
        logout = await server.request("GET", f"auth/logout?redirect={value}")
        for reply in (login, logout):
            assert reply.code == 302, value
            assert reply.header("location") == BASE_URL + "#/", value
            assert len(reply.headers.getRawHeaders("set-cookie")) == 1, value
    # what stays inside the site is kept (escaped for the fragment)
    for value, kept in (("/builders/1", "/builders/1"), ("/a%20b?c=d", "/a%20b?c=d"),
                        ("/b%C3%BCild", "/b%C3%BCild"), ("/x%2523y", "/x%2523y")):
        reply = await server.request("GET", f"auth/logout?redirect={value}")
        assert reply.header("location") == BASE_URL + "#" + kept, value


@pytest_twisted.ensureDeferred
async def test_forged_and_tampered_cookies_are_anonymous(server: AuthServer) -> None:
    secret = server.auth.sessions.secret
    assert secret is not None
    _, cookie = await server.login()
    token = cookie.split("=", 1)[1]
    header, payload, signature = token.split(".")
    now = int(time.time())
    admin = jwt.utils.base64url_encode(json.dumps(
        {"user_info": {"username": "admin", "groups": ["admins"]},
         "exp": now + 3600}).encode()).decode()
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    forged = [
        jwt.encode({"user_info": {"username": "admin"}, "exp": now + 3600}, None, "none"),
        f"{none_header}.{admin}.",
        f"{none_header}.{payload}.",
        jwt.encode({"user_info": {"username": "admin"}, "exp": now + 3600},
                   "not the server's key, but long enough", "HS256"),
        f"{header}.{admin}.{signature}",
        jwt.encode({"user_info": ALICE, "exp": now - 1}, secret, "HS256"),  # expired
        "garbage", token[:-3],
    ]
    for value in forged:
        assert await server.whoami(f"TWISTED_SESSION={value}") == {"anonymous": True}, value
        reply = await server.request("GET", "api/v2/builders",
                                     cookie=f"TWISTED_SESSION={value}")
        assert reply.code == 200, value
    assert await server.whoami(cookie) == ALICE


@pytest_twisted.ensureDeferred
async def test_cookie_is_httponly_and_samesite(server: AuthServer) -> None:
    reply, _ = await server.login()
    (line,) = reply.headers.getRawHeaders("set-cookie")
    attributes = {part.strip().split("=")[0].lower() for part in line.split(";")}
    assert {"httponly", "samesite"} <= attributes
    assert "samesite=lax" in line.lower()


@pytest_twisted.ensureDeferred
async def test_copy_of_the_cookie_refused_after_logout(server: AuthServer) -> None:
    _, cookie = await server.login()
    stolen = cookie
    assert await server.whoami(stolen) == ALICE
    out = await server.request("GET", "auth/logout", cookie=cookie)
    assert out.code == 302
    assert await server.whoami(stolen) == {"anonymous": True}
    # a new session of the same user works
    _, fresh = await server.login()
    assert await server.whoami(fresh) == ALICE
    assert await server.whoami(stolen) == {"anonymous": True}


@pytest_twisted.ensureDeferred
async def test_brute_force_429_and_no_password_in_log(tmp_path: object) -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        async with running_auth(f"sqlite:///{tmp_path}/bf.sqlite",
                                {"backend": "users", "users": USERS, "login_failures": 3,
                                 "login_period": 30}) as bf:
            for _ in range(5):  # (successes do not count)
                assert (await bf.login())[0].code == 302
            for guess in ("guess-one", "guess-two", "guess-three"):
                reply = await bf.request("GET", "auth/login",
                                         headers={"Authorization": basic("alice", guess)})
                assert reply.code == 401
            for password in ("guess-four", ALICE_PASSWORD):
                reply = await bf.request("GET", "auth/login",
                                         headers={"Authorization": basic("alice",
                                                                         password)})
                assert reply.code == 429
                assert reply.header("content-type") == "application/json; charset=utf-8"
                retry = reply.header("retry-after")
                assert retry is not None and 1 <= int(retry) <= 30
                assert "too many" in reply.json["error"]
                assert session_cookie(reply) == ""
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(formatEvent(e) for e in events)
    assert text.count("failed login of 'alice' from 127.0.0.1") == 3
    for secret in ("guess-", ALICE_PASSWORD, "Basic "):
        assert secret not in text


@pytest_twisted.ensureDeferred
async def test_guesses_sent_together_are_limited_too(tmp_path: object) -> None:
    """A burst of guesses sent at once must not all be checked before the first fails
    (a password check takes time): past ``login_failures`` the rest are 429, the right
    password among them included."""
    async with running_auth(f"sqlite:///{tmp_path}/burst.sqlite",
                            {"backend": "users", "users": USERS, "login_failures": 5,
                             "login_period": 60}) as bf:
        guesses = [f"guess-{i}" for i in range(29)] + [ALICE_PASSWORD]
        replies = await defer.gatherResults([
            defer.ensureDeferred(bf.request("GET", "auth/login", headers={
                "Authorization": basic("alice", guess)})) for guess in guesses])
        codes = [reply.code for reply in replies]
        assert codes.count(401) + codes.count(302) <= 5, codes
        assert codes.count(429) >= 25, codes
        assert codes[-1] == 429, codes


@pytest_twisted.ensureDeferred
async def test_429_has_its_reason_phrase(tmp_path: object) -> None:
    """Twisted knows no phrase for 429 ("Unknown Status"): RFC 6585's is sent."""
    import treq
    async with running_auth(f"sqlite:///{tmp_path}/phrase.sqlite",
                            {"backend": "users", "users": USERS, "login_failures": 1,
                             "login_period": 60}) as bf:
        for expected in (401, 429):
            response = await treq.get(bf.root + "auth/login", persistent=False, headers={
                "Authorization": basic("alice", "wrong")})
            await response.content()
            assert response.code == expected
        assert response.phrase == b"Too Many Requests"
