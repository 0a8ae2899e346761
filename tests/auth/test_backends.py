"""The [auth] table and its backends (buildbot_rest.auth.backends): htpasswd files of
every hash kind (read again when changed), static users with hashed passwords, a
trusted proxy's header, no auth; [auth.groups]; configuration errors; and
``buildbot-rest hash-password`` (buildbot_rest.auth.cli)."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from passlib.hash import apr_md5_crypt, bcrypt, des_crypt, ldap_sha1, sha512_crypt
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest

from buildbot_rest.auth import cli
from buildbot_rest.auth.backends import (
    HtpasswdAuth,
    NoAuth,
    RemoteUserAuth,
    StaticUsersAuth,
    parse_auth,
)
from buildbot_rest.config import Config, ConfigError
from buildbot_rest.data.errors import ServiceUnavailable

#: fast bcrypt for tests
BCRYPT = bcrypt.using(rounds=4)


def write_htpasswd(path: Path, entries: dict[str, str]) -> None:
    path.write_text("".join(f"{user}:{entry}\n" for user, entry in entries.items()))


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    write_htpasswd(path, {
        "bcrypt": BCRYPT.hash("pw-bcrypt"),
        "sha": ldap_sha1.hash("pw-sha"),
        "apr1": apr_md5_crypt.hash("pw-apr1"),
        "crypt": des_crypt.hash("pw-crypt"),
        "sha512": sha512_crypt.using(rounds=1000).hash("pw-sha512"),
        "plain": "pw-plain",
    })
    return path


@pytest_twisted.ensureDeferred
async def test_htpasswd_every_hash_kind(htpasswd: Path) -> None:
    auth = parse_auth({"backend": "htpasswd", "htpasswd": str(htpasswd),
                       "groups": {"apr1": ["admins"]}})
    backend = auth.backend
    assert isinstance(backend, HtpasswdAuth)
    assert backend.frontend_auth() == {"name": "HTPasswdAuth"}
    for user in ("bcrypt", "sha", "apr1", "crypt", "sha512"):
        info = await backend.check_password(user, f"pw-{user}")
        expected: dict[str, Any] = {"username": user, "email": user}
        if user == "apr1":
            expected["groups"] = ["admins"]
        assert info == expected, user
        assert await backend.check_password(user, f"x-{user}") is None
    # upstream compared plain text: refused here (every password must be a hash)
    assert await backend.check_password("plain", "pw-plain") is None
    assert await backend.check_password("nobody", "pw") is None
    assert await backend.check_password("", "") is None
    assert await backend.check_password("bcrypt", "x" * 5000) is None
    assert await backend.check_password("bcrypt", "x" * 100) is None  # (beyond 72 bytes)
    assert auth.roles.roles_for({"username": "apr1"}) == {"admins"}


@pytest_twisted.ensureDeferred
async def test_htpasswd_read_again_when_changed_and_missing_later(htpasswd: Path) -> None:
    backend = parse_auth({"backend": "htpasswd", "htpasswd": str(htpasswd)}).backend
    assert await backend.check_password("sha", "pw-sha") is not None
    write_htpasswd(htpasswd, {"sha": ldap_sha1.hash("new"), "dave": BCRYPT.hash("d")})
    assert await backend.check_password("sha", "pw-sha") is None
    assert await backend.check_password("sha", "new") is not None
    assert await backend.check_password("dave", "d") is not None
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        os.unlink(htpasswd)
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await backend.check_password("dave", "d")
        errors = [formatEvent(e) for e in events if e.get("log_level").name == "error"]
        assert len(errors) == 1 and "cannot read" in errors[0], errors  # (once)
        # a malformed new file: the last good content stays
        htpasswd.write_text("dave\n")
        assert await backend.check_password("dave", "d") is not None
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert all("pw-" not in formatEvent(e) and "'d'" not in formatEvent(e) for e in events)


def test_htpasswd_missing_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"auth.htpasswd: cannot read .*nope"):
        parse_auth({"backend": "htpasswd", "htpasswd": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"auth\.htpasswd .* is required"):
        parse_auth({"backend": "htpasswd"})
    # (through the configuration file too)
    toml = tmp_path / "c.toml"
    toml.write_text(f'[auth]\nbackend = "htpasswd"\nhtpasswd = "{tmp_path / "nope"}"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_toml(toml)


@pytest_twisted.ensureDeferred
async def test_static_users() -> None:
    auth = parse_auth({"backend": "users", "users": {
        "alice": {"password": BCRYPT.hash("wonderland"), "email": "alice@example.org",
                  "full_name": "Alice", "groups": ["admins"]},
        "bob": {"password": sha512_crypt.using(rounds=1000).hash("builder")},
    }, "groups": {"alice": ["devs"], "bob": ["devs"]}})
    backend = auth.backend
    assert isinstance(backend, StaticUsersAuth)
    assert backend.frontend_auth() == {"name": "UserPasswordAuth"}
    assert await backend.check_password("alice", "wonderland") == {
        "username": "alice", "email": "alice@example.org", "full_name": "Alice",
        "groups": ["admins", "devs"]}
    assert await backend.check_password("bob", "builder") == {
        "username": "bob", "email": "bob", "groups": ["devs"]}
    assert await backend.check_password("alice", "Wonderland") is None
    assert await backend.check_password("carol", "wonderland") is None
    assert auth.roles.roles_for({"username": "alice"}) == {"admins", "devs"}


@pytest.mark.parametrize("password", ["wonderland", "$2b$12$short", "{SHA}abc",
                                      ldap_sha1.hash("x"), ""])
def test_static_users_refuse_plain_text_and_weak_hashes(password: str) -> None:
    with pytest.raises(ConfigError, match=r"auth\.users\.alice\.password must be a "
                       r"password hash .* `buildbot-rest hash-password` prints one"):
        parse_auth({"backend": "users", "users": {"alice": {"password": password}}})


def request_from(peer: Any, headers: dict[bytes, list[bytes]]) -> DummyRequest:
    request = DummyRequest([b"login"])
    request.client = peer
    for name, values in headers.items():
        request.requestHeaders.setRawHeaders(name, values)
    return request


def test_remote_user_only_from_trusted_proxies() -> None:
    auth = parse_auth({"backend": "remote_user",
                       "trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"],
                       "groups": {"carol": ["devs"]}})
    backend = auth.backend
    assert isinstance(backend, RemoteUserAuth)
    assert backend.frontend_auth() == {"name": "RemoteUserAuth"}
    header = {b"REMOTE_USER": [b"carol@realm"]}
    expected = {"realm": "realm", "username": "carol", "email": "carol", "groups": ["devs"]}
    for peer in (IPv4Address("TCP", "127.0.0.1", 1), IPv4Address("TCP", "10.1.2.3", 1),
                 IPv6Address("TCP", "2001:db8::5", 1),
                 IPv6Address("TCP", "::ffff:10.0.0.1", 1)):
        assert backend.user_from_proxy(request_from(peer, header)) == expected, peer
    for peer in (IPv4Address("TCP", "192.0.2.1", 1), IPv6Address("TCP", "::1", 1),
                 UNIXAddress(b"/tmp/s"), IPv6Address("TCP", "fe80::1%eth0", 1)):
        assert backend.user_from_proxy(request_from(peer, header)) is None, peer
    trusted = IPv4Address("TCP", "127.0.0.1", 1)
    for bad in ({}, {b"REMOTE_USER": [b"carol"]}, {b"REMOTE_USER": [b"a@b", b"c@d"]},
                {b"REMOTE_USER": [b"\xff@x"]}, {b"X-Other": [b"carol@realm"]}):
        assert backend.user_from_proxy(request_from(trusted, bad)) is None, bad
    # password logins do nothing here
    assert backend.login == "proxy"


def test_remote_user_header_and_regex() -> None:
    backend = parse_auth({"backend": "remote_user", "header": "X-Forwarded-User",
                          "header_regex": r"(?P<username>\w+)(:(?P<email>\S+))?",
                          "trusted_proxies": ["::1"]}).backend
    peer = IPv6Address("TCP", "::1", 1)
    assert backend.user_from_proxy(request_from(
        peer, {b"x-forwarded-user": [b"dan:dan@example.org"]})) == {
        "username": "dan", "email": "dan@example.org"}
    assert backend.user_from_proxy(request_from(peer, {b"x-forwarded-user": [b"dan"]})) \
        == {"username": "dan", "email": "dan"}


def test_none_is_the_default() -> None:
    auth = parse_auth({})
    assert isinstance(auth.backend, NoAuth)
    assert auth.backend.frontend_auth() == {"name": "NoAuth"}
    assert auth.backend.login is None
    assert auth.cookie_expiration == 7 * 24 * 3600
    assert (auth.rate_limit.failures, auth.rate_limit.period) == (10, 60)
    assert auth.realm == "buildbot"
    other = parse_auth({"cookie_expiration": 3600, "login_failures": 3, "login_period": 5.5,
                        "realm": "CI"})
    assert (other.cookie_expiration, other.rate_limit.failures, other.rate_limit.period,
            other.realm) == (3600, 3, 5.5, "CI")


@pytest.mark.parametrize(("table", "message"), [
    ({"backend": "ldap"}, "auth.backend must be one of 'none', 'htpasswd', 'users', "
     "'remote_user', not 'ldap'"),
    ({"bakend": "none"}, "unknown key auth.bakend"),
    ({"htpasswd": "/x"}, "auth.htpasswd is a setting of backend 'htpasswd', not of 'none'"),
    ({"backend": "users", "users": {"a": {"password": BCRYPT.hash("x")}},
      "trusted_proxies": []}, "auth.trusted_proxies is a setting of backend 'remote_user'"),
    ({"realm": 3}, "auth.realm must be string, not integer"),
    ({"realm": 'a"b'}, "auth.realm must be printable text"),
    ({"cookie_expiration": "1w"}, "auth.cookie_expiration must be integer or float"),
    ({"cookie_expiration": 0}, "auth.cookie_expiration must be a positive number"),
    ({"cookie_expiration": float("inf")}, "auth.cookie_expiration must be a positive"),
    ({"login_failures": True}, "auth.login_failures must be integer, not boolean"),
    ({"login_failures": 0}, "auth.login_failures must be at least 1"),
    ({"login_period": -1}, "auth.login_period must be a positive number"),
    ({"groups": {"bob": "admins"}}, "auth.groups.bob must be array, not string"),
    ({"groups": {"bob": [1]}}, r"auth.groups.bob\[0\] must be a non-empty string"),
    ({"groups": []}, "auth.groups must be table, not array"),
    ({"backend": "users"}, r"auth.users \(\[auth.users.<name>\] tables\) is required"),
    ({"backend": "users", "users": []}, "auth.users must be table, not array"),
    ({"backend": "users", "users": {}}, "auth.users must name at least one user"),
    ({"backend": "users", "users": {"a": {"password": BCRYPT.hash("x"), "mail": "x"}}},
     "unknown key auth.users.a.mail"),
    ({"backend": "users", "users": {"a": {}}}, "auth.users.a.password is required"),
    ({"backend": "users", "users": {"a": {"password": BCRYPT.hash("x"), "email": 1}}},
     "auth.users.a.email must be string"),
    ({"backend": "users", "users": {"a:b": {"password": BCRYPT.hash("x")}}},
     "a user name must be printable and without ':'"),
    ({"backend": "remote_user"}, "auth.trusted_proxies .* is required"),
    ({"backend": "remote_user", "trusted_proxies": []}, "must name at least one proxy"),
    ({"backend": "remote_user", "trusted_proxies": ["proxy.local"]},
     r"auth.trusted_proxies\[0\] must be an IP address or network"),
    ({"backend": "remote_user", "trusted_proxies": ["::1"], "header": "X User"},
     "auth.header must be an HTTP header name"),
    ({"backend": "remote_user", "trusted_proxies": ["::1"], "header_regex": "("},
     "auth.header_regex is not a valid regular expression"),
    ({"backend": "remote_user", "trusted_proxies": ["::1"], "header_regex": "(?P<u>.*)"},
     r"auth.header_regex must have a \(\?P<username>...\) group"),
    ({"roles": [{"from": "x"}]}, r"auth.roles\[0\].from must be one of"),
])
def test_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_auth(table)


def test_config_errors_at_load() -> None:
    with pytest.raises(ConfigError, match=r"unknown key auth\.nope"):
        Config(auth={"nope": 1})


def test_hash_password_command(capsys: pytest.CaptureFixture[str]) -> None:
    ns = argparse.Namespace(stdin=True)
    out = io.StringIO()
    assert cli.hash_password_command(ns, stdin=io.StringIO("s3cret pass\r\nignored\n"),
                                     stdout=out) == 0
    printed = out.getvalue()
    assert printed.endswith("\n") and printed.count("\n") == 1
    assert bcrypt.verify("s3cret pass", printed.strip())
    # what it prints is accepted as a static user's password
    parse_auth({"backend": "users", "users": {"a": {"password": printed.strip()}}})
    answers = iter(["one", "two"])
    assert cli.hash_password_command(argparse.Namespace(stdin=False), stdout=out,
                                     ask=lambda _prompt: next(answers)) == 1
    assert cli.hash_password_command(ns, stdin=io.StringIO("\n"), stdout=out) == 1
    assert cli.hash_password_command(ns, stdin=io.StringIO("x" * 73), stdout=out) == 1

    def no_terminal(_prompt: str) -> str:
        raise EOFError
    assert cli.hash_password_command(argparse.Namespace(stdin=False), stdout=out,
                                     ask=no_terminal) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == ["buildbot-rest hash-password: the two passwords differ",
                      "buildbot-rest hash-password: the password is empty",
                      "buildbot-rest hash-password: the password is longer than 72 bytes, "
                      "all bcrypt uses",
                      "buildbot-rest hash-password: no password given (without a "
                      "terminal, give it on standard input with --stdin)"]
    assert "s3cret" not in "".join(errors)
