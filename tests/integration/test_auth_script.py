"""The issue's "done when": a script in the style of upstream's documented example
(``requests.Session``, ``GET /auth/login`` with Basic credentials, then the API with the
session cookie) works against ``twistd -n buildbot-rest``, and so does the same script
with a bearer token from ``buildbot-rest token create`` and no cookie."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.integration.test_server import env, twistd, wait_for

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A demo server whose only user is ``alice`` (role ``admins`` by her group), where
    only admins may control: its root URL and its database file."""
    workdir = tmp_path_factory.mktemp("auth-script")
    db = workdir / "demo.sqlite"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = workdir / "server.toml"
    config.write_text(f"""
[auth]
backend = "users"
[auth.users.alice]
password = {json.dumps(hashed)}
email = "alice@example.org"
groups = ["admins"]
[[auth.roles]]
from = "groups"

[[authz.allow]]
match = "any_control"
role = "admins"
""")
    log = workdir / "twistd.log"
    proc = twistd("-n", "--logfile", str(log), "--pidfile", str(workdir / "twistd.pid"),
                  "buildbot-rest", "--demo", "--config", str(config), "--db",
                  f"sqlite:///{db}", "--port", "tcp:0:interface=127.0.0.1", cwd=workdir)
    try:
        port = wait_for(log, r"serving \S+ on IPv4Address\(.*port=(\d+)\)", proc).group(1)
        yield f"http://127.0.0.1:{port}", db
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def force(session: requests.Session, root: str) -> requests.Response:
    return session.post(f"{root}/api/v2/forceschedulers/force", json={
        "jsonrpc": "2.0", "id": 1, "method": "force",
        "params": {"builderid": 1, "reason": "from a script"}})


def test_the_documented_session_script(server: tuple[str, Path]) -> None:
    root, _ = server
    session = requests.Session()
    # (upstream's example; the redirect after login lands on the UI or its 404)
    session.get(f"{root}/auth/login", auth=("alice", PASSWORD))
    assert "TWISTED_SESSION" in session.cookies
    session.auth = None
    builders = session.get(f"{root}/api/v2/builders").json()["builders"]
    assert builders and {"builderid", "name"} <= set(builders[0])
    config = session.get(f"{root}/config").json()
    assert config["user"]["username"] == "alice"
    assert config["auth"] == {"name": "UserPasswordAuth"}
    reply = force(session, root)
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["result"][0], int)
    # anonymous: reads allowed, control refused with upstream's message
    anonymous = requests.Session()
    assert anonymous.get(f"{root}/api/v2/builders").status_code == 200
    refused = force(anonymous, root)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "you need to have role 'admins'"
    # logout: the copy of the cookie kept before it no longer counts (COMPAT 36)
    kept = dict(session.cookies)
    session.get(f"{root}/auth/logout")
    assert force(requests.Session(), root).status_code == 403
    replay = requests.Session()
    replay.cookies.update(kept)
    assert replay.get(f"{root}/config").json()["user"] == {"anonymous": True}
    assert force(replay, root).status_code == 403


def test_the_same_script_with_a_bearer_token(server: tuple[str, Path]) -> None:
    root, db = server
    created = subprocess.run(
        [sys.executable, "-m", "buildbot_rest.scripts", "token", "create", "--db",
         f"sqlite:///{db}", "--user", "alice", "--role", "admins", "--expires", "1d",
         "--scope", "control"],
        env=env(), capture_output=True, text=True, check=True)
    token = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\S{30,}", token), created.stdout
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    assert session.get(f"{root}/api/v2/builders").status_code == 200
    assert session.get(f"{root}/config").json()["user"]["username"] == "alice"
    reply = force(session, root)
    assert reply.status_code == 200, reply.text
    assert not session.cookies  # (no cookie needed, none given)
    # a wrong token is a 401 saying so, never anonymous (COMPAT 33)
    wrong = requests.get(f"{root}/api/v2/builders",
                         headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in wrong.json()
