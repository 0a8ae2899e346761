# -*- test-case-name: tests.test_processes -*-
"""Server processes: more than one process answering on the standalone server's socket.

(These are processes of this server, set by the ``workers`` setting; they have nothing
to do with Buildbot's workers, the machines that run builds.)

One Python process answers at most about one core's worth of requests: its reactor and
its database threads share one interpreter lock. With ``workers = N`` the server that
listens starts N - 1 more processes (``python -m buildbot_rest.child_process``, see
:mod:`buildbot_rest.child_process`). Each inherits the listening socket, opens its own
database pool and answers whatever connections it accepts; the kernel spreads the
connections over them.

The parent passes each process its settings (as JSON in an environment variable), the
socket's descriptor, and a pipe on its standard input: a child stops when that pipe
closes, so that none outlives its parent. What a child logs comes back to the parent
through its standard output and goes into the parent's log, one line at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
from typing import Any

from twisted.internet import defer, protocol
from twisted.logger import Logger

from buildbot_rest.config import Config

log = Logger()

#: the environment variable that carries a child process's settings
CONFIG_ENV = "BUILDBOT_REST_WORKER_CONFIG"
#: how long a stop waits for a worker to end after SIGTERM before it kills it
KILL_AFTER = 15.0


def process_config(config: Config, base_url: str) -> Config:
    """A child process's settings: the parent's, with the parent's real base URL and no
    port."""
    return dataclasses.replace(config, port=None, base_url=base_url, demo=False, workers=1)


class _Child(protocol.ProcessProtocol):
    """The parent's side of one child process: relays its output lines into the log."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            if line:
                log.info("worker {n}: {line}", n=self.index,
                         line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self.childDataReceived(fd, b"\n")
        code = getattr(reason.value, "exitCode", None)
        if code not in (0, None):
            log.warn("worker {n} ended with {reason}",  # noqa: G010
                     n=self.index, reason=reason.getErrorMessage())
        self.ended.callback(None)


class ServerProcesses:
    """The child processes that serve one listening socket beside this one."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._children: list[tuple[_Child, Any]] = []

    @property
    def pids(self) -> list[int]:
        return [transport.pid for _, transport in self._children if transport.pid]

    def start(self, count: int, fileno: int, family: int, config: Config) -> None:
        """Start ``count`` processes sharing the listening socket ``fileno``."""
        env = dict(os.environ)
        env[CONFIG_ENV] = json.dumps(config.settings())
        # the children import this package as the parent did
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        args = [sys.executable, "-m", "buildbot_rest.child_process", "--fd", str(fileno),
                "--family", "inet6" if family == socket.AF_INET6 else "inet"]
        for index in range(1, count + 1):
            child = _Child(index)
            transport = self._reactor.spawnProcess(
                child, sys.executable, args, env=env,
                childFDs={0: "w", 1: "r", 2: "r", fileno: fileno})
            self._children.append((child, transport))
            log.info("worker {n} started, pid {pid}", n=index, pid=transport.pid)

    async def stop(self) -> None:
        """Ask every worker to stop (SIGTERM: it finishes the requests it has), and kill
        those still running after :data:`KILL_AFTER` seconds."""
        children, self._children = self._children, []
        for _, transport in children:
            _signal(transport, "TERM")
        if not children:
            return
        ended = defer.DeferredList([w.ended for w, _ in children])
        def kill() -> None:
            for _, transport in children:
                _signal(transport, "KILL")

        timer = self._reactor.callLater(KILL_AFTER, kill)
        await ended
        if timer.active():
            timer.cancel()


def _signal(transport: Any, name: str) -> None:
    from twisted.internet.error import ProcessExitedAlready

    with contextlib.suppress(ProcessExitedAlready):  # it has ended meanwhile
        transport.signalProcess(name)
