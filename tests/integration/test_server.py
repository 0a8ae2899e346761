"""The server as users run it: ``twistd -n buildbot-rest --demo`` in a process of its own,
answering over a real port and stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: twistd of this interpreter, whatever virtualenv it lives in
TWISTD = [sys.executable, "-c",
          "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def env() -> dict[str, str]:
    """The environment of the server: the checkout first on the path, so that twistd finds
    the plugin in twisted/plugins/ even when the package is not installed."""
    result = dict(os.environ)
    result["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return result


def twistd(*args: str, cwd: Path, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*TWISTD, *args], cwd=cwd, env=env(), text=True,
                            stdin=subprocess.DEVNULL, **kw)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen[str],
              timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match
        if proc.poll() is not None:
            pytest.fail(f"the server exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} in the log after {timeout}s:\n{text}")


def get(url: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers["Content-Type"], json.load(response)


def test_demo_server_answers_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "twistd.log"
    db = tmp_path / "demo.sqlite"
    proc = twistd("-n", "--logfile", str(log), "--pidfile", str(tmp_path / "twistd.pid"),
                  "buildbot-rest", "--demo", "--db", f"sqlite:///{db}",
                  "--port", "tcp:0:interface=127.0.0.1", cwd=tmp_path,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        match = wait_for(log, r"serving \S+ on IPv4Address\(.*port=(\d+)\)", proc)
        root = f"http://127.0.0.1:{match.group(1)}"

        status, content_type, body = get(root + "/api/v2")
        assert status == 200
        assert content_type.startswith("application/json")
        names = [link["name"] for link in body["rootlinks"]]
        assert "builders" in names and "builds" in names
        # links name the port actually bound, though --port asked for any
        assert get(root + "/api")[2] == {
            "api_versions": {"v2": f"http://localhost:{match.group(1)}/api/v2"}}
        # the demo data is there
        assert get(root + "/api/v2/builds?limit=1")[2]["meta"]["total"] == 200

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = log.read_text()
    # twistd ends with the signal that stopped it, once everything is shut down
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, err, text)
    assert "Traceback" not in text + err
    assert "[buildbot_rest.service#info] stopped" in text
    assert "Server Shut Down." in text


@pytest.mark.parametrize("args, message", [
    (["--db", "postgresql://nobody@127.0.0.1:1/x"],
     "buildbot-rest: cannot connect to postgresql"),
    (["--bogus"], "buildbot-rest: option --bogus not recognized"),
    (["--port", "nope:1"], "buildbot-rest: invalid port 'nope:1'"),
])
def test_bad_start_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = twistd("-n", "buildbot-rest", *args, cwd=tmp_path, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert err.startswith(message), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in out + err


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        proc = twistd("-n", "--logfile", str(tmp_path / "twistd.log"), "buildbot-rest",
                      "--db", f"sqlite:///{tmp_path / 'x.sqlite'}",
                      "--port", f"tcp:{number}:interface=127.0.0.1", cwd=tmp_path,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    # the port is tried before twistd starts logging: one line on stderr, no pid file
    assert re.fullmatch(r"buildbot-rest: cannot listen on tcp:\d+:interface=127\.0\.0\.1: "
                        r"Address already in use\n", err), err
    assert not (tmp_path / "twistd.pid").exists()
