"""Our ``bbrest_`` tables (buildbot_rest.auth.tables): made only when needed (the first
token, the first logout, the explicit command), never at the server's start; upstream's
schema and rows untouched by them; dropped cleanly; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest import demo
from buildbot_rest.auth import tables
from buildbot_rest.auth.service import AuthService
from buildbot_rest.auth.tokens import TokenStore
from buildbot_rest.config import Config
from buildbot_rest.db import Database
from tests.schemadiff import describe, differences

OURS = {"bbrest_api_tokens", "bbrest_logouts"}


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An upstream database with a few demo builds, on each backend, running."""
    database = Database(db_url, pool_size=2)
    database.prepare_sync(create=True)
    demo.populate(database.engine, builds=2, seed=1)
    database.start()
    yield database
    database.stop()


def table_names(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def upstream_rows(db: Database) -> str:
    """A digest of every row of every table but ours."""
    digest = hashlib.sha256()
    metadata = sa.MetaData()
    metadata.reflect(db.engine)
    with db.engine.connect() as conn:
        for name in sorted(metadata.tables):
            if name in OURS:
                continue
            table = metadata.tables[name]
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns
                                                          or table.columns))
            digest.update(name.encode() + repr(sorted(map(tuple, rows))).encode())
    return digest.hexdigest()


def upstream_schema(db: Database) -> dict[str, object]:
    return {name: shape for name, shape in describe(db.engine).items() if name not in OURS}


@pytest_twisted.ensureDeferred
async def test_made_at_first_token_upstream_untouched_dropped_cleanly(
        db: Database) -> None:
    schema_before = upstream_schema(db)
    names_before = table_names(db)
    assert not OURS & names_before

    # a server's start makes none of them (it may write the session secret into
    # upstream's object_state, as upstream does)
    auth = AuthService(Config(db_url=db.url), db)
    auth.prepare_sync()
    assert not OURS & table_names(db)
    rows_before = upstream_rows(db)

    # the first token makes both; upstream's schema and rows are as they were
    store = TokenStore(db)
    token, info = await store.create({"username": "alice"}, ["admins"], "control")
    caller = await store.caller(token, address="::1", limiter=auth.limiter,
                                roles_for=auth.roles_for)
    await store.settle()
    await store.revoke(info.id)
    assert caller.token_id == info.id
    assert table_names(db) == names_before | OURS
    assert differences(upstream_schema(db), schema_before) == []
    assert upstream_rows(db) == rows_before

    # no foreign key between ours and upstream's, either way
    shapes = describe(db.engine)
    for name, shape in shapes.items():
        referred = {fk[2] for fk in shape["foreign_keys"]}
        assert not (name in OURS and referred), name
        assert not (name not in OURS and referred & OURS), name

    # dropped: the database is as it was
    dropped = db.pool.run_in_transaction_sync(tables.drop_tables)
    assert sorted(dropped) == sorted(OURS)
    assert table_names(db) == names_before
    assert differences(describe(db.engine), schema_before) == []
    assert upstream_rows(db) == rows_before
    # a second drop finds nothing, and the tables can be made again
    assert db.pool.run_in_transaction_sync(tables.drop_tables) == []
    db.pool.run_in_transaction_sync(tables.ensure_tables)
    db.pool.run_in_transaction_sync(tables.ensure_tables)  # (idempotent)
    assert table_names(db) == names_before | OURS
    assert await store.list() == []


def test_logouts_made_at_first_logout(db: Database) -> None:
    key = tables.user_key({"username": "alice", "email": "a@example.org"})
    assert key == "username:alice"
    assert db.pool.run_sync(tables.logged_out_at, key) is None
    assert not OURS & table_names(db)
    db.pool.run_in_transaction_sync(tables.record_logout, key, 1_800_000_000_123)
    assert table_names(db) >= OURS
    assert db.pool.run_sync(tables.logged_out_at, key) == 1_800_000_000_123
    db.pool.run_in_transaction_sync(tables.record_logout, key, 1_800_000_000_456)
    assert db.pool.run_sync(tables.logged_out_at, key) == 1_800_000_000_456
    assert db.pool.run_sync(tables.logged_out_at, "username:bob") is None


@pytest.mark.parametrize(("user", "key"), [
    ({"username": "alice", "email": "a@example.org"}, "username:alice"),
    ({"email": "a@example.org"}, "email:a@example.org"),
    ({"username": "", "email": "a@example.org"}, "email:a@example.org"),
    ({"anonymous": True}, None),
    ({"full_name": "A"}, None),
    ({"username": 12}, None),
    ({"username": "x" * 300}, "username:" + "x" * 246),
])
def test_user_key(user: dict[str, object], key: str | None) -> None:
    assert tables.user_key(user) == key


def test_times_hold_dates_past_2038(db: Database) -> None:
    """Epoch seconds are 64-bit (a 32-bit INTEGER ends in January 2038)."""
    store = TokenStore(db, clock=lambda: 4_102_444_800.0)  # 2100-01-01
    _, info = store.create_sync({"username": "alice"}, None, "read", 50 * 365 * 86400)
    assert store.get_sync(info.id).expires_at == 4_102_444_800 + 50 * 365 * 86400
