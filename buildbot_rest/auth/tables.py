# -*- test-case-name: tests.auth.test_tables -*-
"""Our own tables, beside upstream's schema: bearer tokens and logouts.

Their names start with ``bbrest_``; they never touch upstream's tables (no foreign key
to them either), so a database keeps working with upstream masters, which ignore them.
They are created by an explicit command (``buildbot-rest token create`` and friends)
or at the first use that needs them (the first token, the first logout), never at
start, and :func:`drop_tables` removes them cleanly."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

metadata = sa.MetaData()

#: bearer tokens (:mod:`buildbot_rest.auth.tokens`): ``digest`` is the SHA-256 (64 hex
#: digits) of the token's secret part (the token itself is never stored); ``user_key``
#: the user's identity as :func:`user_key` gives it (``username:alice``), for listing and
#: revoking a user's own tokens; ``user_info`` the JSON user info the token acts as
#: (``{"username": ..., "email": ...}``); ``roles`` a JSON list, or NULL for "the roles
#: the role matchers give that user when the token is used"; ``scope`` ``read`` or
#: ``control``; times are epoch seconds (64-bit: past 2038), ``expires_at`` NULL for
#: never, ``last_used_at`` recorded at most once a minute.
api_tokens = sa.Table(
    "bbrest_api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("user_key", sa.String(255), nullable=False),
    sa.Column("user_info", sa.Text, nullable=False),
    sa.Column("roles", sa.Text, nullable=True),
    # (a user's own token: its roles hold only while the user still has them)
    sa.Column("within_user", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Index("bbrest_api_tokens_user_key", "user_key"),
)

#: the last logout of each user (COMPAT 36): session cookies of that user issued at or
#: before ``logged_out_at`` (epoch **milliseconds**: a login in the same second as the
#: logout must still count) are refused. ``user_key`` is the user's
#: identity as the cookie names it (see :func:`user_key`).
logouts = sa.Table(
    "bbrest_logouts", metadata,
    sa.Column("user_key", sa.String(255), primary_key=True),
    sa.Column("logged_out_at", sa.BigInteger, nullable=False),
)

TABLES = (api_tokens, logouts)


def user_key(user_info: Mapping[str, object]) -> str | None:
    """The identity of a user for logouts and tokens: ``username:<its username>``, else
    ``email:<its email>`` (None for an anonymous user or one with neither)."""
    for key in ("username", "email"):
        value = user_info.get(key)
        if isinstance(value, str) and value:
            return f"{key}:{value}"[:255]
    return None


def ensure_tables(conn: sa.Connection) -> None:
    """Create the ``bbrest_`` tables that are missing (in the caller's transaction)."""
    metadata.create_all(conn, checkfirst=True)


def drop_tables(conn: sa.Connection) -> list[str]:
    """Drop the ``bbrest_`` tables that exist; the names of those dropped."""
    existing = set(sa.inspect(conn).get_table_names())
    dropped = [t.name for t in TABLES if t.name in existing]
    metadata.drop_all(conn, checkfirst=True)
    return dropped


def record_logout(conn: sa.Connection, key: str, when: int) -> None:
    """Record that user ``key`` logged out at ``when`` (epoch ms; creating the table on first
    use; in the caller's transaction)."""
    ensure_tables(conn)
    updated = conn.execute(logouts.update().where(logouts.c.user_key == key)
                           .values(logged_out_at=when)).rowcount
    if not updated:
        conn.execute(logouts.insert().values(user_key=key, logged_out_at=when))


def logged_out_at(conn: sa.Connection, key: str) -> int | None:
    """When user ``key`` last logged out (epoch ms), or None (never, or the table
    does not exist yet)."""
    # (asked at every request with a session cookie: the query first, and only when it
    # fails, whether the table is missing)
    try:
        return conn.execute(sa.select(logouts.c.logged_out_at)
                            .where(logouts.c.user_key == key)).scalar()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        conn.rollback()  # (PostgreSQL: the failed statement ended the transaction)
        if sa.inspect(conn).has_table(logouts.name):
            raise
        return None
