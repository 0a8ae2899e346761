"""SIGTERM to a real ``twistd -n buildbot-rest`` with answers in flight, in one process
and with ``workers = 2``, on each database.

The server waits for its answers in flight (up to ``shutdown_timeout``), sends each of
them whole to a client that reads, cuts those of clients that do not, and exits within
that bound every time; its log names the answers it cut, and says "stopped" alone only
when it cut none. The database is the large one of ``tests/www/test_disconnect.py``: a
collection of ~30 MB and a raw log of ~32 MB stream, and a page of 8,000 builds (~6 MB)
is written whole at once, more than the sockets' buffers hold.

A slow client is a socket with a small receive buffer that reads the status line of its
answer and nothing more; a fast one stops reading there too, until the server has been
told to stop, then reads everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from buildbot_rest.www.site import ABORT_TIMEOUT
from tests.integration.test_server import twistd, wait_for
from tests.www.test_disconnect import (  # noqa: F401 - fixtures
    BigData,
    big_data,
    big_postgresql,
    big_sqlite,
)

#: how long each server of these tests waits for its answers in flight, when it must
#: cut some
SHUTDOWN = 2.0
#: what the slow clients ask for: two answers that stream, and one written whole at once
SLOW = ("/api/v2/builds", "raw", "/api/v2/builds?limit=8000")
#: what the fast clients ask for
FAST = ("raw", "/api/v2/builds?limit=8000", "/api/v2/builds?field=buildid")
#: bytes a slow client's socket buffers (it reads nothing more once its answer started)
SMALL_BUFFER = 4096


@dataclass
class Server:
    """A ``twistd -n buildbot-rest`` process and what its log says about it."""

    proc: subprocess.Popen[str]
    log: Path
    port: int
    #: the server's process, then its workers'
    pids: list[int]

    def text(self) -> str:
        return self.log.read_text()


@contextmanager
def serving(tmp_path: Path, data: BigData, *, workers: int,
            shutdown_timeout: float) -> Iterator[Server]:
    """A server of the large database, with ``workers`` processes; killed (with its
    workers) if the test leaves it running."""
    config = tmp_path / "server.toml"
    config.write_text(f'db_url = "{data.url}"\nport = "tcp:0:interface=127.0.0.1"\n'
                      f"workers = {workers}\npool_size = 16\naccess_log = \"off\"\n"
                      f"shutdown_timeout = {shutdown_timeout}\n")
    log = tmp_path / "twistd.log"
    proc = twistd("-n", "--logfile", str(log), "--pidfile", str(tmp_path / "twistd.pid"),
                  "buildbot-rest", "--config", str(config), cwd=tmp_path,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = [proc.pid]
    try:
        port = int(wait_for(log, r"serving \S+ on IPv4Address\(.*port=(\d+)\)", proc)[1])
        for n in range(1, workers):
            pids.append(int(wait_for(log, rf"worker {n} started, pid (\d+)", proc)[1]))
            wait_for(log, rf"worker {n}: ApiSite starting on", proc)
        yield Server(proc, log, port, pids)
    finally:
        for pid in reversed(pids):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
        proc.communicate()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- clients -----------------------------------------------------------------------------

@dataclass
class Client:
    """One GET over a plain socket (HTTP/1.1, keep-alive): it reads the status line of
    its answer, then nothing until :meth:`read_all`."""

    path: str
    slow: bool
    sock: socket.socket = field(init=False)
    data: bytearray = field(default_factory=bytearray)
    #: the process that answers it
    pid: int | None = None

    def connect(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(30)
        if self.slow:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Accept: application/json\r\n\r\n".encode())
        while len(self.data) < 12:
            chunk = self.sock.recv(12 - len(self.data))
            assert chunk, f"{self.path}: the connection closed before any answer"
            self.data += chunk
        assert self.data.startswith(b"HTTP/1.1 200"), bytes(self.data)

    def read_all(self) -> None:
        """Read until the server closes the connection (or cuts it)."""
        try:
            while chunk := self.sock.recv(1 << 20):
                self.data += chunk
        except ConnectionResetError:
            pass
        finally:
            self.sock.close()

    def body(self) -> tuple[bytes, bool]:
        """The body (de-chunked), and whether it came whole."""
        head, _, rest = bytes(self.data).partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: (\d+)", head.lower())
        if length is not None:
            return rest, len(rest) == int(length[1])
        assert b"\r\ntransfer-encoding: chunked" in head.lower(), head
        body, pos = [], 0
        while (end := rest.find(b"\r\n", pos)) >= 0:
            size = int(rest[pos:end].split(b";")[0], 16)
            chunk = rest[end + 2:end + 2 + size]
            body.append(chunk)
            if size == 0 or len(chunk) < size:
                return b"".join(body), size == 0 and rest[end + 2:] == b"\r\n"
            pos = end + 2 + size + 2
        return b"".join(body), False


def _owner(client: Client, pids: list[int]) -> int:
    """The process (of ``pids``) holding the server's end of ``client``'s connection,
    read from /proc: the kernel, not the server, spreads connections over processes."""
    mine, theirs = client.sock.getsockname()[1], client.sock.getpeername()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.rsplit(":", 1)[1], 16) == theirs
                and int(remote.rsplit(":", 1)[1], 16) == mine):
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of {pids} holds the connection of {client.path}")


def connect_clients(server: Server, data: BigData, paths: tuple[str, ...], *,
                    slow: bool) -> list[Client]:
    """A client for each of ``paths``, and more (cycling through them) until every
    process of the server answers at least one."""
    clients: list[Client] = []
    while len(clients) < len(paths) or {c.pid for c in clients} != set(server.pids):
        assert len(clients) < 4 * len(paths), (
            f"the kernel gave no connection to some process of {server.pids}")
        path = paths[len(clients) % len(paths)]
        client = Client(data.raw_path if path == "raw" else path, slow)
        client.connect(server.port)
        client.pid = _owner(client, server.pids)
        clients.append(client)
    return clients


def read_in_threads(clients: list[Client]) -> list[threading.Thread]:
    threads = [threading.Thread(target=c.read_all, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    return threads


def assert_whole(client: Client, data: BigData) -> None:
    body, complete = client.body()
    assert complete, f"{client.path}: the answer was cut short ({len(body)} bytes)"
    if client.path == data.raw_path:
        assert hashlib.sha256(body).hexdigest() == data.raw_sha256
        return
    answer = json.loads(body)
    expected = 8000 if "limit=8000" in client.path else data.builds
    assert len(answer["builds"]) == expected
    assert answer["meta"]["total"] == data.builds


def sigterm(server: Server) -> float:
    """Send SIGTERM (once: a second one is Twisted's ReactorNotRunning traceback) and
    wait until the server has it; when it was sent."""
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    wait_for(server.log, r"Received SIGTERM", server.proc)
    return started


def exited(server: Server, started: float, bound: float) -> float:
    """How long the server took to exit since ``started`` (failing past ``bound``)."""
    try:
        server.proc.wait(max(0.0, started + bound - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server still runs {bound:g}s after SIGTERM:\n{server.text()}",
                    pytrace=False)
    took = time.monotonic() - started
    assert not any(_alive(pid) for pid in server.pids), "a worker outlived the server"
    return took


def assert_no_failure(text: str) -> None:
    assert "Traceback" not in text, text
    assert not re.search(r"#(critical|error)\]", text), text


def cut_lines(text: str) -> Counter[tuple[str, str]]:
    """The answers each process says it cut: (process, URI) counted."""
    found: Counter[tuple[str, str]] = Counter()
    pattern = (r"\[buildbot_rest\.(?:www\.site|processes)#warn\] (worker \d+: )?"
               r"(\d+) answers still running after [\d.]+s were cut: (.*)")
    for who, n, uris in re.findall(pattern, text):
        listed = uris.split(", ")
        assert len(listed) == int(n), (n, uris)
        found.update((who.rstrip(": ") or "server", uri) for uri in listed)
    return found


# -- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_stop_sends_every_answer_in_flight(tmp_path: Path, big_data: BigData,  # noqa: F811
                                           workers: int) -> None:
    """Clients that read: the stop waits until each has its whole answer (the server
    closes each connection once its answer is sent), then the server exits, saying it
    stopped cleanly."""
    with serving(tmp_path, big_data, workers=workers, shutdown_timeout=60) as server:
        clients = connect_clients(server, big_data, FAST, slow=False)
        started = sigterm(server)
        threads = read_in_threads(clients)
        took = exited(server, started, 60)
        for thread in threads:
            thread.join(30)
        for client in clients:
            assert_whole(client, big_data)
        text = server.text()
    assert took < 30, f"the stop took {took:.1f}s"
    assert_no_failure(text)
    assert "[buildbot_rest.service#info] stopped\n" in text, text
    assert "cut" not in text and "not cleanly" not in text, text
    for n in range(1, workers):
        assert f"[buildbot_rest.processes#info] worker {n}: stopped\n" in text, text


@pytest.mark.parametrize("workers", [1, 2])
def test_stop_cuts_the_answers_of_slow_clients_within_its_bound(
        tmp_path: Path, big_data: BigData, workers: int) -> None:  # noqa: F811
    """Slow and fast clients at once: the fast ones get their whole answers; those of the
    slow ones (streaming, or written whole but not taken) are cut once ``shutdown_timeout``
    has passed; the server exits within its bound, and its log (the workers' too) names
    each answer cut and does not say it stopped cleanly."""
    with serving(tmp_path, big_data, workers=workers, shutdown_timeout=SHUTDOWN) as server:
        slow = connect_clients(server, big_data, SLOW, slow=True)
        fast = connect_clients(server, big_data, FAST, slow=False)
        threads = read_in_threads(fast)
        took = exited(server, sigterm(server), SHUTDOWN + ABORT_TIMEOUT + 10)
        for thread in threads:
            thread.join(30)
        for client in fast:
            assert_whole(client, big_data)
        for client in slow:
            client.sock.settimeout(10)
            client.read_all()  # what reached its buffers, then the end
            assert not client.body()[1], f"{client.path}: answered whole"
        text = server.text()
    assert SHUTDOWN <= took < SHUTDOWN + ABORT_TIMEOUT, f"the stop took {took:.1f}s"
    assert_no_failure(text)
    names = {pid: "server" if i == 0 else f"worker {i}" for i, pid in enumerate(server.pids)}
    assert cut_lines(text) == Counter((names[c.pid], c.path) for c in slow), text
    assert re.search(r"\[buildbot_rest\.service#warn\] stopped, not cleanly: ", text), text
    assert "[buildbot_rest.service#info] stopped" not in text, text
    for n in range(1, workers):
        assert f"worker {n}: stopped, not cleanly" in text, text


@pytest.mark.parametrize("key, value, message", [
    ("shutdown_timeout", -1, "'shutdown_timeout' must be a finite number of seconds of at "
                             "least 0, not -1"),
    ("shutdown_timeout", float("inf"), "'shutdown_timeout' must be a finite number"),
    ("client_timeout", 0, "'client_timeout' must be a finite number of seconds more than 0"),
    ("client_timeout", float("nan"), "'client_timeout' must be a finite number"),
    ("client_timeout", "60", "'client_timeout' must be a number of seconds, not string"),
    ("shutdown_timeout", True, "'shutdown_timeout' must be a number of seconds, not boolean"),
])
def test_timeouts_are_bounded(key: str, value: object, message: str) -> None:
    """Both timeouts bound a wait: a finite number of seconds (0 stops at once)."""
    from buildbot_rest.config import Config, ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        Config(**{key: value})  # type: ignore[arg-type]
    assert Config(shutdown_timeout=0, client_timeout=0.5).settings()["client_timeout"] == 0.5
