"""Upstream's session cookie (buildbot_rest.auth.session): the shared secret in
object_state, created as upstream creates it (a concurrent creator, a read-only
database); the JWT (HS256 only: forged, tampered, expired and odd tokens are no
session, COMPAT 17); logouts refusing older copies (COMPAT 36); on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from buildbot_rest.auth import session as session_module
from buildbot_rest.auth.backends import parse_auth
from buildbot_rest.auth.session import Sessions, cookie_name
from buildbot_rest.db import Database
from buildbot_rest.db.schema import object_state, objects

ALICE = {"username": "alice", "email": "alice@example.org"}
WEEK = 7 * 24 * 3600


class Clock:
    """Epoch seconds that tests move; they start at the current second (so that
    PyJWT's own checks of the times, in these tests, agree)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now


class CookieRequest:
    """What Sessions reads of a request: its cookie and whether it came over TLS."""

    def __init__(self, cookies: dict[bytes, bytes] | None = None, secure: bool = False):
        self.cookies = cookies or {}
        self.secure = secure
        self.added: list[tuple[bytes, bytes, dict[str, Any]]] = []

    def isSecure(self) -> bool:
        return self.secure

    def getCookie(self, name: bytes) -> bytes | None:
        return self.cookies.get(name)

    def addCookie(self, name: bytes, value: bytes, **kw: Any) -> None:
        self.added.append((name, value, kw))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, pool_size=2)
    database.prepare_sync(create=True)
    database.start()
    yield database
    database.stop()


def stored_secrets(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return [json.loads(r.value_json) for r in conn.execute(
            sa.select(object_state.c.value_json).select_from(
                object_state.join(objects, objects.c.id == object_state.c.objectid))
            .where(objects.c.name == "www",
                   objects.c.class_name == "buildbot.www.service.WWWService",
                   object_state.c.name == "session_secret"))]


def make(db: Database | None, clock: Clock | None = None, **auth: Any) -> Sessions:
    sessions = Sessions(parse_auth(auth), db, clock=clock or Clock())
    sessions.prepare_sync()
    return sessions


def test_secret_created_as_upstream_and_shared(db: Database) -> None:
    first = make(db)
    assert first.secret is not None and len(first.secret) == 32
    int(first.secret, 16)  # (hex digits)
    assert stored_secrets(db) == [first.secret]
    assert make(db).secret == first.secret  # (read back, not made again)
    assert stored_secrets(db) == [first.secret]
    assert make(None).secret is None


def test_secret_race_with_another_creator(db: Database,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = make(db).secret
    real = session_module._read_secret
    calls = []

    def late(conn: sa.Connection) -> Any:
        # The first read misses the row that another master has just written: our
        # insert then fails on the unique index, and theirs is read back.
        calls.append(1)
        return None if len(calls) == 1 else real(conn)
    monkeypatch.setattr(session_module, "_read_secret", late)
    assert make(db).secret == theirs
    assert len(calls) == 2
    assert stored_secrets(db) == [theirs]


def test_objects_row_of_upstream_reused(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(objects.insert().values(name="www",
                                             class_name="buildbot.www.service.WWWService"))
    secret = make(db).secret
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(objects)).scalar() == 1
    assert stored_secrets(db) == [secret]


def test_read_only_database_leaves_sessions_off(db: Database) -> None:
    @sa.event.listens_for(db.engine, "connect")
    def read_only(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA query_only=ON" if db.dialect == "sqlite" else
                       "SET default_transaction_read_only = on")
        cursor.close()
        if db.dialect != "sqlite":
            dbapi_conn.commit()  # (else the pool's rollback undoes the SET)
    db.engine.dispose()
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        sessions = make(db)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert sessions.secret is None and not sessions.available
    errors = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert len(errors) == 1 and "sessions are off" in errors[0]


def test_secret_not_a_string(db: Database) -> None:
    make(db)
    with db.engine.begin() as conn:
        conn.execute(object_state.update().values(value_json="12"))
    assert make(db).secret is None


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_tokens(db: Database) -> None:
    clock = Clock()
    sessions = make(db, clock, cookie_expiration=3600)
    secret = sessions.secret
    assert secret is not None
    token = sessions.encode(ALICE)
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims == {"user_info": ALICE, "exp": int(clock.now) + 3600, "iat": clock.now}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert sessions.decode(token) == (ALICE, clock.now)
    # upstream's claims (no iat): issued cookie_expiration before it expires
    upstream = jwt.encode({"user_info": ALICE, "exp": int(clock.now) + 1000}, secret,
                          "HS256")
    assert sessions.decode(upstream) == (ALICE, clock.now + 1000 - 3600)
    clock.now += 3600
    assert sessions.decode(token) is None  # expired
    clock.now -= 3600

    later = int(clock.now) + 10_000
    forged = [
        "", "garbage", "a.b.c", token + "x", token[:-2],
        jwt.encode({"user_info": ALICE, "exp": later}, "another key, long enough for HS256",
                   "HS256"),
        jwt.encode({"user_info": ALICE, "exp": later}, secret, "HS512"),
        jwt.encode({"user_info": ALICE, "exp": later}, None, "none"),
        jwt.encode({"user_info": ALICE}, secret, "HS256"),  # (no exp: no end)
        jwt.encode({"exp": later}, secret, "HS256"),
        jwt.encode({"user_info": ["alice"], "exp": later}, secret, "HS256"),
        jwt.encode({"user_info": "alice", "exp": later}, secret, "HS256"),
        jwt.encode({"user_info": ALICE, "exp": "soon"}, secret, "HS256"),
        jwt.encode({"user_info": ALICE, "exp": later, "nbf": later}, secret, "HS256"),
    ]
    # tampered: alice's payload with another user, the signature kept
    header, payload, signature = token.split(".")
    evil = jwt.utils.base64url_encode(json.dumps(
        {"user_info": {"username": "admin"}, "exp": later}).encode()).decode()
    forged.append(f"{header}.{evil}.{signature}")
    # alg none with our claims, any case
    for alg in ("none", "None", "NONE"):
        head = jwt.utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        forged.append(f"{head.decode()}.{payload}.")
    for value in forged:
        assert sessions.decode(value) is None, value


@pytest_twisted.ensureDeferred
async def test_user_and_logout(db: Database) -> None:
    clock = Clock()
    sessions = make(db, clock)
    token = sessions.encode(ALICE).encode()
    request = CookieRequest({b"TWISTED_SESSION": token})
    assert await sessions.user(request) == ALICE
    # the TLS name
    assert await sessions.user(CookieRequest({b"TWISTED_SESSION": token}, secure=True)) is None
    assert await sessions.user(CookieRequest({b"TWISTED_SECURE_SESSION": token},
                                             secure=True)) == ALICE
    assert cookie_name(CookieRequest(secure=True)) == b"TWISTED_SECURE_SESSION"
    # odd cookie values, anonymous sessions
    for value in (b"", b"\xff\xfe", sessions.encode({"anonymous": True}).encode()):
        assert await sessions.user(CookieRequest({b"TWISTED_SESSION": value})) is None

    clock.now += 0.0004  # (the same millisecond as the login, rounded up at logout)
    out = CookieRequest({b"TWISTED_SESSION": token})
    await sessions.logout(out, sessions.cookie_user(out))
    name, value, attributes = out.added[-1]
    assert (name, value, attributes["max_age"]) == (b"TWISTED_SESSION", b"", b"0")
    # the copy kept by an attacker is refused from now on, here
    assert await sessions.user(CookieRequest({b"TWISTED_SESSION": token})) is None
    # an upstream-made cookie of the same user issued before the logout too
    upstream = jwt.encode({"user_info": ALICE, "exp": int(clock.now) + WEEK - 10},
                          sessions.secret, "HS256")
    assert await sessions.user(CookieRequest({b"TWISTED_SESSION": upstream.encode()})) is None
    # a new login afterwards works; another user was never affected
    clock.now += 0.002
    again = sessions.encode(ALICE).encode()
    assert await sessions.user(CookieRequest({b"TWISTED_SESSION": again})) == ALICE
    bob = sessions.encode({"username": "bob"}).encode()
    assert await sessions.user(CookieRequest({b"TWISTED_SESSION": bob})) == {"username": "bob"}
    # logging out with no session only removes the cookie
    none = CookieRequest()
    await sessions.logout(none, None)
    assert none.added[-1][1] == b""


def test_cookie_attributes() -> None:
    clock = Clock()
    clock.now = 1_800_000_000.0
    sessions = Sessions(parse_auth({"cookie_expiration": 3600}), None, clock=clock)
    sessions.secret = "00" * 16
    for secure, name in ((False, b"TWISTED_SESSION"), (True, b"TWISTED_SECURE_SESSION")):
        request = CookieRequest(secure=secure)
        sessions.set_cookie(request, ALICE)
        added, value, attributes = request.added[0]
        assert added == name
        assert sessions.decode(value.decode()) == (ALICE, clock.now)
        assert attributes == {"path": b"/", "httpOnly": True, "sameSite": "lax",
                              "secure": secure, "max_age": b"3600",
                              "expires": b"Fri, 15 Jan 2027 09:00:00 GMT"}
