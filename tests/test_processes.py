"""Tests of worker processes: several processes answering on one listening socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task

from buildbot_rest import demo
from buildbot_rest.config import Config, ConfigError
from buildbot_rest.db import Database
from buildbot_rest.processes import CONFIG_ENV
from buildbot_rest.service import RestService


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('workers') / 'w.sqlite'}"
    db = Database(url, pool_size=1)
    db.prepare_sync()
    try:
        demo.populate(db.engine, builds=20, seed=1)
    finally:
        db.stop()
    return url


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_until(condition: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await task.deferLater(reactor, 0.1, lambda: None)
    return condition()


async def get(url: str) -> tuple[int, bytes]:
    response = await treq.get(url, headers={"Accept": ["application/json"]}, persistent=False)
    return response.code, await response.content()


@pytest_twisted.ensureDeferred
async def test_workers_share_the_port_and_stop_with_the_server(demo_url: str,
                                                                tmp_path: Path) -> None:
    access = tmp_path / "http.log"
    rest = RestService(Config(db_url=demo_url, port="tcp:0:interface=127.0.0.1", workers=2,
                              access_log=str(access)))
    rest.startService()
    await defer.succeed(None)
    assert rest.web is not None and rest.web.processes is not None and rest.web.port
    (pid,) = rest.web.processes.pids
    port = rest.web.port.getHost().port  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/api/v2/builds?limit=5&order=-buildid"
    try:
        # the worker is up once it answers; then both processes take connections
        assert await wait_until(lambda: cpu_ticks(pid) > 0)
        before = cpu_ticks(pid)
        results = []
        # rounds of 20 new connections, until the worker has answered some (each process
        # accepts whatever connections it finds waiting when it looks)
        for _ in range(60):
            results += await defer.gatherResults([defer.ensureDeferred(get(url))
                                                  for _ in range(20)])
            if len(results) >= 200 and cpu_ticks(pid) > before + 2:
                break
        assert {code for code, _ in results} == {200}
        bodies = {body for _, body in results}
        assert len(bodies) == 1
        # links name the port the parent bound, in every process
        assert f"http://localhost:{port}/api/v2/builds?" in json.loads(bodies.pop())[
            "meta"]["links"]["next"]
        assert cpu_ticks(pid) > before, "the worker answered no request"
    finally:
        await rest.stopService()
    assert not alive(pid)
    # one whole line per request, from both processes, in one file
    lines = access.read_text().splitlines()
    assert len(lines) >= 200
    assert all(line.count('"GET /api/v2/builds?limit=5&order=-buildid HTTP/1.1" 200') == 1
               for line in lines[-200:])


def test_a_worker_ends_when_its_parent_does(demo_url: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    config = Config(db_url=demo_url, port=None, base_url="http://ci.example.org/")
    env = dict(os.environ, **{CONFIG_ENV: json.dumps(config.settings())})
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    worker = subprocess.Popen(
        [sys.executable, "-m", "buildbot_rest.child_process", "--fd", str(listener.fileno())],
        pass_fds=[listener.fileno()], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listener.close()  # only the worker listens now
    try:
        body = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not body:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(b"GET /api HTTP/1.0\r\nAccept: application/json\r\n\r\n")
                    body = b"".join(iter(lambda: conn.recv(65536), b""))
            except OSError:
                time.sleep(0.2)
        assert body.startswith(b"HTTP/1.0 200")
        assert json.loads(body.partition(b"\r\n\r\n")[2]) == {
            "api_versions": {"v2": "http://ci.example.org/api/v2"}}
        assert worker.stdin is not None
        worker.stdin.close()  # what the parent's end does
        assert worker.wait(20) == 0
        output = worker.stdout.read().decode() if worker.stdout else ""
        assert "stopped" in output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize("port", ["unix:/tmp/bbrest-test.sock", None])
def test_workers_need_a_tcp_port(demo_url: str, port: str | None) -> None:
    rest = RestService(Config(db_url=demo_url, port=port, workers=2))
    with pytest.raises(ConfigError, match="workers = 2 needs a tcp: or tcp6: port"):
        rest.prepare()


def test_workers_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="'workers' must be at least 1"):
        Config(workers=0)
    with pytest.raises(ConfigError, match="'workers' must be an integer"):
        Config(workers="2")  # type: ignore[arg-type]
