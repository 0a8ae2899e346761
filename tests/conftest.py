"""Fixtures for the whole suite: test databases on SQLite and PostgreSQL, and a virtualenv
holding upstream Buildbot 4.3.0 to check our behaviour against."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent

# `tests.*` helper modules (tests/schemadiff.py, ...) must import the same way under
# `pytest` (tox) as under `python -m pytest`, which alone puts the current directory first.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: What the upstream virtualenv holds: the release we are compatible with, and the versions
#: of its dependencies that we test against.
UPSTREAM_REQUIREMENTS = (
    "buildbot==4.3.0",
    "SQLAlchemy==2.0.36",
    "Twisted==24.11.0",
    "alembic==1.14.0",
    "autobahn==24.4.2",
    "txaio==23.1.1",
    "treq==24.9.1",
    "PyJWT==2.10.1",
    "psycopg2-binary>=2.9.9",
    # upstream reads log chunks of these codecs only when the libraries are installed
    "lz4",
    "zstandard",
    "brotli",
)
UPSTREAM_CACHE = Path.home() / ".cache" / "buildbot_rest" / "upstream-4.3.0"


# -- a service the tests need is missing ---------------------------------------------------

#: set to 1 to let tests that need PostgreSQL, or upstream Buildbot's virtualenv, be skipped
#: when it cannot be had (an offline run); without it they fail, in CI as anywhere
ALLOW_NO_PG = "BUILDBOT_REST_ALLOW_NO_PG"
ALLOW_NO_UPSTREAM = "BUILDBOT_REST_ALLOW_NO_UPSTREAM"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def unavailable(what: str, problem: str, allow: str) -> NoReturn:
    """``what`` (a service the tests need) cannot be had because of ``problem``.

    That fails the test, so that a run without the service (a CI run above all) cannot
    pass by skipping what it was meant to check; unless the variable ``allow`` is set to
    1, the explicit opt-out of a developer's offline run, honoured in CI too: then the
    test is skipped with the reason (``-ra`` prints it)."""
    reason = f"no {what}: {problem}"
    if _flag(allow):
        pytest.skip(f"{reason} ({allow}={os.environ[allow].strip()}: skipped)")
    where = " in CI (CI is set)" if _flag("CI") else ""
    pytest.fail(f"{reason}{where}; set {allow}=1 to skip the tests that need it instead",
                pytrace=False)


def announcer(config: pytest.Config) -> Callable[[str], None]:
    """Writes a line to the terminal at once, through pytest's capture: to say what a
    session fixture is about to do that takes long or reaches outside the checkout."""

    def say(text: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capture is None or reporter is None:
            print(text, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)

    return say


def _silent(text: str) -> None:
    pass


# -- plain SQLAlchemy engines -------------------------------------------------------------

def raw_engine_for(url: str, **kwargs: Any) -> sa.Engine:
    """A plain engine, outside our own engine set-up, to look at a test database directly.

    A bare ``postgresql://`` means psycopg2 here whatever SQLAlchemy's own default is."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, **kwargs)


@pytest.fixture
def raw_engine() -> Iterator[Callable[..., sa.Engine]]:
    """A factory of plain engines (see :func:`raw_engine_for`), disposed after the test."""
    engines: list[sa.Engine] = []

    def make(url: str, **kwargs: Any) -> sa.Engine:
        engine = raw_engine_for(url, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------

def _pg_problem(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or None."""
    try:
        engine = raw_engine_for(url, poolclass=sa.pool.NullPool,
                                connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError) as e:
        lines = str(getattr(e, "orig", None) or e).strip().splitlines()
        return lines[0] if lines else type(e).__name__
    return None


@pytest.fixture(scope="session")
def pg_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The URL of a PostgreSQL server for tests, as superuser (see :func:`find_pg_url`).

    A server that ``.ci/postgres.sh`` started for the session is stopped at its end, and
    its temporary data directory deleted."""
    script = ROOT / ".ci" / "postgres.sh"
    if os.environ.get("BUILDBOT_REST_TEST_PG", "").strip():
        yield find_pg_url(script)
        return
    data = Path(tempfile.mkdtemp(prefix="buildbot-rest-pg."))
    try:
        yield find_pg_url(script, data=data, say=announcer(pytestconfig))
    finally:
        subprocess.run(["bash", str(script), "stop", str(data)], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120, check=False)


def find_pg_url(script: Path, *, data: Path | None = None,
                say: Callable[[str], None] = _silent) -> str:
    """The URL of a PostgreSQL server for tests, as superuser.

    From ``BUILDBOT_REST_TEST_PG`` if set (then a server that does not answer is an error),
    else from ``script start`` (``.ci/postgres.sh``), which installs PostgreSQL if needed
    (``say`` tells so first), starts a server in the directory ``data`` and prints its
    URL; ``script stop DATA`` stops it. Without a server the test fails, unless
    ``BUILDBOT_REST_ALLOW_NO_PG=1`` (see :func:`unavailable`).
    """
    url = os.environ.get("BUILDBOT_REST_TEST_PG", "").strip()
    if url:
        problem = _pg_problem(url)
        if problem:
            shown = make_url(url).render_as_string(hide_password=True)
            pytest.fail(f"BUILDBOT_REST_TEST_PG={shown} does not answer: {problem}",
                        pytrace=False)
        return url
    # where .ci/postgres.sh looks for Debian's PostgreSQL
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        say(f"PostgreSQL is not installed: {script.name} installs it now with apt-get, for "
            "the tests that need a server (BUILDBOT_REST_TEST_PG=postgresql://... names "
            "one of your own instead)")
    env = dict(os.environ)
    if data is not None:
        env["PGDATA"] = str(data)
    try:
        proc = subprocess.run(["bash", str(script), "start"], cwd=ROOT, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, env=env, timeout=900,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        unavailable("PostgreSQL server", f"{script.name} did not run: {e}", ALLOW_NO_PG)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        unavailable("PostgreSQL server", f"{script.name} exited {proc.returncode}: {detail}"
                    " (set BUILDBOT_REST_TEST_PG to use a server of your own)", ALLOW_NO_PG)
    url = lines[-1].strip()
    problem = _pg_problem(url)
    if problem:
        unavailable("PostgreSQL server", f"{url} from {script.name} does not answer: "
                    f"{problem}", ALLOW_NO_PG)
    return url


class PgDatabases:
    """Creates uniquely named empty databases on the test server, and drops them."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._admin = raw_engine_for(server_url, isolation_level="AUTOCOMMIT",
                                     poolclass=sa.pool.NullPool)
        self._names: set[str] = set()

    def create(self) -> str:
        """A new empty database; its URL."""
        name = f"bbrest_test_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' "
                                 "TEMPLATE template0")
        self._names.add(name)
        return make_url(self.server_url).set(database=name).render_as_string(
            hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name not in self._names:
            return
        with self._admin.connect() as conn:
            # FORCE: a connection a failed test left open must not keep the database alive.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._names.discard(name)

    def drop_all(self) -> None:
        for name in sorted(self._names):
            self.drop(make_url(self.server_url).set(database=name).render_as_string(
                hide_password=False))
        self._admin.dispose()


@pytest.fixture(scope="session")
def pg_databases(pg_url: str) -> Iterator[PgDatabases]:
    """Makes databases on the test server for fixtures of any scope (all dropped at the
    end of the session at the latest)."""
    databases = PgDatabases(pg_url)
    yield databases
    databases.drop_all()


@pytest.fixture
def new_pg_database(pg_databases: PgDatabases) -> Iterator[Callable[[], str]]:
    """A factory: each call creates an empty database with a unique name on the test
    server and returns its URL. They are all dropped after the test."""
    created: list[str] = []

    def create() -> str:
        url = pg_databases.create()
        created.append(url)
        return url

    yield create
    for url in created:
        pg_databases.drop(url)


@pytest.fixture
def pg_database(new_pg_database: Callable[[], str]) -> str:
    """The URL of an empty database of its own for this test on the PostgreSQL server."""
    return new_pg_database()


# -- either backend -----------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a (not yet existing) SQLite database file of this test's own."""
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of this test's own, once for each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_database")


# -- upstream Buildbot --------------------------------------------------------------------

def _buildbot_version(venv: Path) -> str | None:
    """The first line of ``buildbot --version`` in ``venv``, or None if it does not run."""
    try:
        proc = subprocess.run([str(venv / "bin" / "buildbot"), "--version"],
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=upstream_env(), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return (proc.stdout.strip().splitlines() or [""])[0]


def upstream_env() -> dict[str, str]:
    """The environment to run upstream's programs in: ours, less what points at our venv."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    return env


def _create_upstream_venv(venv: Path, marker: Path, log: Path) -> str | None:
    """Build the virtualenv; return why that failed, or None."""
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
         "--no-input", *UPSTREAM_REQUIREMENTS],
    ]
    with open(log, "w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            try:
                proc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=upstream_env(),
                                      timeout=1200, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"{step[0]} did not run: {e}"
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                return f"{' '.join(step[:4])}... exited {proc.returncode}: {' '.join(tail)}"
    if not _buildbot_version(venv):
        return "buildbot --version does not run in the new virtualenv"
    marker.write_text("\n".join(UPSTREAM_REQUIREMENTS) + "\n")
    return None


@pytest.fixture(scope="session")
def upstream_venv(pytestconfig: pytest.Config) -> Path:
    """A virtualenv with upstream Buildbot 4.3.0 (``bin/buildbot``, ``bin/python``); see
    :func:`find_upstream_venv`."""
    return find_upstream_venv(UPSTREAM_CACHE, say=announcer(pytestconfig))


def find_upstream_venv(venv: Path,
                       create: Callable[[Path, Path, Path], str | None] | None = None,
                       *, say: Callable[[str], None] = _silent) -> Path:
    """A virtualenv with upstream Buildbot 4.3.0 (``bin/buildbot``, ``bin/python``).

    ``BUILDBOT_REST_UPSTREAM_VENV`` names one to use; else it is built once at ``venv``
    (~/.cache/buildbot_rest/...) by ``create`` (:func:`_create_upstream_venv`), which
    ``say`` announces, and reused.
    If it cannot be built the test fails, unless ``BUILDBOT_REST_ALLOW_NO_UPSTREAM=1`` (an
    offline run; see :func:`unavailable`).
    """
    create = create or _create_upstream_venv
    given = os.environ.get("BUILDBOT_REST_UPSTREAM_VENV", "").strip()
    if given:
        venv = Path(given)
        version = _buildbot_version(venv)
        if not version or "4.3.0" not in version:
            pytest.fail(f"BUILDBOT_REST_UPSTREAM_VENV={given}: bin/buildbot --version "
                        f"gives {version!r}, not Buildbot 4.3.0", pytrace=False)
        return venv

    marker = venv / "requirements.done"
    wanted = "\n".join(UPSTREAM_REQUIREMENTS) + "\n"
    venv.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time, should several test runs start together.
    with open(venv.parent / (venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (marker.is_file() and marker.read_text() == wanted
                    and _buildbot_version(venv)):
                return venv
            log = venv.parent / (venv.name + ".log")
            say(f"downloading upstream Buildbot 4.3.0 and its dependencies from PyPI into "
                f"{venv}, once, to compare answers with (log: {log}; "
                "BUILDBOT_REST_UPSTREAM_VENV=/path names a virtualenv of your own)")
            problem = create(venv, marker, log)
            if problem:
                shutil.rmtree(venv, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if problem:
        unavailable("upstream Buildbot 4.3.0 virtualenv", f"{problem} (log: {log})",
                    ALLOW_NO_UPSTREAM)
    return venv


@pytest.fixture(scope="session")
def run_upstream(upstream_venv: Path) -> Callable[..., str]:
    """``run_upstream("buildbot", "create-master", ..., cwd=dir)`` runs a program of the
    upstream virtualenv and returns its output; the test fails unless it exits 0."""

    def run(program: str, *args: str, cwd: Path, timeout: float = 300) -> str:
        proc = subprocess.run([str(upstream_venv / "bin" / program), *args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=upstream_env(), check=False)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            pytest.fail(f"upstream {program} {' '.join(args)} exited {proc.returncode}:\n"
                        f"{output}", pytrace=False)
        return output

    return run
