# -*- test-case-name: tests.test_bench_live -*-
"""Live events under load: ``python -m bench.live``.

Starts the server in a process of its own (``python -m bench.live --serve``: a
:class:`~buildbot_rest.service.RestService` listening on a port, over a new demo SQLite
file in ``/dev/shm``, so that the events' transactions wait for no disk, or over the
database ``--db`` names), connects ``--clients`` WebSocket subscribers to ``/ws`` on
``--path`` (default ``builds/*/*``), then has the server produce ``--rate`` events per
second for ``--duration`` seconds by calling the update method
``setBuildStateString(buildid, "t=<time.time()>")`` on a few builds in a ``LoopingCall``,
inside the server process. Each event (``builds/<id>/update``) carries its send time in
``m.state_string``, read on the same clock by the clients on receipt.

The clients speak the protocol of protocol.md 8.2 plus this server's ``"s"`` sequence
number: ``{"cmd": "startConsuming", "path": ..., "_id": 1}``, answered ``{"msg": "OK",
"code": 200, "_id": 1}``, then ``{"k": ..., "m": ..., "s": N}`` frames. Most are lean:
raw sockets with a hand-made HTTP Upgrade, split over ``--client-procs`` processes, each
an epoll loop that frames the server's (unmasked) frames and reads the sequence number and
the send time of every event with one bytes regex over all that arrived; they answer pings
and record close frames. ``--autobahn-clients`` of them use autobahn and parse every
frame as JSON, checking its shape, as a cross-check of the lean parser.

The server subscribes too (``live.subscribe``) and records the sequence number of every
event matching the path: that list is what each client must have received, exactly once
and in order. A client closed by the server (close code 1008: it fell more than
``live_buffer`` bytes behind) misses events, so the run fails the check.

Reported: the events produced (and whether the server kept the rate), every client's
deliveries against the list (missing, duplicated, unexpected, out of order, closes), two
delivery latencies over all deliveries (p50, p90, p99, max and mean, in ms): from the
update call to the client's receipt, and from the event's publication to the receipt
(the fan-out; the difference, the update's transaction and the wait for the reactor, is
given apart as the publish delay); the server's RSS (idle, with the subscribers, peak
during the events, after, and once the clients are gone; from /proc); the CPU time of the
server, of each client process and of the bench (from /proc, in % of one core), the
machine's and what other processes took. The load generator's own lag is judged apart:
a client process near a whole core is saturated, and lean clients whose fan-out is well
above the autobahn clients' (a process of a handful, which reads at once) lag; the bytes
left unread in the clients' sockets (``/proc/net/tcp``, sampled) are given too. When the
generator cannot keep up, the report says so rather than blaming the server. The exit
status is 1 when an event was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import datetime
import faulthandler
import hashlib
import json
import multiprocessing
import os
import platform
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import IO, Any, cast

from twisted.protocols.basic import LineReceiver

from bench.run import PeakSampler, Server, free_port, write_report

#: what a server appends to the client's key for Sec-WebSocket-Accept (RFC 6455 4.2.2)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: seconds a client may take to connect, upgrade and be subscribed
CONNECT_TIMEOUT = 30.0
#: seconds the server may take to answer a command of the bench
COMMAND_TIMEOUT = 30.0
#: seconds the server may take to have made the events beyond 10 times their duration
PRODUCE_MARGIN = 300.0
#: after the last event, seconds without a new delivery before the bench stops waiting
DRAIN_TIMEOUT = 30.0
#: a client process above this share of a core is taken as saturated
SATURATED_CPU = 0.9
#: the lean clients' fan-out p50 above twice the autobahn clients' plus this many ms:
#: the lean clients lag
LAGGING_MS = 5.0
#: without autobahn clients: bytes unread in the clients' sockets above which the
#: generator is taken as lagging
LAGGING_BACKLOG = 1 << 20
#: % of a core used by processes outside the bench above which the report says so
BUSY_OTHERS = 20.0
#: an event as the lean clients read it: its send time, then its sequence number (the
#: last key of each frame, ``orjson`` writing ``k``, ``m``, ``s`` in this order)
EVENT = re.compile(rb'"state_string":"t=([0-9.]+)".*?"s":(\d+)\}', re.S)
EVENT_START = b'{"k":"'


# -- the server process -------------------------------------------------------------------

def more_files() -> None:
    """Raise this process's limit of open files to the hard one: a socket per client
    (1,000 by default) is more than the usual soft limit of 1,024 leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(options: dict[str, Any]) -> None:
    """The server process: a RestService on ``options["port"]`` that produces events when
    told to. Commands come as JSON lines on stdin, answers as JSON lines on stdout; the
    server's log goes to stderr."""
    from twisted.internet import reactor, stdio
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from buildbot_rest.config import Config
    from buildbot_rest.service import RestService

    # (kill -USR1 <pid>: every thread's stack to the log)
    faulthandler.register(signal.SIGUSR1, file=2)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    more_files()
    settings: dict[str, Any] = {"db_url": options["db"], "demo": True,
                                "port": f"tcp:{options['port']}:interface=127.0.0.1",
                                "access_log": "off"}
    for name in ("ping_interval", "live_buffer"):
        if options.get(name) is not None:
            settings[name] = options[name]
    rest = RestService(Config(**settings))
    rest.prepare()
    rest.startService()
    reactor.addSystemEventTrigger("before", "shutdown", rest.stopService)
    stdio.StandardIO(_Commands(rest, options["path"]))
    if not options.get("profile"):
        reactor.run()
        return
    profile = cProfile.Profile()
    profile.runcall(reactor.run)
    profile.dump_stats(options["profile"])


class _Commands(LineReceiver):
    """The bench's commands to the server process: ``stats``, ``produce``."""

    delimiter = b"\n"

    def __init__(self, rest: Any, path: str) -> None:
        self.rest = rest
        self.path = path

    def answer(self, value: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(json.dumps(value).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        from twisted.internet import defer

        command = json.loads(line)
        if command["cmd"] == "stats":
            self.answer({"clients": self.rest.live.clients, "last": self.rest.live.last})
        elif command["cmd"] == "produce":
            d = defer.ensureDeferred(Producer(self.rest, self.path).run(
                command["rate"], command["count"]))
            d.addCallbacks(self.answer, lambda f: self.answer({"error": str(f.value)}))
        else:
            self.answer({"error": f"unknown command {command['cmd']!r}"})


class Producer:
    """Calls ``setBuildStateString(buildid, "t=<time>")`` ``count`` times at ``rate`` per
    second (over a few builds in turn) and records the events that match ``path``."""

    def __init__(self, rest: Any, path: str) -> None:
        from buildbot_rest.www.live import key_filter

        self.rest = rest
        self.key_filter = key_filter(path)
        self.seqs: list[int] = []
        #: when each event reached the live events (time.time(), as ``seqs``)
        self.published: list[float] = []
        #: seconds from the update call to its event reaching the live events
        self.publish_delays: list[float] = []
        self.last_sent = 0.0
        self.sent = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        #: ticks of the LoopingCall that came late (the reactor was busy)
        self.late_ticks = 0

    def _seen(self, event: Any) -> None:
        now = time.time()
        self.seqs.append(event.seq)
        self.published.append(now)
        state = event.message.get("state_string") if isinstance(event.message, dict) else None
        if isinstance(state, str) and state.startswith("t="):
            self.publish_delays.append(now - float(state[2:]))

    async def run(self, rate: float, count: int) -> dict[str, Any]:
        from twisted.internet import defer, task

        items, _ = await self.rest.data.get("builds", {"order": ["-buildid"], "limit": ["50"]})
        running = [b["buildid"] for b in items if not b["complete"]]
        buildids = (running or [b["buildid"] for b in items])[:10]
        if not buildids:
            return {"error": "the database has no builds"}
        subscription = self.rest.live.subscribe(self._seen, self.key_filter)
        pending: list[defer.Deferred[None]] = []

        def failed(failure: Any) -> None:
            self.failed += 1
            self.errors[f"{type(failure.value).__name__}: {failure.value}"[:200]] += 1

        def tick(intervals: int) -> None:
            # (more than one interval: the reactor was busy; catch up at once)
            self.late_ticks += intervals - 1
            for _ in range(min(intervals, count - self.sent)):
                buildid = buildids[self.sent % len(buildids)]
                self.sent += 1
                self.last_sent = time.time()
                d = defer.ensureDeferred(self.rest.data.updates.setBuildStateString(
                    buildid, f"t={self.last_sent:.6f}"))
                d.addErrback(failed)
                pending.append(d)
            if self.sent >= count:
                loop.stop()

        loop = task.LoopingCall.withCount(tick)
        started = time.time()
        await loop.start(1.0 / rate, now=True)
        await defer.DeferredList(pending)
        # (the event of the last update is published before its call returns)
        subscription.stop()
        delays = sorted(self.publish_delays)
        return {"produced": self.sent, "failed": self.failed, "errors": dict(self.errors),
                "seqs": self.seqs, "published": self.published, "buildids": buildids,
                "started": started, "last_sent": self.last_sent,
                "late_ticks": self.late_ticks,
                "publish_delay_ms": summarize_ms(delays)}


class LiveServer(Server):
    """The server process of this bench, with its command pipe."""

    def __init__(self, options: dict[str, Any], log_path: Path) -> None:
        self.url = options["db"]
        self.port = options["port"]
        self.log_path = log_path
        self.how = "script"
        self.log = open(log_path, "wb")  # noqa: SIM115 - open as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.live", "--serve", json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            cwd=Path(__file__).resolve().parent.parent)

    def command(self, timeout: float = COMMAND_TIMEOUT, **command: Any) -> dict[str, Any]:
        stdin, stdout = cast(IO[bytes], self.proc.stdin), cast(IO[bytes], self.proc.stdout)
        stdin.write(json.dumps(command).encode() + b"\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the server did not answer {command['cmd']!r} within "
                               f"{timeout:.0f} s; see {self.log_path}")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited; see {self.log_path}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the server: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):  # (a server that died: a broken pipe)
                self.proc.stdin.close()
        super().stop()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- what every client records ------------------------------------------------------------

class Received:
    """One client's events: sequence numbers and when they arrived (time.time()), close
    code, whether the connection dropped."""

    __slots__ = ("close_code", "close_reason", "dropped", "error", "seqs", "times")

    def __init__(self) -> None:
        self.seqs = array("q")
        self.times = array("d")
        self.close_code: int | None = None
        self.close_reason = ""
        self.dropped = False
        self.error = ""


class Tally:
    """A client process's records: each client's :class:`Received`, and the delivery
    latencies of all its clients (µs, update call to receipt)."""

    def __init__(self) -> None:
        self.clients: list[Received] = []
        self.latencies = array("q")
        self.connect_errors: Counter[str] = Counter()
        self.other_events = 0
        self.malformed = 0
        self.pings = 0

    def status(self) -> dict[str, Any]:
        open_counts = [len(r.seqs) for r in self.clients
                       if r.close_code is None and not r.dropped]
        return {"received": sum(len(r.seqs) for r in self.clients),
                "open": len(open_counts), "least": min(open_counts, default=0)}

    def summary(self, expected: list[int], published: list[float]) -> dict[str, Any]:
        """Every client's events against ``expected`` (the server's list, each event
        published at the time of the same rank in ``published``), totalled; with the
        histograms of the delivery latencies (µs): ``latency_hist`` from the update call,
        ``fanout_hist`` from the event's publication."""
        want = array("q", expected)
        want_set = set(expected)
        when = dict(zip(expected, published, strict=True))
        fanout = array("q")
        for r in self.clients:
            fanout.extend([int((t - when[seq]) * 1e6) for seq, t in zip(r.seqs, r.times,
                                                                         strict=True)
                           if seq in when])
        hist = histogram(self.latencies)
        fanout_hist = histogram(fanout)
        p50, p99 = percentiles(hist, (0.5, 0.99))
        f50, f99 = percentiles(fanout_hist, (0.5, 0.99))
        out: dict[str, Any] = {
            "clients": len(self.clients) + sum(self.connect_errors.values()),
            "connected": len(self.clients), "connect_errors": dict(self.connect_errors),
            "complete": 0, "missing": 0, "duplicates": 0, "unexpected": 0,
            "out_of_order": 0, "clients_missing": 0, "delivered": 0,
            "closed": {}, "close_reasons": {}, "dropped": 0,
            "other_events": self.other_events, "malformed": self.malformed,
            "pings": self.pings, "samples": len(self.latencies),
            "latency_max_us": max(self.latencies, default=0),
            "latency_sum_us": sum(self.latencies),
            "latency_p50_ms": p50, "latency_p99_ms": p99,
            "fanout_p50_ms": f50, "fanout_p99_ms": f99,
            "fanout_max_us": max(fanout, default=0), "fanout_sum_us": sum(fanout),
            "latency_hist": hist, "fanout_hist": fanout_hist}
        closed: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for r in self.clients:
            out["delivered"] += len(r.seqs)
            if r.close_code is not None:
                closed[str(r.close_code)] += 1
                reasons[f"{r.close_code} {r.close_reason}"[:200]] += 1
            if r.dropped:
                out["dropped"] += 1
                reasons[f"dropped: {r.error or 'end of stream without a close frame'}"] += 1
            if r.seqs == want:
                out["complete"] += 1
                continue
            got = set(r.seqs)
            missing = len(want_set - got)
            out["missing"] += missing
            out["clients_missing"] += missing > 0
            out["duplicates"] += len(r.seqs) - len(got)
            out["unexpected"] += len(got - want_set)
            out["out_of_order"] += any(a >= b for a, b in zip(r.seqs, r.seqs[1:], strict=False))
        out["closed"], out["close_reasons"] = dict(closed), dict(reasons)
        return out


def histogram(latencies: Iterable[int]) -> dict[int, int]:
    """Latencies (µs) counted by value rounded down to 3 significant digits."""
    def bucket(v: int) -> int:
        q = 10 ** max(0, len(str(abs(v))) - 3)
        return v // q * q
    return dict(Counter(map(bucket, latencies)))


def percentiles(hist: dict[int, int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank percentiles of a merged histogram, in ms."""
    total = sum(hist.values())
    keys = sorted(hist)
    out: list[float | None] = []
    for q in qs:
        if not total:
            out.append(None)
            continue
        rank, seen = max(1, -(-int(q * total * 1000) // 1000)), 0
        for k in keys:
            seen += hist[k]
            if seen >= rank:
                out.append(k / 1000)
                break
    return out


def summarize_ms(ordered: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of sorted seconds, in ms."""
    if not ordered:
        return {"p50": None, "p99": None, "max": None}
    def at(q: float) -> float:
        return ordered[max(0, -(-int(q * len(ordered) * 1000) // 1000) - 1)] * 1000
    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1] * 1000}


# -- the lean clients ---------------------------------------------------------------------

def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 5.3) of a payload shorter than 64 KiB."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                     bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    keys = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
    return head + mask + body


def upgrade(sock: socket.socket, port: int) -> bytes:
    """The HTTP Upgrade of ``/ws`` on a blocking socket; the bytes read past it."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection during the upgrade")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines[0].split(b" ")[1:2] != [b"101"]:
        raise ConnectionError(f"upgrade refused: {lines[0].decode('latin-1')[:100]}")
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in lines[1:])}
    if headers.get(b"sec-websocket-accept") != accept:
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    return rest


class LeanClient:
    """One subscriber on a raw socket: frames what arrives and records its events."""

    __slots__ = ("buf", "received", "replies", "sock")

    def __init__(self, sock: socket.socket, received: Received, buf: bytes) -> None:
        self.sock = sock
        self.received = received
        self.buf = buf
        self.replies: list[Any] = []

    def feed(self, data: bytes, now: float, tally: Tally) -> bool:
        """Take bytes read at ``now``; False once the connection is to be closed."""
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        events = 0
        alive = True
        while pos + 2 <= n:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if pos + 4 > n:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if pos + 10 > n:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                if buf.startswith(EVENT_START, pos + head):
                    events += 1
                else:
                    self.replies.append(json.loads(buf[pos + head:end]))
            elif opcode == 9:
                tally.pings += 1
                # (a full send buffer can only be the server not reading: let it be)
                with contextlib.suppress(OSError):
                    self.sock.sendall(client_frame(buf[pos + head:end], 10))
            elif opcode == 8:
                payload = buf[pos + head:end]
                self.received.close_code = (int.from_bytes(payload[:2], "big")
                                            if len(payload) >= 2 else 1005)
                self.received.close_reason = payload[2:].decode("utf-8", "replace")
                alive = False
                pos = end
                break
            elif opcode != 10:
                tally.malformed += 1
            pos = end
        self.buf = buf[pos:] if alive else b""
        if events:
            found = EVENT.findall(buf, 0, pos)
            tally.other_events += events - len(found)
            self.received.seqs.extend([int(s) for _, s in found])
            self.received.times.extend([now] * len(found))
            tally.latencies.extend([int((now - float(t)) * 1e6) for t, _ in found])
        return alive

    def close(self, code: int = 1000) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(client_frame(code.to_bytes(2, "big"), 8))
        self.sock.close()


def open_lean(port: int, path: str, tally: Tally) -> LeanClient:
    """Connect, upgrade and subscribe (blocking, ``CONNECT_TIMEOUT``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = LeanClient(sock, Received(), b"")
        data = upgrade(sock, port)
        sock.sendall(client_frame(json.dumps(
            {"cmd": "startConsuming", "path": path, "_id": 1}).encode()))
        while True:
            if not client.feed(data, time.time(), tally):
                raise ConnectionError(f"closed: {client.received.close_code} "
                                      f"{client.received.close_reason}")
            if client.replies:
                break
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
        reply = client.replies[0]
        if reply != {"msg": "OK", "code": 200, "_id": 1}:
            raise ConnectionError(f"startConsuming answered {json.dumps(reply)[:200]}")
        sock.setblocking(False)
        return client
    except BaseException:
        sock.close()
        raise


def lean_worker(pipe: Pipe, port: int, path: str, count: int) -> None:
    """A client process: ``count`` lean clients in one epoll loop, driven by ``pipe``."""
    more_files()
    tally = Tally()
    clients: dict[int, LeanClient] = {}
    for _ in range(count):
        try:
            client = open_lean(port, path, tally)
        except (OSError, ValueError) as e:
            tally.connect_errors[f"{type(e).__name__}: {e}"[:200]] += 1
            continue
        clients[client.sock.fileno()] = client
        tally.clients.append(client.received)
    pipe.send(("ready", {"connected": len(clients),
                         "connect_errors": dict(tally.connect_errors)}))
    poller = select.epoll()
    poller.register(pipe.fileno(), select.EPOLLIN)
    for fd in clients:
        poller.register(fd, select.EPOLLIN)
    while True:
        for fd, _ in poller.poll(1.0):
            if fd == pipe.fileno():
                command, arg = pipe.recv()
                if command == "status":
                    pipe.send(("status", tally.status()))
                    continue
                if command == "finish":
                    pipe.send(("summary", tally.summary(*arg)))
                for client in clients.values():
                    client.close()
                return
            client = clients[fd]
            try:
                data = client.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError as e:
                data, client.received.error = b"", str(e)
            if data and client.feed(data, time.time(), tally):
                continue
            if not data and client.received.close_code is None:
                client.received.dropped = True
            poller.unregister(fd)
            del clients[fd]
            client.close()


# -- the autobahn clients -----------------------------------------------------------------

def autobahn_worker(pipe: Pipe, port: int, path: str, count: int) -> None:
    """A client process: ``count`` autobahn clients that parse every frame as JSON and
    check the shape of each event (``k`` a key the path matches, ``m`` an object,
    ``s`` an integer)."""
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        connectWS,
    )
    from twisted.internet import reactor, task

    from buildbot_rest.mq.base import matches
    from buildbot_rest.www.live import key_filter

    wanted = key_filter(path)
    tally = Tally()
    waiting = [count]

    def settled() -> None:
        waiting[0] -= 1
        if waiting[0] == 0:
            pipe.send(("ready", {"connected": len(tally.clients),
                                 "connect_errors": dict(tally.connect_errors)}))

    class Subscriber(WebSocketClientProtocol):
        received: Received | None = None

        def onOpen(self) -> None:
            self.sendMessage(json.dumps({"cmd": "startConsuming", "path": path,
                                         "_id": 1}).encode())

        def onMessage(self, payload: bytes, binary: bool) -> None:
            now = time.time()
            try:
                frame = json.loads(payload)
            except ValueError:
                tally.malformed += 1
                return
            if self.received is None:
                if frame == {"msg": "OK", "code": 200, "_id": 1}:
                    self.received = Received()
                    tally.clients.append(self.received)
                else:
                    tally.connect_errors[f"startConsuming answered {payload[:200]!r}"] += 1
                    self.sendClose(1000)
                settled()
                return
            k, m, s = frame.get("k"), frame.get("m"), frame.get("s")
            if (set(frame) != {"k", "m", "s"} or not isinstance(k, str)
                    or not matches(wanted, tuple(k.split("/")))
                    or not isinstance(m, dict) or type(s) is not int):
                tally.malformed += 1
                return
            self.received.seqs.append(s)
            self.received.times.append(now)
            state = m.get("state_string")
            if isinstance(state, str) and state.startswith("t="):
                tally.latencies.append(int((now - float(state[2:])) * 1e6))
            else:
                tally.other_events += 1

        def onPing(self, payload: bytes) -> None:
            tally.pings += 1
            super().onPing(payload)

        def onClose(self, clean: bool, code: int | None, reason: str | None) -> None:
            if self.received is None:
                tally.connect_errors[f"closed before subscribing: {code} {reason}"] += 1
                settled()
                return
            if self.received.close_code is None and not finishing:
                if code in (None, 1006):
                    self.received.dropped = True
                else:
                    self.received.close_code = code
                    self.received.close_reason = reason or ""

    protocols: list[Subscriber] = []
    finishing = False

    class Factory(WebSocketClientFactory):
        def buildProtocol(self, addr: Any) -> Subscriber:
            protocol = cast(Subscriber, super().buildProtocol(addr))
            protocols.append(protocol)
            return protocol

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            tally.connect_errors[f"connection failed: {reason.value}"[:200]] += 1
            settled()

    def poll() -> None:
        nonlocal finishing
        if not pipe.poll():
            return
        command, arg = pipe.recv()
        if command == "status":
            pipe.send(("status", tally.status()))
            return
        finishing = True
        if command == "finish":
            pipe.send(("summary", tally.summary(*arg)))
        for protocol in protocols:
            protocol.sendClose(1000)
        reactor.callLater(0.5, reactor.stop)

    for _ in range(count):
        factory = Factory(f"ws://127.0.0.1:{port}/ws")
        factory.protocol = Subscriber
        connectWS(factory, timeout=CONNECT_TIMEOUT)
    if not count:
        settled()
    task.LoopingCall(poll).start(0.05)
    reactor.run()


# -- the processes, from outside ----------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class QueueSampler:
    """Samples ``/proc/net/tcp`` in a thread: the bytes waiting unread in the clients'
    sockets (the load generator's lag) and in the server's send queues."""

    def __init__(self, port: int, interval: float = 0.5) -> None:
        self.port = f"{port:04X}"
        self.interval = interval
        self.client_backlog = 0  #: largest total over the clients' sockets
        self.client_socket = 0  #: largest of one client's socket
        self.server_queue = 0  #: largest total over the server's sockets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        backlog = largest = queued = 0
        try:
            with open("/proc/net/tcp") as table:
                next(table)
                for line in table:
                    fields = line.split()
                    tx, _, rx = fields[4].partition(":")
                    if fields[2].endswith(":" + self.port):
                        backlog += (size := int(rx, 16))
                        largest = max(largest, size)
                    elif fields[1].endswith(":" + self.port) and fields[3] == "01":
                        queued += int(tx, 16)
        except OSError:
            return
        self.client_backlog = max(self.client_backlog, backlog)
        self.client_socket = max(self.client_socket, largest)
        self.server_queue = max(self.server_queue, queued)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Workers:
    """The client processes and their pipes."""

    def __init__(self, port: int, path: str, lean: list[int], autobahn: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs: list[Any] = []
        #: what each process runs: "lean x500", "autobahn x5"
        self.labels: list[str] = []
        plan = [("lean", n) for n in lean if n] + ([("autobahn", autobahn)] if autobahn
                                                   else [])
        for kind, n in plan:
            ours, theirs = context.Pipe()
            target = lean_worker if kind == "lean" else autobahn_worker
            proc = context.Process(target=target, args=(theirs, port, path, n), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)
            self.labels.append(f"{kind} x{n}")

    def receive(self, what: str, timeout: float) -> list[dict[str, Any]]:
        answers = []
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if not pipe.poll(timeout):
                raise TimeoutError(f"client process {proc.pid} did not send {what!r} within "
                                   f"{timeout:.0f} s")
            kind, value = pipe.recv()
            if kind != what:
                raise RuntimeError(f"client process {proc.pid} sent {kind!r}, not {what!r}")
            answers.append(value)
        return answers

    def ask(self, command: str, arg: Any = None, *, answer: str,
            timeout: float = COMMAND_TIMEOUT) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send((command, arg))
        return self.receive(answer, timeout)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", None))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join()


# -- measuring ----------------------------------------------------------------------------

def mb(server: Server) -> float:
    return server.memory().get("VmRSS", 0) / (1 << 20)


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db = args.db
    scratch = None
    if db is None:
        # (in memory where there is a tmpfs: the bench is about the fan-out, not fsync)
        shm = Path("/dev/shm")
        scratch = (shm if shm.is_dir() else workdir) / f"bench-live-{os.getpid()}.sqlite"
        scratch.unlink(missing_ok=True)
        db = f"sqlite:///{scratch}"
    count = round(args.rate * args.duration)
    lean_total = args.clients - args.autobahn_clients
    share, extra = divmod(lean_total, args.client_procs)
    lean = [share + (i < extra) for i in range(args.client_procs)]
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "clients": args.clients, "lean_clients": lean, "autobahn_clients": args.autobahn_clients,
        "path": args.path, "rate": args.rate, "duration": args.duration, "planned": count,
        "database": db, "ping_interval": args.ping_interval, "live_buffer": args.live_buffer,
        "load_average_before": os.getloadavg()[0]}
    options = {"db": db, "port": free_port(), "path": args.path,
               "ping_interval": args.ping_interval, "live_buffer": args.live_buffer,
               "profile": str(Path(args.profile).resolve()) if args.profile else None}
    server = LiveServer(options, workdir / "live-server.log")
    workers: Workers | None = None
    try:
        asyncio.run(server.wait_ready())
        report["server_pid"] = server.pid
        memory: dict[str, float] = {"idle": mb(server)}
        say(f"server pid {server.pid} on port {server.port}, {db}; connecting "
            f"{args.clients} clients")
        started = time.monotonic()
        workers = Workers(server.port, args.path, lean, args.autobahn_clients)
        ready = workers.receive("ready", CONNECT_TIMEOUT * max(1, args.clients // 50))
        report["connect_seconds"] = time.monotonic() - started
        report["connected"] = sum(r["connected"] for r in ready)
        report["server_clients"] = server.command(cmd="stats")["clients"]
        memory["subscribed"] = mb(server)
        say(f"{report['connected']} subscribed in {report['connect_seconds']:.1f} s "
            f"(the server counts {report['server_clients']} live connections); "
            f"{count} events at {args.rate:g}/s")
        procs = [server.pid] + [p.pid for p in workers.procs]
        cpu_before = [cpu_seconds(pid) for pid in procs]
        bench_before = sum(os.times()[:2])
        machine_before = machine_ticks()
        wall = time.monotonic()
        with PeakSampler(server) as peak, QueueSampler(server.port) as queues:
            # (it answers once every update call has returned: a server that cannot
            # keep up takes longer, and is waited for)
            produced = server.command(cmd="produce", rate=args.rate, count=count,
                                      timeout=args.duration * 10 + PRODUCE_MARGIN)
            produced_at = time.monotonic()
            expected = len(produced["seqs"])
            drained, last_progress, total = False, time.monotonic(), -1
            while time.monotonic() - last_progress < args.drain_timeout:
                status = workers.ask("status", answer="status")
                if all(s["least"] >= expected or not s["open"] for s in status):
                    drained = True
                    break
                if sum(s["received"] for s in status) != total:
                    total, last_progress = sum(s["received"] for s in status), time.monotonic()
                time.sleep(0.1)
            drain_seconds = time.monotonic() - produced_at
        say(f"{produced['produced']} events produced; "
            f"{'all delivered' if drained else 'NOT all delivered'} "
            f"{drain_seconds:.1f} s later")
        wall = time.monotonic() - wall
        cpu = [cpu_seconds(pid) - before for pid, before in zip(procs, cpu_before, strict=True)]
        bench_cpu = sum(os.times()[:2]) - bench_before
        machine_after = machine_ticks()
        memory["peak"] = peak.peak / (1 << 20)
        memory["after"] = mb(server)
        labels = workers.labels
        summaries = workers.ask("finish", (produced["seqs"], produced["published"]),
                                answer="summary",
                                timeout=COMMAND_TIMEOUT + args.clients * count / 2e5)
        say("clients checked")
        workers.stop()
        workers = None
        time.sleep(1.0)
        memory["clients_gone"] = mb(server)
        report["server_clients_after"] = server.command(cmd="stats")["clients"]
        busy = machine_after[0] - machine_before[0]
        tick = os.sysconf("SC_CLK_TCK")
        report.update(
            memory_mb=memory,
            events=_events(produced, args.rate),
            delivery=_delivery(summaries, args.clients, expected, drained, drain_seconds,
                               produced["seqs"]),
            latency_ms=_latency(summaries, "latency"),
            fanout_ms=_latency(summaries, "fanout"),
            cpu={"seconds": wall, "server_percent": 100 * cpu[0] / wall,
                 "clients_percent": [100 * c / wall for c in cpu[1:]],
                 "client_kinds": labels, "bench_percent": 100 * bench_cpu / wall,
                 "machine_percent": 100 * busy / tick / wall,
                 # (at least 0: the counters' granularity can make it slightly negative)
                 "others_percent": max(0.0, 100 * (busy / tick - sum(cpu) - bench_cpu)
                                       / wall),
                 "capacity_percent": 100 * (os.cpu_count() or 1)},
            processes=[{k: v for k, v in s.items() if not k.endswith("_hist")}
                       for s in summaries],
            load_average_after=os.getloadavg()[0])
        report["generator"] = _generator(report["cpu"], queues, summaries, labels)
        report["verdict"] = _verdict(report)
    finally:
        try:
            if workers is not None:
                workers.stop()
            say("stopping the server")
            server.stop()
        finally:
            if scratch is not None:
                for path in (scratch, *scratch.parent.glob(scratch.name + "-*")):
                    path.unlink(missing_ok=True)
    return report


def _events(produced: dict[str, Any], rate: float) -> dict[str, Any]:
    span = produced["last_sent"] - produced["started"]
    return {"produced": produced["produced"], "failed": produced["failed"],
            "errors": produced["errors"], "matching": len(produced["seqs"]),
            "buildids": produced["buildids"], "seconds": span,
            "rate": (produced["produced"] - 1) / span if span > 0 else None,
            "late_ticks": produced["late_ticks"],
            "publish_delay_ms": produced["publish_delay_ms"]}


def _delivery(summaries: list[dict[str, Any]], clients: int, expected: int, drained: bool,
              drain_seconds: float, seqs: list[int]) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(s[key] for s in summaries)

    closed: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for s in summaries:
        closed.update(s["closed"])
        reasons.update(s["close_reasons"])
        errors.update(s["connect_errors"])
    out = {"clients": clients, "connected": total("connected"),
           "connect_errors": dict(errors), "events_each": expected,
           "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
           "expected": clients * expected, "delivered": total("delivered"),
           "complete_clients": total("complete"), "missing": total("missing"),
           "clients_missing": total("clients_missing"), "duplicates": total("duplicates"),
           "unexpected": total("unexpected"), "out_of_order_clients": total("out_of_order"),
           "closed": dict(closed), "close_reasons": dict(reasons), "dropped": total("dropped"),
           "malformed": total("malformed"), "other_events": total("other_events"),
           "pings": total("pings"), "drained": drained, "drain_seconds": drain_seconds}
    out["no_event_lost"] = bool(
        expected and out["connected"] == clients and out["complete_clients"] == clients
        and not closed and not out["dropped"] and not out["malformed"])
    return out


def _latency(summaries: list[dict[str, Any]], form: str) -> dict[str, Any]:
    """The merged percentiles (ms) of the processes' ``<form>_hist``."""
    hist: Counter[int] = Counter()
    for s in summaries:
        hist.update(s[f"{form}_hist"])
    samples = sum(hist.values())
    p50, p90, p99 = percentiles(dict(hist), (0.5, 0.9, 0.99))
    return {"samples": samples, "p50": p50, "p90": p90, "p99": p99,
            "max": max((s[f"{form}_max_us"] for s in summaries), default=0) / 1000,
            "mean": sum(s[f"{form}_sum_us"] for s in summaries) / samples / 1000
            if samples else None}


def _generator(cpu: dict[str, Any], queues: QueueSampler,
               summaries: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Whether the load generator kept up: its processes' CPU, and the fan-out latency
    of the lean clients against that of the autobahn ones (a process with a handful of
    clients, which reads at once); without autobahn clients, the bytes left unread in
    the clients' sockets."""
    busiest = max(cpu["clients_percent"], default=0.0)
    saturated = busiest >= 100 * SATURATED_CPU
    lean = [s["fanout_p50_ms"] for s, label in zip(summaries, labels, strict=True)
            if label.startswith("lean") and s["fanout_p50_ms"] is not None]
    light = [s["fanout_p50_ms"] for s, label in zip(summaries, labels, strict=True)
             if label.startswith("autobahn") and s["fanout_p50_ms"] is not None]
    notes = []
    if saturated:
        notes.append(f"a client process used {busiest:.0f}% of a core: the load generator "
                     f"was saturated")
    if lean and light:
        lagging = max(lean) > 2 * light[0] + LAGGING_MS
        notes.append(f"fan-out p50 {' / '.join(f'{v:.1f}' for v in lean)} ms at the lean "
                     f"clients, {light[0]:.1f} ms at the autobahn ones"
                     + (": the lean clients lagged" if lagging else ""))
    else:
        lagging = queues.client_backlog >= LAGGING_BACKLOG
        if lagging:
            notes.append(f"up to {queues.client_backlog:,} bytes waited unread in the "
                         f"clients' sockets: the load generator fell behind")
    if cpu["machine_percent"] >= 0.95 * cpu["capacity_percent"]:
        notes.append("the CPUs were saturated: server and clients waited for them")
    if cpu["others_percent"] >= BUSY_OTHERS:
        notes.append(f"other processes used {cpu['others_percent']:.0f}% of a core meanwhile")
    if not (saturated or lagging):
        notes.insert(0, "kept up")
    return {"client_backlog_bytes": queues.client_backlog,
            "client_socket_backlog_bytes": queues.client_socket,
            "server_send_queue_bytes": queues.server_queue,
            "saturated": saturated, "lagging": lagging, "note": "; ".join(notes)}


def _verdict(report: dict[str, Any]) -> str:
    d = report["delivery"]
    if d["no_event_lost"]:
        return (f"no event lost: each of the {d['clients']} clients got each of the "
                f"{d['events_each']} events exactly once, in order")
    problems = []
    if not d["events_each"]:
        problems.append("no event was produced")
    if d["connected"] < d["clients"]:
        problems.append(f"{d['clients'] - d['connected']} clients could not subscribe")
    if d["missing"]:
        problems.append(f"{d['missing']:,} deliveries missing at {d['clients_missing']} "
                        f"clients")
    if d["closed"]:
        problems.append("closed by the server: " + ", ".join(
            f"{n} with code {c}" for c, n in sorted(d["closed"].items())))
    if d["dropped"]:
        problems.append(f"{d['dropped']} connections dropped without a close")
    for key, what in (("duplicates", "duplicated"), ("unexpected", "unexpected"),
                      ("out_of_order_clients", "clients out of order"),
                      ("malformed", "malformed frames")):
        if d[key]:
            problems.append(f"{d[key]:,} {what}")
    if not d["drained"]:
        problems.append(f"not all delivered {d['drain_seconds']:.1f} s after the last event")
    if report["generator"]["saturated"] or report["generator"]["lagging"]:
        problems.append("the load generator could not keep up (see generator)")
    return "EVENTS LOST: " + "; ".join(problems)


# -- the report ---------------------------------------------------------------------------

def _f(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _or_default(value: float | None, unit: str) -> str:
    return "the default" if value is None else f"{value:g}{unit}"


def _latency_line(name: str, lat: dict[str, Any], what: str) -> str:
    return (f"{name:10} p50 {_f(lat['p50'], ' ms', 2)}, p90 {_f(lat['p90'], ' ms', 2)}, "
            f"p99 {_f(lat['p99'], ' ms', 2)}, max {_f(lat['max'], ' ms', 2)}, mean "
            f"{_f(lat['mean'], ' ms', 2)} ({what}, {lat['samples']:,} samples)")


def format_report(r: dict[str, Any]) -> str:
    e, d, mem, cpu, g = r["events"], r["delivery"], r["memory_mb"], r["cpu"], r["generator"]
    pub = e["publish_delay_ms"]
    clients = ", ".join(f"{k} {_f(p, '%', 0)}" for k, p in
                        zip(cpu["client_kinds"], cpu["clients_percent"], strict=True))
    closed = ", ".join(f"{n} with code {c}" for c, n in sorted(d["closed"].items()))
    lines = [
        f"buildbot_rest live events benchmark, {r['date']}: Python {r['python']}, "
        f"{r['cpus']} CPUs shared by the server (and the event producer inside it) and "
        f"the clients",
        f"server: RestService in its own process (pid {r.get('server_pid')}), "
        f"{r['database']}, ping_interval {_or_default(r['ping_interval'], ' s')}, "
        f"live_buffer {_or_default(r['live_buffer'], ' bytes')}",
        f"{r['clients']} subscribers on {r['path']} ({' + '.join(map(str, r['lean_clients']))}"
        f" lean in {len([n for n in r['lean_clients'] if n])} processes, "
        f"{r['autobahn_clients']} autobahn), {r['rate']:g} events/s for {r['duration']:g} s; "
        f"load average (1 min) {_f(r['load_average_before'], '', 2)} before, "
        f"{_f(r.get('load_average_after'), '', 2)} after",
        "",
        f"{'verdict':10} {r['verdict']}",
        f"{'events':10} {e['produced']:,} produced ({r['planned']:,} planned, {e['failed']} "
        f"failed) at {_f(e['rate'])}/s over {_f(e['seconds'])} s, {e['late_ticks']} late "
        f"ticks; {e['matching']:,} on {r['path']}; publish delay (update call -> event) "
        f"p50 {_f(pub['p50'], ' ms', 2)}, p99 {_f(pub['p99'], ' ms', 2)}, "
        f"max {_f(pub['max'], ' ms', 2)}",
        f"{'delivery':10} {d['delivered']:,} of {d['expected']:,}; {d['complete_clients']} of "
        f"{d['clients']} clients complete; missing {d['missing']:,}, duplicates "
        f"{d['duplicates']:,}, unexpected {d['unexpected']:,}, out of order "
        f"{d['out_of_order_clients']}, malformed {d['malformed']}",
        f"{'':10} closed by the server: {closed or 'none'}; dropped: {d['dropped']}; "
        f"{'drained' if d['drained'] else 'NOT drained'} "
        f"{_f(d['drain_seconds'], ' s', 2)} after the last event; {d['pings']} pings "
        f"answered",
        _latency_line("latency", r["latency_ms"], "update call -> client's receipt"),
        _latency_line("fan-out", r["fanout_ms"], "event published -> client's receipt"),
        f"{'memory':10} RSS idle {_f(mem['idle'], ' MB')}, subscribed "
        f"{_f(mem['subscribed'], ' MB')}, peak {_f(mem['peak'], ' MB')}, after "
        f"{_f(mem['after'], ' MB')}, clients gone {_f(mem['clients_gone'], ' MB')}",
        f"{'cpu':10} % of a core over {_f(cpu['seconds'])} s: server "
        f"{_f(cpu['server_percent'], '%', 0)}; clients {clients}; the bench's parent "
        f"{_f(cpu['bench_percent'], '%', 0)}; other processes "
        f"{_f(cpu['others_percent'], '%', 0)}; the machine "
        f"{_f(cpu['machine_percent'], '%', 0)} of {cpu['capacity_percent']}%",
        f"{'generator':10} {g['note']}; unread in clients' sockets: max "
        f"{g['client_backlog_bytes']:,} bytes (one socket {g['client_socket_backlog_bytes']:,}"
        f"); server send queues: max {g['server_send_queue_bytes']:,} bytes",
    ]
    for reason, n in sorted(d["close_reasons"].items()):
        lines.append(f"{'':10} {n} x {reason}")
    for error, n in sorted(d["connect_errors"].items()):
        lines.append(f"{'':10} {n} could not subscribe: {error}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(json.loads(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000,
                        help="WebSocket subscribers (default 1000)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="events per second (default 100)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of events (default 60)")
    parser.add_argument("--path", default="builds/*/*",
                        help="the subscription path (default builds/*/*)")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="processes of lean clients (default 2)")
    parser.add_argument("--autobahn-clients", type=int, default=5,
                        help="clients (of --clients) using autobahn, in a process of "
                             "their own (default 5)")
    parser.add_argument("--ping-interval", type=float,
                        help="the server's ping_interval (default: the server's default)")
    parser.add_argument("--live-buffer", type=int,
                        help="the server's live_buffer in bytes (default: the server's)")
    parser.add_argument("--db", help="the database to write the state strings to, "
                                     "filled with the demo's data if empty (default: a "
                                     "new one in /dev/shm, else in --workdir, removed "
                                     "after)")
    parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT,
                        help="after the last event, stop waiting for deliveries after "
                             f"this many seconds without one (default {DRAIN_TIMEOUT:g})")
    parser.add_argument("--workdir", default="/tmp/bench-live",
                        help="the server's log (default /tmp/bench-live)")
    parser.add_argument("--profile", metavar="PATH",
                        help="profile the server process (cProfile) and write its stats "
                             "here when it stops (read them with python -m pstats)")
    parser.add_argument("--out", help="write the JSON report here, and the text beside it")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.client_procs < 1:
        parser.error("--clients, --rate, --duration and --client-procs must be positive")
    if not 0 <= args.autobahn_clients <= args.clients:
        parser.error("--autobahn-clients must be between 0 and --clients")
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = format_report(report)
    print(text, end="")
    if args.out:
        write_report(args.out, report, text)
    return 0 if report["delivery"]["no_event_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
