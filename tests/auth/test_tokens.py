"""Bearer tokens (buildbot_rest.auth.tokens): their shape, what is stored (a digest,
never the token), how they are checked (constant time; malformed, unknown, forged,
revoked and expired ones refused with RFC 6750's challenge and counted by the rate
limiter), last use recorded at most once a minute, and a database outage (503), on
SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from buildbot_rest.auth import tables, tokens
from buildbot_rest.auth.service import Caller
from buildbot_rest.auth.tokens import TokenStore, bearer_token, parse_duration, parse_token
from buildbot_rest.data.errors import NotFound, ServiceUnavailable, Unauthenticated
from buildbot_rest.db import Database

ALICE = {"username": "alice", "email": "alice@example.org", "groups": ["devs"]}
BOB = {"username": "bob"}


class Clock:
    """Epoch seconds that tests move."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Failures:
    """A rate limiter that remembers what failed (the real one is helper A's, tested
    there); what it is told must never hold a secret."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def failed(self, address: str, what: str) -> None:
        self.seen.append((address, what))


def roles_of(user: Mapping[str, Any]) -> frozenset[str]:
    """The role matchers of these tests: a user's groups."""
    return frozenset(user.get("groups", ()))


def open_db(url: str) -> Database:
    db = Database(url, pool_size=2)
    db.prepare_sync(create=True)
    db.start()
    return db


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def shared_db(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """An upstream database on each backend, for the tests of this module (making
    upstream's schema takes a second on PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tokens') / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    database = open_db(url)
    yield database
    database.stop()


@pytest.fixture
def db(shared_db: Database) -> Database:
    """The module's database, without the ``bbrest_`` tables (as before any token)."""
    shared_db.pool.run_in_transaction_sync(tables.drop_tables)
    return shared_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db: Database, clock: Clock) -> TokenStore:
    return TokenStore(db, clock=clock)


async def check(store: TokenStore, token: str, failures: Failures | None = None) -> Caller:
    return await store.caller(token, address="192.0.2.7",
                              limiter=failures if failures is not None else Failures(),
                              roles_for=roles_of)


def has_tokens_table(db: Database) -> bool:
    return sa.inspect(db.engine).has_table(tables.api_tokens.name)


def token_rows(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(tables.api_tokens).order_by(
            tables.api_tokens.c.id)))


# -- parsing ----------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    (b"", None),
    (b"Basic YWxpY2U6cw==", None),
    (b"Bearer bbrest_1_x", "bbrest_1_x"),
    (b"bearer   bbrest_1_x  ", "bbrest_1_x"),
    (b"BEARER bbrest_1_x", "bbrest_1_x"),
    (b"Bearer", ""),          # a Bearer header without a token: malformed, not anonymous
    (b"Bearer ", ""),
])
def test_bearer_token(header: bytes | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


SECRET = "A" * 43


@pytest.mark.parametrize(("token", "expected"), [
    (f"bbrest_12_{SECRET}", (12, SECRET)),
    (f"bbrest_2147483647_{SECRET}", (2147483647, SECRET)),
    (f"bbrest_1_{'a-_' * 14}b", (1, "a-_" * 14 + "b")),
    (f"bbrest_2147483648_{SECRET}", None),   # beyond a 32-bit id
    (f"bbrest_0_{SECRET}", None),
    (f"bbrest_012_{SECRET}", None),
    (f"bbrest_12_{SECRET}A", None),           # secrets are 43 characters
    (f"bbrest_12_{SECRET[:-1]}", None),
    (f"bbrest_12_{SECRET[:-1]}=", None),
    (f"BBREST_12_{SECRET}", None),
    (f"bbrest_12_{SECRET} ", None),
    (f"bbrest_12_{SECRET}\n", None),
    (f"bbrest_١٢_{SECRET}", None),            # Arabic-Indic digits are no id
    ("", None),
    ("bbrest_", None),
])
def test_parse_token(token: str, expected: tuple[int, str] | None) -> None:
    assert parse_token(token) == expected


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("3600s", 3600),
    ("3600", 3600), (3600, 3600), ("2w", 14 * 86400), (" 1D ", 86400), ("never", None),
    ("NEVER", None), ("36500d", 36500 * 86400),
])
def test_parse_duration(text: str | int, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0d", -5, "-5", "1y", "1.5h", "h", "30 days",
                                  "999999999999d", "36501d", True, "1e3"])
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        parse_duration(text)


# -- making ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_create_stores_the_digest_not_the_token(db: Database,
                                                      store: TokenStore) -> None:
    assert not has_tokens_table(db)  # never made before it is needed
    token, info = await store.create(ALICE, ["admins"], "control", 3600, "CI job")
    assert has_tokens_table(db)
    token_id, secret = parse_token(token) or (0, "")
    assert token == f"bbrest_{info.id}_{secret}"
    assert token_id == info.id
    assert len(secret) == 43  # 32 random bytes
    [row] = token_rows(db)
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(value) for value in row)
    assert secret not in stored and token not in stored
    assert (info.user, info.roles, info.scope, info.description) == (
        ALICE, ("admins",), "control", "CI job")
    assert info.created_at == 1_800_000_000
    assert info.expires_at == 1_800_003_600
    assert (info.last_used_at, info.revoked_at) == (None, None)
    assert row.user_key == "username:alice"
    assert "digest" not in info.as_json()
    assert info.as_json()["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_tokens_are_random(store: TokenStore) -> None:
    made = [await store.create(BOB) for _ in range(5)]
    secrets_ = {parse_token(token)[1] for token, _ in made}  # type: ignore[index]
    assert len(secrets_) == 5
    assert [info.id for _, info in made] == sorted({info.id for _, info in made})


@pytest.mark.parametrize(("user", "args", "message"), [
    ({"anonymous": True}, {}, "username or an email"),
    ({"full_name": "Nobody"}, {}, "username or an email"),
    ({"username": ""}, {}, "username or an email"),
    (BOB, {"scope": "write"}, "invalid scope"),
    (BOB, {"scope": "Control"}, "invalid scope"),
    (BOB, {"roles": [""]}, "roles"),
    (BOB, {"expires_in": 0}, "lifetime"),
    (BOB, {"description": "x" * 1001}, "description"),
])
def test_create_refuses(store: TokenStore, db: Database, user: dict[str, Any],
                        args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.create_sync(user, **args)
    assert not has_tokens_table(db)  # nothing made for a refused token


# -- checking ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_caller_of_a_token(store: TokenStore) -> None:
    token, info = await store.create(ALICE, ["admins", "ops"], "control", None)
    caller = await check(store, token)
    assert caller == Caller(user=ALICE, roles=frozenset({"admins", "ops"}),
                            scope="control", token_id=info.id)
    assert not caller.anonymous


@pytest_twisted.ensureDeferred
async def test_roles_from_the_matchers_at_use(store: TokenStore) -> None:
    token, _ = await store.create(ALICE, None, "read")
    caller = await check(store, token)
    assert caller.roles == frozenset({"devs"})
    assert caller.scope == "read"
    token, _ = await store.create(ALICE, [], "read")  # no roles at all: its own (none)
    assert (await check(store, token)).roles == frozenset()


def forge(token: str) -> str:
    """The same id, another secret (one character changed)."""
    last = "B" if token[-1] != "B" else "C"
    return token[:-1] + last


@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_401_with_a_bearer_challenge(store: TokenStore,
                                                          clock: Clock) -> None:
    good, info = await store.create(BOB, None, "control", 60)
    revoked, revoked_info = await store.create(BOB)
    await store.revoke(revoked_info.id)
    expired, expired_info = await store.create(BOB, None, "read", 10)
    clock.now += 10  # (the second it expires counts as expired)
    cases = {
        "malformed": ("bbrest_x", "malformed bearer token", "bearer token (malformed)"),
        "empty": ("", "malformed bearer token", "bearer token (malformed)"),
        "unknown": (f"bbrest_9999_{SECRET}", "invalid bearer token", "bearer token #9999"),
        "forged": (forge(good), "invalid bearer token", f"bearer token #{info.id}"),
        "revoked": (revoked, f"bearer token #{revoked_info.id} was revoked at ",
                    f"bearer token #{revoked_info.id} (revoked)"),
        "expired": (expired, f"bearer token #{expired_info.id} expired at 2027-01-15T08:00:10Z",
                    f"bearer token #{expired_info.id} (expired)"),
    }
    for name, (token, message, logged) in cases.items():
        failures = Failures()
        with pytest.raises(Unauthenticated) as raised:
            await check(store, token, failures)
        error = raised.value
        assert error.status == 401, name
        assert error.message.startswith(message), name
        assert error.challenge.startswith('Bearer realm="buildbot", error="invalid_token", '
                                          'error_description="'), name
        assert error.challenge.isascii() and error.challenge.count('"') == 6, name
        assert failures.seen == [("192.0.2.7", logged)], name
        if token:
            assert token[-43:] not in error.message + error.challenge + logged, name
    assert (await check(store, good)).token_id == info.id  # the good one still works


@pytest_twisted.ensureDeferred
async def test_expiry_at_the_second(store: TokenStore, clock: Clock) -> None:
    token, _ = await store.create(BOB, None, "read", 10)
    clock.now += 9.5
    assert (await check(store, token)).scope == "read"
    clock.now += 0.5
    with pytest.raises(Unauthenticated, match="expired"):
        await check(store, token)


@pytest_twisted.ensureDeferred
async def test_the_digest_is_compared_in_constant_time(
        store: TokenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = await store.create(BOB)
    compared: list[tuple[bytes, bytes]] = []
    real = tokens.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    await check(store, token)
    with pytest.raises(Unauthenticated):
        await check(store, forge(token))
    with pytest.raises(Unauthenticated):  # an unknown id: compared all the same
        await check(store, f"bbrest_424242_{SECRET}")
    assert len(compared) == 3
    assert all(len(a) == len(b) == 64 for a, b in compared)


@pytest_twisted.ensureDeferred
async def test_no_table_means_unknown_and_stays_absent(db: Database,
                                                       store: TokenStore) -> None:
    with pytest.raises(Unauthenticated, match="invalid bearer token"):
        await check(store, f"bbrest_1_{SECRET}")
    assert await store.list() == []
    with pytest.raises(NotFound):
        await store.revoke(1)
    assert not has_tokens_table(db)


@pytest_twisted.ensureDeferred
async def test_a_dropped_table_means_unknown(db: Database, store: TokenStore) -> None:
    token, _ = await store.create(BOB)
    db.pool.run_in_transaction_sync(tables.drop_tables)
    with pytest.raises(Unauthenticated, match="invalid bearer token"):
        await check(store, token)


# -- last use ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_last_use_is_recorded_once_a_minute(db: Database, store: TokenStore,
                                                  clock: Clock) -> None:
    token, _ = await store.create(BOB)
    start = int(clock.now)
    await check(store, token)
    await store.settle()
    assert token_rows(db)[0].last_used_at == start
    clock.now += 59
    await check(store, token)
    await store.settle()
    assert token_rows(db)[0].last_used_at == start  # not written again within a minute
    # another process's store (a second worker) reads the row and does not write either
    other = TokenStore(db, clock=clock)
    await check(other, token)
    await other.settle()
    assert token_rows(db)[0].last_used_at == start
    clock.now += 1
    await check(store, token)
    await store.settle()
    assert token_rows(db)[0].last_used_at == start + 60
    [listed] = await store.list()
    assert listed.last_used_at == start + 60


@pytest_twisted.ensureDeferred
async def test_a_failed_last_use_write_is_logged_not_raised(db: Database,
                                                            store: TokenStore) -> None:
    token, info = await store.create(BOB)
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        db.pool.stop()  # the write then fails at once
        store._record_use(info.id, None, 1_800_000_000.0)
        await store.settle()
    finally:
        globalLogPublisher.removeObserver(logged.append)
        db.pool.start()
    texts = [formatEvent(event) or "" for event in logged]
    assert any(f"cannot record the last use of bearer token #{info.id}" in text
               for text in texts)
    assert not any(token in text or token[-43:] in text for text in texts)
    assert info.id not in store._recorded  # tried again at its next use
    await check(store, token)
    await store.settle()
    assert token_rows(db)[0].last_used_at is not None


# -- listing and revoking ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_list_and_revoke_own(store: TokenStore, clock: Clock) -> None:
    _, a1 = await store.create(ALICE, description="one")
    _, b1 = await store.create(BOB)
    _, a2 = await store.create({"username": "alice"}, description="two")
    assert [t.id for t in await store.list()] == [a1.id, b1.id, a2.id]
    assert [t.id for t in await store.list(ALICE)] == [a1.id, a2.id]
    assert [t.id for t in await store.list(BOB)] == [b1.id]
    assert await store.list({"username": "carol"}) == []
    with pytest.raises(NotFound, match=f"no such token: #{a1.id}"):
        await store.revoke(a1.id, BOB)  # someone else's: as if it did not exist
    with pytest.raises(NotFound):
        await store.get(a1.id, BOB)
    with pytest.raises(NotFound):
        await store.list({"anonymous": True})
    clock.now += 5
    revoked, now = await store.revoke(a1.id, ALICE)
    assert now and revoked.revoked_at == 1_800_000_005
    assert revoked.state(clock.now) == "revoked"
    again, now = await store.revoke(a1.id)
    assert not now and again.revoked_at == 1_800_000_005
    assert (await store.get(a2.id, ALICE)).state(clock.now) == "active"


@pytest_twisted.ensureDeferred
async def test_email_only_users(store: TokenStore) -> None:
    user = {"email": "dev@example.org"}
    token, info = await store.create(user, ["ci"], "read")
    assert info.name == "dev@example.org"
    assert [t.id for t in await store.list(user)] == [info.id]
    assert await store.list({"username": "dev@example.org"}) == []  # another identity
    assert (await check(store, token)).user == user


# -- the database cannot answer ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_database_outage_is_503_not_401(db: Database, store: TokenStore) -> None:
    token, _ = await store.create(BOB)
    failures = Failures()
    db.pool.stop()
    try:
        with pytest.raises(ServiceUnavailable) as raised:
            await check(store, token, failures)
        assert raised.value.status == 503 and raised.value.retry_after
        with pytest.raises(ServiceUnavailable):
            await store.create(BOB)
        with pytest.raises(ServiceUnavailable):
            await store.list()
    finally:
        db.pool.start()
    assert failures.seen == []  # not the client's fault
