# -*- test-case-name: tests.test_workers -*-
"""Worker processes: more than one process answering on the standalone server's socket.

One Python process answers at most about one core's worth of requests: its reactor and
its database threads share one interpreter lock. With ``workers = N`` the server that
listens starts N - 1 more processes (``python -m buildbot_rest.workers``). Each inherits
the listening socket, opens its own database pool and answers whatever connections it
accepts; the kernel spreads the connections over them.

The parent passes each worker its settings (as JSON in an environment variable), the
socket's descriptor, and a pipe on its standard input: a worker stops when that pipe
closes, so that none outlives its parent. What a worker logs comes back to the parent
through its standard output and goes into the parent's log, one line at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, protocol
from twisted.logger import Logger

from buildbot_rest.config import Config

log = Logger()

#: the environment variable that carries a worker's settings
CONFIG_ENV = "BUILDBOT_REST_WORKER_CONFIG"
#: how long a stop waits for a worker to end after SIGTERM before it kills it
KILL_AFTER = 15.0


def worker_config(config: Config, base_url: str) -> Config:
    """A worker's settings: the parent's, with the parent's real base URL and no port."""
    return dataclasses.replace(config, port=None, base_url=base_url, demo=False, workers=1)


class _Worker(protocol.ProcessProtocol):
    """The parent's side of one worker: relays its output lines into the log."""

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


class WorkerProcesses:
    """The worker processes of one listening socket."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._workers: list[tuple[_Worker, Any]] = []

    @property
    def pids(self) -> list[int]:
        return [transport.pid for _, transport in self._workers if transport.pid]

    def start(self, count: int, fileno: int, family: int, config: Config) -> None:
        """Start ``count`` workers sharing the listening socket ``fileno``."""
        env = dict(os.environ)
        env[CONFIG_ENV] = json.dumps(config.settings())
        # the workers import this package as the parent did
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        args = [sys.executable, "-m", "buildbot_rest.workers", "--fd", str(fileno),
                "--family", "inet6" if family == socket.AF_INET6 else "inet"]
        for index in range(1, count + 1):
            worker = _Worker(index)
            transport = self._reactor.spawnProcess(
                worker, sys.executable, args, env=env,
                childFDs={0: "w", 1: "r", 2: "r", fileno: fileno})
            self._workers.append((worker, transport))
            log.info("worker {n} started, pid {pid}", n=index, pid=transport.pid)

    async def stop(self) -> None:
        """Ask every worker to stop (SIGTERM: it finishes the requests it has), and kill
        those still running after :data:`KILL_AFTER` seconds."""
        workers, self._workers = self._workers, []
        for _, transport in workers:
            _signal(transport, "TERM")
        if not workers:
            return
        ended = defer.DeferredList([w.ended for w, _ in workers])
        timer = self._reactor.callLater(KILL_AFTER, lambda: [_signal(t, "KILL")
                                                             for _, t in workers])
        await ended
        if timer.active():
            timer.cancel()


def _signal(transport: Any, name: str) -> None:
    from twisted.internet.error import ProcessExitedAlready

    with contextlib.suppress(ProcessExitedAlready):  # it has ended meanwhile
        transport.signalProcess(name)


# -- the worker's side ---------------------------------------------------------------------


class _ParentWatch(protocol.Protocol):
    """Calls ``stop`` when the worker's standard input (a pipe from the parent) closes:
    the parent has ended."""

    def __init__(self, stop: Any) -> None:
        self._stop = stop

    def connectionLost(self, reason: Any = None) -> None:
        self._stop()


def main(argv: Sequence[str] | None = None) -> int:
    """The worker process: serve the inherited socket until stopped."""
    parser = argparse.ArgumentParser(prog="python -m buildbot_rest.workers")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--family", choices=("inet", "inet6"), default="inet")
    args = parser.parse_args(argv)

    from twisted.internet import reactor as default_reactor
    from twisted.internet import stdio
    from twisted.logger import FileLogObserver, formatEvent, globalLogBeginner

    from buildbot_rest.service import RestService

    reactor: Any = default_reactor
    # One line per event (and a failure's traceback), without time or system: the
    # parent's log adds its own.
    def line(event: dict[str, Any]) -> str:
        text = formatEvent(event) or ""
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        return text.rstrip("\n") + "\n"

    globalLogBeginner.beginLoggingTo([FileLogObserver(sys.stdout, line)],
                                     redirectStandardIO=False)
    config = Config(**json.loads(os.environ[CONFIG_ENV]))
    family = socket.AF_INET6 if args.family == "inet6" else socket.AF_INET
    service = RestService(config, reactor=reactor, inherited_socket=(args.fd, family))
    service.startService()
    stopping: list[bool] = []

    def stop() -> None:
        # SIGTERM from the parent, or its pipe closing: finish the requests, then exit.
        if not stopping:
            stopping.append(True)
            d = service.stopService()
            d.addErrback(lambda f: log.failure("the worker did not stop cleanly", f))
            d.addBoth(lambda _: reactor.stop())

    stdio.StandardIO(_ParentWatch(stop), stdin=0, stdout=os.open(os.devnull, os.O_WRONLY))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop))
    # ^C on a terminal reaches the whole process group: the parent stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
