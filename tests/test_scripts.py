"""Tests of the ``buildbot-rest`` console script and the options of ``twistd buildbot-rest``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from buildbot_rest import scripts
from buildbot_rest.db import schema


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = scripts.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_then_check(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    code, out, err = run(capsys, "create-db", "--db", sqlite_url)
    assert (code, err) == (0, "")
    assert "created, schema revision 067" in out
    code, out, err = run(capsys, "check-db", "--db", sqlite_url)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "revision: 067"
    assert out.splitlines()[1].startswith("usable: yes")


def test_create_refuses_a_database_in_use(capsys: pytest.CaptureFixture[str],
                                          sqlite_url: str) -> None:
    assert run(capsys, "create-db", "--db", sqlite_url)[0] == 0
    code, out, err = run(capsys, "create-db", "--db", sqlite_url)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "not empty" in err


def test_old_revision_is_refused(capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                 raw_engine) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "create-db", "--db", sqlite_url)[0] == 0
    engine = raw_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(schema.alembic_version.update().values(version_num="065"))
    code, out, _ = run(capsys, "check-db", "--db", sqlite_url)
    assert code == 1
    assert out.splitlines()[0] == "revision: 065"
    assert out.splitlines()[1].startswith("usable: no")
    assert "upgrade-master" in out
    # and the server does not start on it
    options = scripts.Options()
    options.parseOptions(["--db", sqlite_url, "--port", "tcp:0"])
    with pytest.raises(SystemExit) as info:
        scripts.makeService(options)
    message = str(info.value.code)
    assert message.startswith("buildbot-rest: ") and "065" in message
    assert "\n" not in message
    with engine.connect() as conn:  # never altered
        assert conn.execute(sa.select(schema.alembic_version.c.version_num)).scalar() == "065"


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nope.sqlite'}"
    code, out, err = run(capsys, "check-db", "--db", url)
    assert (code, out) == (1, "")
    assert err == f"buildbot-rest check-db: {url}: no such database file\n"
    assert not (tmp_path / "nope.sqlite").exists()


def test_check_empty_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    code, out, _ = run(capsys, "check-db", "--db", f"sqlite:///{path}")
    assert code == 1
    assert out.splitlines()[0] == "revision: none"
    assert "create-db" in out


@pytest.mark.parametrize("url", [
    "nonsense",
    "nosuchdb://x/y",
    "postgresql://nobody@127.0.0.1:1/x",
    "sqlite:////no/such/directory/x.sqlite",
])
def test_bad_url_is_one_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    for command in ("create-db", "check-db"):
        code, out, err = run(capsys, command, "--db", url)
        assert code == 1
        assert out == ""
        assert err.startswith(f"buildbot-rest {command}: ")
        assert err.count("\n") == 1, err


def test_demo_db(capsys: pytest.CaptureFixture[str], sqlite_url: str, raw_engine) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "demo-db", "--db", sqlite_url, "--builds", "20")
    assert (code, err) == (0, "")
    assert "added 20 builds" in out
    with raw_engine(sqlite_url).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.builds)).scalar() == 20
    code, out, err = run(capsys, "demo-db", "--db", sqlite_url)
    assert code == 1
    assert "not empty" in err and err.count("\n") == 1


# -- twistd buildbot-rest options -------------------------------------------------------------

def test_options_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('db_url = "sqlite:///a.sqlite"\nport = "tcp:9000"\npool_size = 2\n'
                    'access_log = "http.log"\n')
    options = scripts.Options()
    options.parseOptions(["--config", str(path), "--port", "tcp:9100", "--demo",
                          "--access-log", "off", "--workers", "3"])
    config = options["config_object"]
    assert config.workers == 3
    assert config.access_log == "off"
    assert config.db_url == "sqlite:///a.sqlite"
    assert config.port == "tcp:9100"
    assert config.base_url == "http://localhost:9100/"
    assert config.pool_size == 2
    assert config.demo is True


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "option --bogus not recognized"),
    (["--pool-size", "x"], "--pool-size must be a positive integer, not 'x'"),
    (["--workers", "0"], "--workers must be a positive integer, not '0'"),
    (["--config", "/no/such.toml"], "cannot read configuration file /no/such.toml"),
    (["extra"], "unexpected argument 'extra'"),
])
def test_bad_options_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        scripts.Options().parseOptions(argv)
    text = str(info.value.code)
    assert text.startswith("buildbot-rest: ") and message in text
    assert "\n" not in text


@pytest.mark.parametrize("port", ["foo:1", "tcp:abc"])
def test_bad_port_is_one_line(port: str, sqlite_url: str) -> None:
    options = scripts.Options()
    options.parseOptions(["--db", sqlite_url, "--port", port])
    with pytest.raises(SystemExit) as info:
        scripts.makeService(options)
    assert str(info.value.code).startswith(f"buildbot-rest: invalid port {port!r}")


# -- buildbot-rest indexes ----------------------------------------------------------------------

EXTRA = ["bbrest_builds_complete_at", "bbrest_builds_started_at", "bbrest_builds_results",
         "bbrest_builds_builderid_id"]


def extra_present(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(ix["name"]) for ix in sa.inspect(conn).get_indexes("builds")
                if str(ix["name"]).startswith("bbrest_")}


def test_indexes_list_add_drop(capsys: pytest.CaptureFixture[str], db_url: str,
                               raw_engine) -> None:  # type: ignore[no-untyped-def]
    # an empty database (an empty file on SQLite) is refused, and left empty
    # NullPool: a new connection each time, as SQLite's PRAGMA index_list (which the
    # inspector uses) may answer from an older connection's stale copy of the schema.
    engine = raw_engine(db_url, poolclass=sa.pool.NullPool)
    engine.connect().close()
    for action in ("list", "add", "drop"):
        code, out, err = run(capsys, "indexes", action, "--db", db_url)
        assert (code, out) == (1, "")
        assert err.startswith(f"buildbot-rest indexes {action}: ")
        assert "the database is empty" in err and err.count("\n") == 1
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []

    assert run(capsys, "create-db", "--db", db_url)[0] == 0
    code, out, err = run(capsys, "indexes", "list", "--db", db_url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == EXTRA
    assert all(line.split()[3] == "absent" for line in lines)  # create-db never adds them
    assert lines[0].split()[1] == "builds(complete_at,"
    assert "complete=false" in lines[0]

    code, out, err = run(capsys, "indexes", "add", "--db", db_url, "bbrest_builds_results")
    assert (code, out, err) == (0, "bbrest_builds_results: created\n", "")
    assert extra_present(engine) == {"bbrest_builds_results"}

    code, out, err = run(capsys, "indexes", "add", "--db", db_url)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{name}: {'already present' if 'results' in name else 'created'}"
                                for name in EXTRA]
    assert extra_present(engine) == set(EXTRA)
    code, out, _ = run(capsys, "indexes", "add", "--db", db_url)
    assert (code, out.splitlines()) == (0, [f"{name}: already present" for name in EXTRA])
    code, out, _ = run(capsys, "indexes", "list", "--db", db_url)
    assert code == 0 and all(line.split()[3] == "present" for line in out.splitlines())
    code, out, _ = run(capsys, "check-db", "--db", db_url)
    assert code == 0 and "usable: yes" in out

    code, out, err = run(capsys, "indexes", "drop", "--db", db_url, "nope", EXTRA[0])
    assert (code, out) == (1, "")
    assert err.startswith("buildbot-rest indexes drop: unknown index 'nope'; valid names: ")
    assert err.count("\n") == 1
    assert extra_present(engine) == set(EXTRA)

    code, out, err = run(capsys, "indexes", "drop", "--db", db_url)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{name}: dropped" for name in EXTRA]
    assert extra_present(engine) == set()
    code, out, _ = run(capsys, "indexes", "drop", "--db", db_url, EXTRA[1])
    assert (code, out) == (0, f"{EXTRA[1]}: absent\n")


def test_indexes_unknown_name(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    assert run(capsys, "create-db", "--db", sqlite_url)[0] == 0
    code, out, err = run(capsys, "indexes", "add", "--db", sqlite_url, "builds_number")
    assert (code, out) == (1, "")
    assert err.startswith("buildbot-rest indexes add: unknown index 'builds_number'")
    assert err.count("\n") == 1


def test_indexes_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nope.sqlite'}"
    for action in ("list", "add", "drop"):
        code, out, err = run(capsys, "indexes", action, "--db", url)
        assert (code, out) == (1, "")
        assert err == f"buildbot-rest indexes {action}: {url}: no such database file\n"
    assert not (tmp_path / "nope.sqlite").exists()


def test_indexes_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "indexes", "list", "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert (code, out) == (1, "")
    assert err.startswith("buildbot-rest indexes list: ") and err.count("\n") == 1


def test_indexes_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        scripts.main(["indexes"])
    assert info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
