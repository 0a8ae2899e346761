"""``buildbot-rest token ...``: create (the token alone on the last line), list (never a
secret), revoke, create-tables and drop-tables, their errors (one line, or a usage
error), through ``main()`` and in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest import scripts
from buildbot_rest.auth import tables
from buildbot_rest.auth.tokens import TokenStore, parse_token
from buildbot_rest.db import Database

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = scripts.main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(capsys: pytest.CaptureFixture[str], db_url: str) -> str:
    """An upstream database (empty of builds) on each backend."""
    assert run(capsys, "create-db", "--db", db_url)[0] == 0
    return db_url


def token_table(url: str) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(tables.api_tokens.name):
                return []
            return list(conn.execute(sa.select(tables.api_tokens)))
    finally:
        engine.dispose()


def test_create_list_revoke(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, err = run(capsys, "token", "create", "--db", url, "--user", "alice",
                         "--email", "alice@example.org", "--full-name", "Alice A",
                         "--role", "admins", "--role", "ops", "--scope", "control",
                         "--expires", "30d", "--description", "nightly job")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    token = lines[-1]
    parsed = parse_token(token)
    assert parsed is not None and parsed[0] == 1
    assert lines[0] == "token #1 for alice"
    assert "scope: control; roles: admins, ops" in lines
    assert lines[2].startswith("expires: 20")
    [row] = token_table(url)
    assert token not in repr(tuple(row)) and parsed[1] not in repr(tuple(row))
    assert json.loads(row.user_info) == {"username": "alice", "email": "alice@example.org",
                                         "full_name": "Alice A"}
    assert row.expires_at - row.created_at == 30 * 86400

    code, out, err = run(capsys, "token", "create", "--db", url, "--user", "bob",
                         "--group", "devs", "--expires", "never")
    assert (code, err) == (0, "")
    assert "scope: read; roles: those of the user's role matchers" in out
    assert "expires: never" in out
    bob_token = out.splitlines()[-1]

    code, out, err = run(capsys, "token", "list", "--db", url)
    assert (code, err) == (0, "")
    header, first, second = out.splitlines()
    assert header.split()[:5] == ["ID", "USER", "SCOPE", "ROLES", "STATE"]
    assert first.split()[:5] == ["1", "alice", "control", "admins,ops", "active"]
    assert first.endswith("nightly job")
    assert second.split()[:5] == ["2", "bob", "read", "(user's)", "active"]
    assert token not in out and bob_token not in out
    assert row.digest not in out

    code, out, err = run(capsys, "token", "list", "--db", url, "--user", "bob", "--json")
    assert (code, err) == (0, "")
    [listed] = json.loads(out)
    assert listed["id"] == 2 and listed["user"] == {"username": "bob", "groups": ["devs"]}
    assert listed["roles"] is None and listed["expires_at"] is None
    assert "digest" not in listed and "token" not in listed

    code, out, err = run(capsys, "token", "revoke", "--db", url, "1")
    assert (code, out, err) == (0, "token #1 (alice): revoked\n", "")
    code, out, err = run(capsys, "token", "revoke", "--db", url, "1")
    assert code == 0 and out.startswith("token #1 (alice): already revoked at 20")
    code, out, err = run(capsys, "token", "list", "--db", url)
    assert out.splitlines()[1].split()[4] == "revoked"


@pytest_twisted.ensureDeferred
async def test_a_token_of_the_command_is_accepted(capsys: pytest.CaptureFixture[str],
                                                  sqlite_url: str) -> None:
    assert run(capsys, "create-db", "--db", sqlite_url)[0] == 0
    code, out, _ = run(capsys, "token", "create", "--db", sqlite_url, "--user", "carol",
                       "--role", "ci", "--expires", "1h")
    assert code == 0
    db = Database(sqlite_url, pool_size=1)
    db.start()
    try:
        caller = await TokenStore(db).caller(out.splitlines()[-1], address="::1",
                                             limiter=_NoLimit(),
                                             roles_for=lambda user: frozenset())
    finally:
        db.stop()
    assert (caller.user, caller.roles, caller.scope) == ({"username": "carol"},
                                                          frozenset({"ci"}), "read")


class _NoLimit:
    def failed(self, address: str, what: str) -> None:
        raise AssertionError(what)


def test_tables_commands(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, err = run(capsys, "token", "list", "--db", url)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == []  # no table yet: no tokens, and none made
    assert token_table(url) == []
    code, out, err = run(capsys, "token", "create-tables", "--db", url)
    assert (code, err) == (0, "")
    assert "bbrest_api_tokens, bbrest_logouts present" in out

    code, out, err = run(capsys, "token", "drop-tables", "--db", url)
    assert code == 2
    assert err.splitlines()[-1] == ("buildbot-rest token drop-tables: error: this drops "
                                    "every token and every logout record: add --yes")
    code, out, err = run(capsys, "token", "drop-tables", "--db", url, "--yes")
    assert (code, err) == (0, "")
    assert out.endswith(": dropped bbrest_api_tokens, bbrest_logouts\n")
    code, out, err = run(capsys, "token", "drop-tables", "--db", url, "--yes")
    assert out.endswith(": no bbrest_ tables\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["token", "revoke", "7"], "buildbot-rest token revoke: no token #7"),
    (["token", "create", "--user", ""],
     "buildbot-rest token create: a token's user needs a username or an email"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], url: str,
                             argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv, "--db", url)
    assert (code, out, err) == (1, "", message + "\n")


def test_a_missing_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.sqlite'}"
    for argv in (["create", "--user", "a"], ["list"], ["revoke", "1"],
                 ["drop-tables", "--yes"], ["create-tables"]):
        code, out, err = run(capsys, "token", *argv, "--db", url)
        assert code == 1 and out == "" and err.count("\n") == 1, argv
        assert "no such database file" in err, argv
    assert not (tmp_path / "missing.sqlite").exists()


def test_not_an_upstream_database(capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("create table unrelated (x integer)")
    engine.dispose()
    code, _, err = run(capsys, "token", "create", "--db", f"sqlite:///{path}",
                       "--user", "a")
    assert code == 1 and err.count("\n") == 1
    assert "bbrest" not in repr(sa.inspect(sa.create_engine(f"sqlite:///{path}"))
                                .get_table_names())


@pytest.mark.parametrize(("argv", "message"), [
    (["token", "create", "--user", "a", "--expires", "30 days"], "invalid lifetime"),
    (["token", "create", "--user", "a", "--expires", "0"], "more than 0 seconds"),
    (["token", "create", "--user", "a", "--scope", "write"], "invalid choice"),
    (["token", "create"], "--user"),
    (["token", "revoke", "x"], "invalid int value"),
    (["token", "list", "--bogus"], "unrecognized arguments"),
    (["token"], "required"),
])
def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                      argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err.splitlines()[-1]
    assert err.splitlines()[0].startswith("usage: buildbot-rest token")


def test_in_a_process(sqlite_url: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])

    def command(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "buildbot_rest.scripts", *argv],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)

    assert command("create-db", "--db", sqlite_url).returncode == 0
    made = command("token", "create", "--db", sqlite_url, "--user", "ci-bot",
                   "--scope", "control")
    assert (made.returncode, made.stderr) == (0, "")
    token = made.stdout.splitlines()[-1]
    assert parse_token(token) is not None
    listed = command("token", "list", "--db", sqlite_url, "--json")
    assert json.loads(listed.stdout)[0]["username"] == "ci-bot"
    assert token not in listed.stdout
    revoked = command("token", "revoke", "--db", sqlite_url, "1")
    assert revoked.stdout == "token #1 (ci-bot): revoked\n"
    missing = command("token", "revoke", "--db", sqlite_url, "2")
    assert (missing.returncode, missing.stderr) == (1, "buildbot-rest token revoke: "
                                                       "no token #2\n")
