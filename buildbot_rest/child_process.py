# -*- test-case-name: tests.test_processes -*-
"""The entry point of a child server process (``python -m buildbot_rest.child_process``):
it serves a listening socket inherited from its parent, until the parent ends or stops it.
See :mod:`buildbot_rest.processes` for the parent's side."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger

from buildbot_rest.config import Config
from buildbot_rest.processes import CONFIG_ENV, CUT_STATUS
from buildbot_rest.service import RestService

log = Logger()


class _ParentWatch(protocol.Protocol):
    """Calls ``stop`` when the child process.s standard input (a pipe from the parent) closes:
    the parent has ended."""

    def __init__(self, stop: Any) -> None:
        self._stop = stop

    def connectionLost(self, reason: Any = None) -> None:
        self._stop()


def main(argv: Sequence[str] | None = None) -> int:
    """The child process: serve the inherited socket until stopped."""
    parser = argparse.ArgumentParser(prog="python -m buildbot_rest.child_process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--family", choices=("inet", "inet6"), default="inet")
    args = parser.parse_args(argv)

    from twisted.internet import reactor as default_reactor
    from twisted.internet import stdio
    from twisted.logger import FileLogObserver, formatEvent, globalLogBeginner

    reactor: Any = default_reactor
    # One line per event (and a failure's traceback), without time or system: the
    # parent's log adds its own. Each line starts with the event's level, which the
    # parent logs it at.
    def line(event: dict[str, Any]) -> str:
        text = formatEvent(event) or ""
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        level = getattr(event.get("log_level"), "name", "info")
        return "".join(f"{level} {part}\n" for part in text.rstrip("\n").split("\n"))

    globalLogBeginner.beginLoggingTo([FileLogObserver(sys.stdout, line)],
                                     redirectStandardIO=False)
    config = Config(**json.loads(os.environ[CONFIG_ENV]))
    family = socket.AF_INET6 if args.family == "inet6" else socket.AF_INET
    service = RestService(config, reactor=reactor, inherited_socket=(args.fd, family))
    service.startService()
    stopping: list[bool] = []
    status = [0]

    def stopped(_: Any) -> None:
        if not service.stopped_cleanly:
            status[0] = CUT_STATUS  # (it has said which answers it cut)

    def failed(failure: Any) -> None:
        log.failure("the child process did not stop cleanly", failure)
        status[0] = 1

    def stop() -> None:
        # SIGTERM from the parent, or its pipe closing: finish the requests (within the
        # shutdown timeout), then exit.
        if not stopping:
            stopping.append(True)
            d = service.stopService()
            d.addCallbacks(stopped, failed)
            d.addBoth(lambda _: reactor.stop())

    # (mypy reads the Windows signature of StandardIO; this is the POSIX one)
    stdio.StandardIO(_ParentWatch(stop), stdin=0,  # type: ignore[call-arg]
                     stdout=os.open(os.devnull, os.O_WRONLY))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop))
    # ^C on a terminal reaches the whole process group: the parent stops its children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reactor.run(installSignalHandlers=False)
    return status[0]


if __name__ == "__main__":
    raise SystemExit(main())
