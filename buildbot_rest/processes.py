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
through its standard output, each line led by its level (``warn ...``), and goes into
the parent's log at that level, one line at a time.

A stop (SIGTERM) makes a child stop as the parent does: it waits for its answers in
flight up to ``shutdown_timeout`` seconds, then cuts them, and ends with status 0, or
:data:`CUT_STATUS` when it cut answers.
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
from twisted.logger import InvalidLogLevelError, Logger, LogLevel

from buildbot_rest.config import Config

log = Logger()

#: the environment variable that carries a child process's settings
CONFIG_ENV = "BUILDBOT_REST_WORKER_CONFIG"
#: how long past its own bound (its shutdown timeout, then the time given to cut
#: connections) a stop waits for a worker to end before it kills it
KILL_MARGIN = 5.0
#: the exit status of a worker whose stop cut answers in flight
CUT_STATUS = 3


def process_config(config: Config, base_url: str) -> Config:
    """A child process's settings: the parent's, with the parent's real base URL and no
    port."""
    return dataclasses.replace(config, port=None, base_url=base_url, demo=False, workers=1)


class _Child(protocol.ProcessProtocol):
    """The parent's side of one child process: relays its output lines into the log."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()
        #: whether it ended with status 0 (once ended)
        self.clean = False
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            if line:
                level, text = _level_of(line.decode("utf-8", "replace"))
                log.emit(level, "worker {n}: {line}", n=self.index, line=text)

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self.childDataReceived(fd, b"\n")
        code = getattr(reason.value, "exitCode", None)
        self.clean = code == 0
        if code not in (0, CUT_STATUS):  # (a cut is logged by the worker itself)
            log.warn("worker {n} ended with {reason}",  # noqa: G010
                     n=self.index, reason=reason.getErrorMessage())
        self.ended.callback(None)


def _level_of(line: str) -> tuple[LogLevel, str]:
    """The level a worker's line names first (see :mod:`buildbot_rest.child_process`),
    and the rest of it; a line without one is info."""
    name, _, rest = line.partition(" ")
    try:
        return LogLevel.levelWithName(name), rest
    except InvalidLogLevelError:
        return LogLevel.info, line


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

    async def stop(self, kill_after: float) -> list[int]:
        """Ask every worker to stop (SIGTERM: it finishes the requests it has, within its
        shutdown timeout), and kill those still running after ``kill_after`` seconds.
        Returns the numbers of the workers that did not stop cleanly (that cut answers in
        flight, or were killed)."""
        children, self._children = self._children, []
        for _, transport in children:
            _signal(transport, "TERM")
        if not children:
            return []
        ended = defer.DeferredList([w.ended for w, _ in children])

        def kill() -> None:
            for child, transport in children:
                if not child.ended.called:
                    log.warn("worker {n} still running {t:g}s after it was asked to "  # noqa: G010
                             "stop: killed", n=child.index, t=kill_after)
                    _signal(transport, "KILL")

        timer = self._reactor.callLater(kill_after, kill)
        await ended
        if timer.active():
            timer.cancel()
        return [child.index for child, _ in children if not child.clean]


def _signal(transport: Any, name: str) -> None:
    from twisted.internet.error import ProcessExitedAlready

    with contextlib.suppress(ProcessExitedAlready):  # it has ended meanwhile
        transport.signalProcess(name)
