"""Tests of the ``buildbot-rest`` console script and of ``twistd buildbot-rest``: commands,
options, and starts that fail or succeed, the last in real processes (daemons among them,
each killed by the end of its test)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildbot_rest import scripts
from buildbot_rest.config import ConfigError
from buildbot_rest.db import schema

ROOT = Path(__file__).resolve().parent.parent


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


def missing_file_message(url: str) -> str:
    """The start of what every command says of a missing SQLite file: the server's and
    check-db's words are the same."""
    return f"{url}: no such database file; create it with `buildbot-rest create-db --db {url}`"


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nope.sqlite'}"
    code, out, err = run(capsys, "check-db", "--db", url)
    assert (code, out) == (1, "")
    assert err.startswith(f"buildbot-rest check-db: {missing_file_message(url)}")
    assert err.count("\n") == 1
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
                          "--access-log", "off", "--workers", "3", "--create"])
    config = options["config_object"]
    assert config.create is True
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
    (["--port", "9061"], "--port 9061 is not a Twisted endpoint: did you mean --port tcp:9061 "
                         "(every interface) or --port tcp:9061:interface=127.0.0.1?"),
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
        assert err.startswith(f"buildbot-rest indexes {action}: {missing_file_message(url)}")
        assert err.count("\n") == 1
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


# -- usage --------------------------------------------------------------------------------------

def test_serve_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "serve", "--help")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "Usage: buildbot-rest serve [options]"
    text = " ".join(out.split())  # as the help wraps it
    for option, default in (("--db", "sqlite:///state.sqlite"),
                            ("--port", "tcp:8010:interface=127.0.0.1"),
                            ("--pool-size", "4"), ("--workers", "1"), ("--access-log", "-")):
        assert re.search(rf"{option}=? .*?\[default: {re.escape(default)}\]", text), option
    assert "--create" in text and "--demo" in text


def test_twistd_help() -> None:
    proc = subprocess.run([*TWISTD, "buildbot-rest", "--help"], env=process_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "Usage: twistd [options] buildbot-rest [options]"
    assert "[default: sqlite:///state.sqlite]" in proc.stdout


def test_serve_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "serve", "--bogus")
    assert (code, out) == (2, "")
    assert err == ("buildbot-rest serve: option --bogus not recognized "
                   "(see buildbot-rest serve --help)\n")


@pytest.mark.parametrize("argv, name", [
    (["create-db", "--bogus"], "create-db"),
    (["demo-db", "--builds", "3", "--bogus"], "demo-db"),
    (["indexes", "add", "--bogus", "x"], "indexes add"),
])
def test_a_commands_bad_option_shows_its_usage(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], name: str) -> None:
    with pytest.raises(SystemExit) as info:
        scripts.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"usage: buildbot-rest {name} [-h] [--db DB]")
    assert lines[-1] == f"buildbot-rest {name}: error: unrecognized arguments: --bogus"


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None,
                    reason="MySQLdb is installed: mysql:// URLs work")
def test_mysql_url_without_its_driver(capsys: pytest.CaptureFixture[str]) -> None:
    url = "mysql://bb:secret@127.0.0.1:1/bb"
    message = ("MySQL needs the PyMySQL driver: pip install 'buildbot_rest[mysql]' and give "
               "the database as mysql+pymysql://bb:***@127.0.0.1:1/bb")
    code, out, err = run(capsys, "check-db", "--db", url)
    assert (code, out, err) == (1, "", f"buildbot-rest check-db: {message}\n")
    options = scripts.Options()
    options.parseOptions(["--db", url, "--port", "tcp:0"])
    with pytest.raises(SystemExit) as info:
        scripts.makeService(options)
    assert info.value.code == f"buildbot-rest: {message}"


# -- what the server refuses before it starts ------------------------------------------------

@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port of 127.0.0.1 that another socket listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_server_refuses_a_missing_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.sqlite'}"
    options = scripts.Options()
    options.parseOptions(["--db", url, "--port", "tcp:0"])
    with pytest.raises(SystemExit) as info:
        scripts.makeService(options)
    message = str(info.value.code)
    assert message.startswith(f"buildbot-rest: {missing_file_message(url)}")
    assert "--create" in message and "\n" not in message
    assert not (tmp_path / "typo.sqlite").exists()


def test_server_creates_a_missing_database_with_create(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    options = scripts.Options()
    options.parseOptions(["--db", url, "--port", "tcp:0", "--create"])
    scripts.makeService(options)
    code, out, _ = run(capsys, "check-db", "--db", url)
    assert code == 0 and "usable: yes" in out


def test_demo_checks_the_port_before_filling(tmp_path: Path, taken_port: int) -> None:
    port = f"tcp:{taken_port}:interface=127.0.0.1"
    options = scripts.Options()
    options.parseOptions(["--demo", "--db", f"sqlite:///{tmp_path / 'demo.sqlite'}",
                          "--port", port])
    with pytest.raises(SystemExit) as info:
        scripts.makeService(options)
    assert info.value.code == f"buildbot-rest: cannot listen on {port}: Address already in use"
    assert not (tmp_path / "demo.sqlite").exists()


def test_check_port(taken_port: int) -> None:
    n = taken_port
    for description in (f"tcp:{n}:interface=127.0.0.1", f"tcp:port={n}", f"tcp:{n}",
                        f"ssl:{n}:privateKey=key.pem:interface=127.0.0.1"):
        with pytest.raises(ConfigError) as info:
            scripts.check_port(description)
        assert str(info.value) == f"cannot listen on {description}: Address already in use"
    with pytest.raises(ConfigError, match="directory /no/such does not exist"):
        scripts.check_port("unix:/no/such/api.sock")
    # any port; a free one; what it cannot tell about (parsing the endpoint reports it)
    for description in ("tcp:0", r"tcp6:0:interface=\:\:1", "unix:api.sock", "nope:1",
                        "tcp:abc", "tcp:99999"):
        scripts.check_port(description)


# -- starting for real, as a daemon or not ---------------------------------------------------

#: twistd of this interpreter, whatever virtualenv it lives in
TWISTD = [sys.executable, "-c",
          "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
SERVE = [sys.executable, "-m", "buildbot_rest.scripts", "serve"]


def process_env() -> dict[str, str]:
    """The environment of a server process: the checkout first on the path, so that
    twistd finds the plugin in twisted/plugins/ whatever the installation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def running_in(directory: Path) -> list[int]:
    """The processes whose command line names ``directory`` (this test's own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(directory) in command:
                found.append(int(entry.name))
    return found


def wait_until_gone(directory: Path, timeout: float = 20) -> list[int]:
    """Wait for the processes named by :func:`running_in` to end; those still running."""
    deadline = time.monotonic() + timeout
    while (left := running_in(directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Start:
    """Starts the server in ``tmp_path`` as users do: ``twistd buildbot-rest`` (a daemon),
    ``twistd -n buildbot-rest``, or ``buildbot-rest serve``, and waits for the command to
    end (a daemon's, once the daemon has started or failed to)."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.pidfile = tmp_path / "twistd.pid"
        self.logfile = tmp_path / "twistd.log"

    def __call__(self, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
        twistd = [*TWISTD, "--pidfile", str(self.pidfile), "--logfile", str(self.logfile)]
        argv = {"daemon": [*twistd, "buildbot-rest"],
                "twistd -n": [*twistd, "-n", "buildbot-rest"],
                "serve": SERVE}[mode]
        try:
            return subprocess.run([*argv, *args], cwd=self.dir, env=process_env(),
                                  capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{mode}: the command did not end in 60 s: its start hangs")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """A :class:`Start`; whatever it left running is killed after the test."""
    yield Start(tmp_path)
    for pid in running_in(tmp_path):
        os.kill(pid, signal.SIGKILL)


def assert_ended_cleanly(tmp_path: Path) -> None:
    """Nothing left: no process, no pid file."""
    assert wait_until_gone(tmp_path) == []
    assert not (tmp_path / "twistd.pid").exists()


@pytest.mark.parametrize("mode", ["daemon", "twistd -n", "serve"])
def test_port_in_use(start: Start, tmp_path: Path, taken_port: int, mode: str) -> None:
    port = f"tcp:{taken_port}:interface=127.0.0.1"
    proc = start(mode, "--demo", "--db", f"sqlite:///{tmp_path / 'demo.sqlite'}",
                 "--port", port)
    prog = "buildbot-rest serve" if mode == "serve" else "buildbot-rest"
    assert (proc.returncode, proc.stderr) == (
        1, f"{prog}: cannot listen on {port}: Address already in use\n")
    assert_ended_cleanly(tmp_path)
    assert not (tmp_path / "demo.sqlite").exists()  # not filled


@pytest.mark.parametrize("problem", ["missing database", "bad configuration",
                                     "access log"])
def test_daemon_start_failures_are_one_line(start: Start, tmp_path: Path,
                                            problem: str) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    (tmp_path / "server.toml").write_text("pool_size = 'four'\n")
    args, message = {
        "missing database": (["--db", url], f"{missing_file_message(url)}"),
        "bad configuration": (["--config", str(tmp_path / "server.toml")],
                              f"{tmp_path / 'server.toml'}: 'pool_size' must be an integer"),
        "access log": (["--create", "--db", url, "--access-log", str(tmp_path / "no/a.log")],
                       f"cannot open the access log {tmp_path / 'no/a.log'}"),
    }[problem]
    proc = start("daemon", *args, "--port", "tcp:0:interface=127.0.0.1")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"buildbot-rest: {message}")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert_ended_cleanly(tmp_path)


@pytest.mark.parametrize("mode", ["daemon", "twistd -n"])
def test_failure_to_listen_once_started(start: Start, tmp_path: Path, mode: str) -> None:
    # A failure that only listening finds (a socket path too long for AF_UNIX): a
    # daemon's has happened after twistd forked. The command still ends, saying why.
    path = tmp_path / ("s" * 120)
    proc = start(mode, "--create", "--db", f"sqlite:///{tmp_path / 'state.sqlite'}",
                 "--port", f"unix:{path}")
    assert proc.returncode == 1
    if mode == "daemon":  # twistd's parent says it, in its own words
        assert proc.stderr.startswith('An error has occurred: b"buildbot-rest: '
                                      "Couldn't listen on "), proc.stderr
    else:
        assert proc.stderr.startswith("buildbot-rest: Couldn't listen on "), proc.stderr
        assert proc.stderr.count("\n") == 1
    assert "buildbot-rest: Couldn't listen on" in start.logfile.read_text()
    assert_ended_cleanly(tmp_path)


def test_daemon_starts_and_stops(start: Start, tmp_path: Path) -> None:
    proc = start("daemon", "--create", "--db", f"sqlite:///{tmp_path / 'state.sqlite'}",
                 "--port", "tcp:0:interface=127.0.0.1")
    assert (proc.returncode, proc.stderr) == (0, "")
    pid = int(start.pidfile.read_text())
    assert running_in(tmp_path) == [pid]
    match = re.search(r"serving \S+ on IPv4Address\(.*port=(\d+)\)", start.logfile.read_text())
    assert match, start.logfile.read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/api/v2/builders",
                                timeout=30) as response:
        assert json.load(response)["meta"]["total"] == 0
    os.kill(pid, signal.SIGTERM)
    assert_ended_cleanly(tmp_path)
