"""The services the tests need (upstream Buildbot's virtualenv, a PostgreSQL server): when
one cannot be had, the tests that need it fail, in CI above all, rather than being
skipped into a green run; a developer's offline run skips them only when it says so
(``BUILDBOT_REST_ALLOW_NO_UPSTREAM=1``, ``BUILDBOT_REST_ALLOW_NO_PG=1``).

These run the code of the session fixtures (tests/conftest.py) with a virtualenv builder
that fails as an offline ``pip install`` does, and with a PostgreSQL set-up script that
fails or names a server that does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    ALLOW_NO_PG,
    ALLOW_NO_UPSTREAM,
    find_pg_url,
    find_upstream_venv,
)

Failed = pytest.fail.Exception
Skipped = pytest.skip.Exception

#: a port nothing listens on
DEAD_PG = "postgresql://postgres@127.0.0.1:1/postgres"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of a run that names no service and opts out of nothing."""
    for name in ("CI", ALLOW_NO_PG, ALLOW_NO_UPSTREAM, "BUILDBOT_REST_TEST_PG",
                 "BUILDBOT_REST_UPSTREAM_VENV"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def offline_pip(venv: Path, marker: Path, log: Path) -> str:
    """Builds nothing, as ``pip install`` without a network."""
    log.write_text("ERROR: Could not find a version that satisfies the requirement "
                   "buildbot==4.3.0\n")
    return "python -m pip install... exited 1: no matching distribution for buildbot==4.3.0"


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "postgres.sh"
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    return path


# -- upstream's virtualenv --------------------------------------------------------------

@pytest.mark.parametrize("ci", ["true", "1", None])
def test_no_upstream_venv_fails(env: pytest.MonkeyPatch, tmp_path: Path,
                                ci: str | None) -> None:
    if ci is not None:
        env.setenv("CI", ci)
    with pytest.raises(Failed) as info:
        find_upstream_venv(tmp_path / "upstream-4.3.0", offline_pip)
    message = str(info.value)
    assert message.startswith("no upstream Buildbot 4.3.0 virtualenv: python -m pip install"
                              "... exited 1: no matching distribution for buildbot==4.3.0 "
                              f"(log: {tmp_path / 'upstream-4.3.0.log'})")
    assert ("in CI (CI is set)" in message) == (ci is not None)
    assert message.endswith("set BUILDBOT_REST_ALLOW_NO_UPSTREAM=1 to skip the tests that "
                            "need it instead")
    assert not (tmp_path / "upstream-4.3.0").exists()


@pytest.mark.parametrize("ci", ["true", None])
def test_no_upstream_venv_is_skipped_when_allowed(env: pytest.MonkeyPatch, tmp_path: Path,
                                                  ci: str | None) -> None:
    # the opt-out is honoured in CI too, and the reason is kept
    if ci is not None:
        env.setenv("CI", ci)
    env.setenv(ALLOW_NO_UPSTREAM, "1")
    with pytest.raises(Skipped) as info:
        find_upstream_venv(tmp_path / "upstream-4.3.0", offline_pip)
    assert str(info.value) == (
        "no upstream Buildbot 4.3.0 virtualenv: python -m pip install... exited 1: no "
        "matching distribution for buildbot==4.3.0 "
        f"(log: {tmp_path / 'upstream-4.3.0.log'}) "
        "(BUILDBOT_REST_ALLOW_NO_UPSTREAM=1: skipped)")


@pytest.mark.parametrize("value", ["0", "", "false"])
def test_an_unset_opt_out_does_not_skip(env: pytest.MonkeyPatch, tmp_path: Path,
                                        value: str) -> None:
    env.setenv("CI", "true")
    env.setenv(ALLOW_NO_UPSTREAM, value)
    with pytest.raises(Failed):
        find_upstream_venv(tmp_path / "upstream-4.3.0", offline_pip)


def test_the_pg_opt_out_does_not_excuse_upstream(env: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    env.setenv(ALLOW_NO_PG, "1")
    with pytest.raises(Failed):
        find_upstream_venv(tmp_path / "upstream-4.3.0", offline_pip)


def test_a_named_upstream_venv_that_does_not_run_fails_even_when_allowed(
        env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv(ALLOW_NO_UPSTREAM, "1")
    env.setenv("BUILDBOT_REST_UPSTREAM_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(Failed) as info:
        find_upstream_venv(tmp_path / "upstream-4.3.0", offline_pip)
    assert str(info.value) == (f"BUILDBOT_REST_UPSTREAM_VENV={tmp_path / 'nowhere'}: "
                               "bin/buildbot --version gives None, not Buildbot 4.3.0")


# -- PostgreSQL -------------------------------------------------------------------------

@pytest.mark.parametrize("ci", ["true", None])
def test_no_pg_server_fails(env: pytest.MonkeyPatch, tmp_path: Path, ci: str | None) -> None:
    if ci is not None:
        env.setenv("CI", ci)
    with pytest.raises(Failed) as info:
        find_pg_url(script(tmp_path, "echo 'E: Unable to locate package postgresql' >&2\n"
                                     "exit 100"))
    message = str(info.value)
    assert message.startswith("no PostgreSQL server: postgres.sh exited 100: E: Unable to "
                              "locate package postgresql (set BUILDBOT_REST_TEST_PG to use a "
                              "server of your own)")
    assert ("in CI (CI is set)" in message) == (ci is not None)
    assert message.endswith("set BUILDBOT_REST_ALLOW_NO_PG=1 to skip the tests that need it "
                            "instead")


def test_pg_server_that_does_not_answer_fails(env: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    env.setenv("CI", "true")
    with pytest.raises(Failed) as info:
        find_pg_url(script(tmp_path, f"echo {DEAD_PG}"))
    assert str(info.value).startswith(f"no PostgreSQL server: {DEAD_PG} from postgres.sh "
                                      "does not answer: ")


@pytest.mark.parametrize("ci", ["true", None])
def test_no_pg_server_is_skipped_when_allowed(env: pytest.MonkeyPatch, tmp_path: Path,
                                              ci: str | None) -> None:
    if ci is not None:
        env.setenv("CI", ci)
    env.setenv(ALLOW_NO_PG, "1")
    with pytest.raises(Skipped) as info:
        find_pg_url(script(tmp_path, "exit 1"))
    assert str(info.value) == ("no PostgreSQL server: postgres.sh exited 1: no output (set "
                               "BUILDBOT_REST_TEST_PG to use a server of your own) "
                               "(BUILDBOT_REST_ALLOW_NO_PG=1: skipped)")


def test_a_named_pg_server_that_does_not_answer_fails_even_when_allowed(
        env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv(ALLOW_NO_PG, "1")
    env.setenv("BUILDBOT_REST_TEST_PG", DEAD_PG)
    with pytest.raises(Failed) as info:
        find_pg_url(script(tmp_path, "exit 1"))
    assert str(info.value).startswith(f"BUILDBOT_REST_TEST_PG={DEAD_PG} does not answer: ")


@pytest.mark.postgresql
def test_a_pg_server_from_the_script(env: pytest.MonkeyPatch, tmp_path: Path,
                                     pg_url: str) -> None:
    assert find_pg_url(script(tmp_path, f"echo 'starting...'\necho {pg_url}")) == pg_url
