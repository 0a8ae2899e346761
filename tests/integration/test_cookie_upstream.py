"""Session cookies interchange with upstream Buildbot 4.3.0 (its own code, run in its
virtualenv): a cookie minted by upstream's ``BuildbotSession`` is accepted by our server,
and one we mint is read by upstream's ``parse_user_info_from_token``; upstream's expired
and anonymous cookies are anonymous here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.conftest import upstream_env
from tests.www.test_login import AuthServer, serve_auth

pytestmark = pytest.mark.upstream

#: upstream's session code: prints the cookie value of a session of the given user info
#: (``expDelay`` in seconds), or the user info upstream reads from a cookie value
UPSTREAM = r"""
import datetime, json, sys
from buildbot.www import auth
from buildbot.www.service import BuildbotSession

command, secret, argument = sys.argv[1:4]
if command == "mint":
    class Site:
        session_secret = secret
    BuildbotSession.expDelay = datetime.timedelta(seconds=int(sys.argv[4]))
    session = BuildbotSession(Site())
    session.user_info = json.loads(argument)
    print(session.uid)
else:
    try:
        print(json.dumps(auth.parse_user_info_from_token(argument, secret)))
    except KeyError:
        print("null")
"""


def upstream(venv: Path, *args: str) -> Any:
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", UPSTREAM, *args],
                          capture_output=True, text=True, timeout=60, env=upstream_env(),
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    from tests.www.test_login import USERS
    url = f"sqlite:///{tmp_path_factory.mktemp('interchange') / 'db.sqlite'}"
    yield from serve_auth(url, {"backend": "users", "users": USERS})


@pytest_twisted.ensureDeferred
async def test_upstream_cookie_accepted_here(server: AuthServer, upstream_venv: Path) -> None:
    secret = server.auth.sessions.secret
    assert secret is not None
    user = {"username": "bob", "email": "bob@example.org", "groups": ["devs"]}
    token = upstream(upstream_venv, "mint", secret, json.dumps(user), "3600")
    assert await server.whoami(f"TWISTED_SESSION={token}") == user
    # upstream's expired and anonymous sessions are anonymous here
    expired = upstream(upstream_venv, "mint", secret, json.dumps(user), "-10")
    anonymous = upstream(upstream_venv, "mint", secret, json.dumps({"anonymous": True}),
                         "3600")
    for value in (expired, anonymous):
        assert await server.whoami(f"TWISTED_SESSION={value}") == {"anonymous": True}
    # a cookie signed with another secret by upstream's code: anonymous
    other = upstream(upstream_venv, "mint", "f" * 32, json.dumps(user), "3600")
    assert await server.whoami(f"TWISTED_SESSION={other}") == {"anonymous": True}


@pytest_twisted.ensureDeferred
async def test_our_cookie_read_by_upstream(server: AuthServer, upstream_venv: Path) -> None:
    secret = server.auth.sessions.secret
    assert secret is not None
    reply, cookie = await server.login()
    assert reply.code == 302
    name, token = cookie.split("=", 1)
    assert name == "TWISTED_SESSION"
    read = json.loads(upstream(upstream_venv, "read", secret, token))
    assert read == {"username": "alice", "email": "alice@example.org",
                    "full_name": "Alice", "groups": ["admins"]}
    # and a cookie signed by another secret is refused by upstream as well
    assert upstream(upstream_venv, "read", "0" * 32, token) == "null"
