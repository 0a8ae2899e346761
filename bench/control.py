# -*- test-case-name: tests.test_bench_control -*-
"""Force and rebuild over JSON-RPC: ``python -m bench.control --db URL``.

Copies the benchmark database (a SQLite file, or a PostgreSQL database made from it as a
template), starts our server on the copy (``twistd -n buildbot-rest`` with a force
scheduler in its TOML configuration), and sends, over real connections,
``POST /api/v2/forceschedulers/<name>`` ``{"method": "force"}`` and
``POST /api/v2/builds/<id>`` ``{"method": "rebuild"}``: first one client calling again and
again, then 64 clients at once, each on its own keep-alive connection. Each line gives the
median and 99th percentile latency of the answered calls, the calls per second, the 503
answers (the database busy beyond the pool's retries) and the other failures.

After each line the new rows are checked against the answers: every buildset and build
request a 200 answer names must be in the database (else ``lost``), every new row must be
named by exactly one answer (else ``extra``), and the counts must match (one buildset per
call; a build request per builder of the force scheduler, one per rebuild).

Then, when upstream Buildbot 4.3.0's virtualenv is there (the one the tests make), the same
calls go to an upstream master on a second copy of the database, configured with the same
builders and a ``ForceScheduler`` of the same name, and the ours lines get ratios:
``ours / upstream`` for the median latency (below 1 is faster) and for the calls per second
(above 1 is more).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.run import Connection, HttpError, Server, write_report
from buildbot_rest.db import schema as s
from buildbot_rest.db.database import make_engine

SCHEDULER = "bench-force"
#: builders the force scheduler starts (a build request each); the first ones of the database
BUILDERS = 2
CALL_TIMEOUT = 60.0
#: seconds the new rows must stay the same after a line for the server to count as idle
QUIET = 2.0


# -- a JSON-RPC client on the runner's keep-alive connection ------------------------------

class RpcConnection(Connection):
    """One keep-alive connection that POSTs JSON-RPC calls."""

    @classmethod
    async def open(cls, port: int) -> RpcConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(port, reader, writer)

    async def call(self, path: str, method: str, params: dict[str, Any],
                   call_id: int) -> tuple[int, Any]:
        """(HTTP status, the parsed reply body)."""
        return await asyncio.wait_for(self._call(path, method, params, call_id), CALL_TIMEOUT)

    async def _call(self, path: str, method: str, params: dict[str, Any],
                    call_id: int) -> tuple[int, Any]:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": call_id,
                           "params": params}).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          "Content-Type: application/json\r\nAccept: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        parts: list[bytes] = []
        if "content-length" in headers:
            await self._read(int(headers["content-length"]), parts.append)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while n := int((await self.reader.readline()).split(b";")[0], 16):
                await self._read(n, parts.append)
                await self.reader.readexactly(2)
            while (await self.reader.readline()) not in (b"\r\n", b""):
                pass
        else:
            parts.append(await self.reader.read())
        if headers.get("connection", "").lower() == "close":
            self.close()
        try:
            return status, json.loads(b"".join(parts) or b"null")
        except ValueError:
            return status, b"".join(parts)[:200].decode("utf-8", "replace")


# -- the databases ------------------------------------------------------------------------

def copy_database(url: str, tag: str, workdir: Path) -> str:
    """A copy of the database at ``url`` (which nothing may be connected to); its URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        source = Path(parsed.database or "")
        target = workdir / f"{source.stem}-{tag}.sqlite"
        shutil.copyfile(source, target)
        return parsed.set(database=str(target)).render_as_string(hide_password=False)
    name = f"{parsed.database}_{tag}_{os.getpid()}"
    with admin(url) as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{parsed.database}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or "").unlink(missing_ok=True)
        return
    with admin(url) as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


@contextmanager
def admin(url: str) -> Iterator[sa.Connection]:
    """An autocommit connection to the server's ``postgres`` database."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT",
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@dataclass
class Plan:
    """What the calls name, found in the database."""

    builders: list[str]
    builderids: list[int]
    #: finished builds whose request and buildset exist, to rebuild in turn
    buildids: list[int]
    builds: int = 0

    @classmethod
    def find(cls, engine: sa.Engine) -> Plan:
        b, br, bs = s.builders, s.buildrequests, s.buildsets
        with engine.connect() as conn:
            rows = conn.execute(sa.select(b.c.id, b.c.name).order_by(b.c.id)
                                .limit(BUILDERS)).fetchall()
            builds = s.builds
            buildids = conn.execute(
                sa.select(builds.c.id)
                .join_from(builds, br, br.c.id == builds.c.buildrequestid)
                .join(bs, bs.c.id == br.c.buildsetid)
                .where(builds.c.complete_at.is_not(None))
                .order_by(builds.c.id.desc()).limit(64)).scalars().all()
            count = conn.execute(sa.select(sa.func.count()).select_from(builds)).scalar()
        if not rows or not buildids:
            raise RuntimeError("the database has no builders or no finished builds: "
                               "fill it with bench.generate")
        return cls([r.name for r in rows], [r.id for r in rows], list(buildids), count or 0)


def high_water(engine: sa.Engine) -> tuple[int, int]:
    """The largest buildset and build request ids."""
    with engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.max(s.buildsets.c.id))).scalar() or 0,
                conn.execute(sa.select(sa.func.max(s.buildrequests.c.id))).scalar() or 0)


def rows_since(engine: sa.Engine, mark: tuple[int, int]) -> tuple[list[int], list[int]]:
    with engine.connect() as conn:
        bsids = conn.execute(sa.select(s.buildsets.c.id)
                             .where(s.buildsets.c.id > mark[0])).scalars().all()
        brids = conn.execute(sa.select(s.buildrequests.c.id)
                             .where(s.buildrequests.c.id > mark[1])).scalars().all()
    return list(bsids), list(brids)


# -- the servers --------------------------------------------------------------------------

def our_config(path: Path, builders: list[str]) -> Path:
    """Our TOML configuration: one force scheduler on ``builders`` with upstream's default
    fields (a reason, a user name, and the branch, revision, repository and project of
    the one codebase ``""``)."""
    names = ", ".join(json.dumps(name) for name in builders)
    path.write_text(f'[[forceschedulers]]\nname = "{SCHEDULER}"\n'
                    f"builder_names = [{names}]\n")
    return path


UPSTREAM_CFG = """
# Added by bench/control.py: builders (whose worker never connects, so that requests stay
# unclaimed, as on our side) and the force scheduler.
from buildbot.plugins import schedulers as _schedulers, util as _util, worker as _worker
c['protocols'] = {{'pb': {{'port': 'tcp:{pb_port}:interface=127.0.0.1'}}}}
c['workers'] = [_worker.Worker('bench-worker', 'bench-password')]
c['builders'] = [_util.BuilderConfig(name=_name, workernames=['bench-worker'],
                                     factory=_util.BuildFactory())
                 for _name in {builders!r}]
c['schedulers'] = [_schedulers.ForceScheduler(name={scheduler!r}, builderNames={builders!r})]
"""


class Target:
    """A server under test: ``port`` once started."""

    name = ""
    port = 0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def restart(self) -> None:
        """Stop and start again: drops the calls still queued after a line."""
        self.stop()
        self.start()

    def describe(self) -> str:
        return self.name


class Ours(Target):
    name = "ours"

    def __init__(self, url: str, workdir: Path, builders: list[str]) -> None:
        config = our_config(workdir / "control.toml", builders)
        self.args = (url, "plugin", workdir / "ours.log", str(workdir / "ours.access.log"))
        self.extra = ("--config", str(config))
        self.server: Server | None = None

    def start(self) -> None:
        self.server = Server(*self.args, extra_args=self.extra)
        self.port = self.server.port
        asyncio.run(self.server.wait_ready())

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def describe(self) -> str:
        pid = self.server.pid if self.server is not None else "-"
        return f"ours (twistd buildbot-rest, pid {pid})"


def upstream_venv() -> Path | None:
    from tests.conftest import UPSTREAM_CACHE

    return UPSTREAM_CACHE if (UPSTREAM_CACHE / "bin" / "twistd").exists() else None


class Upstream(Target):
    name = "upstream"

    def __init__(self, venv: Path, url: str, workdir: Path, builders: list[str]) -> None:
        from tests.integration.upstream_master import UpstreamMaster, free_port

        self.venv = venv
        self.master = UpstreamMaster(venv, workdir / "upstream-master", url)
        self.port = self.master.port
        self.builders = builders
        self.pb_port = free_port()

    def _run(self, program: str, *args: str, cwd: Path) -> str:
        from tests.conftest import upstream_env

        proc = subprocess.run([str(self.venv / "bin" / program), *args], cwd=cwd,
                              capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL, env=upstream_env(), check=False)
        if proc.returncode:
            raise RuntimeError(f"upstream {program} exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout)[-2000:]}")
        return proc.stdout

    def start(self) -> None:
        from tests.integration.upstream_master import keep_masters_alive

        cfg = self.master.basedir / "master.cfg"
        if not cfg.exists():
            keep_masters_alive(self.master.db_url)
            self.master.create(self._run)
            cfg.write_text(cfg.read_text() + UPSTREAM_CFG.format(
                pb_port=self.pb_port, builders=self.builders, scheduler=SCHEDULER))
        self.master.start()

    def stop(self) -> None:
        self.master.stop()

    def describe(self) -> str:
        return f"upstream Buildbot 4.3.0 ({self.venv})"


# -- measuring ----------------------------------------------------------------------------

@dataclass
class Line:
    """One line of the report: one action, one server, a number of clients."""

    name: str
    server: str
    action: str
    clients: int
    calls: int = 0  #: calls sent
    not_sent: int = 0  #: calls not sent: the line's time was up
    ok: int = 0
    unavailable: int = 0  #: 503 answers
    failed: int = 0  #: any other failure (status, timeout, connection)
    error: str = ""  #: the first failure
    p50_ms: float | None = None
    p99_ms: float | None = None
    calls_per_s: float | None = None
    seconds: float = 0.0
    new_buildsets: int = 0
    new_buildrequests: int = 0
    expected_buildrequests: int = 0
    lost: int = 0  #: ids a 200 answer named that are not in the database
    extra: int = 0  #: new rows no 200 answer named
    repeated: int = 0  #: ids named by more than one answer
    consistent: bool = False
    note: str = ""
    p50_ratio: float | None = None  #: ours / upstream
    rate_ratio: float | None = None  #: ours / upstream
    errors_seen: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in ms."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


class Calls:
    """The calls of one line: what to POST, and what the answers said."""

    def __init__(self, action: str, plan: Plan, tag: str) -> None:
        self.action = action
        self.plan = plan
        self.tag = tag
        self.times: list[float] = []
        self.bsids: list[int] = []
        self.brids: list[int] = []
        self.errors: dict[str, int] = {}
        self.unavailable = 0
        self.n = 0

    def request(self, i: int) -> tuple[str, str, dict[str, Any]]:
        if self.action == "force":
            return (f"/api/v2/forceschedulers/{SCHEDULER}", "force",
                    {"reason": f"bench {self.tag}", "branch": "main",
                     "revision": f"bench-{self.tag}"})
        buildid = self.plan.buildids[i % len(self.plan.buildids)]
        return f"/api/v2/builds/{buildid}", "rebuild", {}

    def answered(self, status: int, reply: Any, seconds: float) -> None:
        if status == 200 and isinstance(reply, dict) and "result" in reply:
            self.times.append(seconds)
            bsid, brids = reply["result"][:2]
            self.bsids.append(int(bsid))
            self.brids.extend(int(b) for b in brids.values())
            return
        if status == 503:
            self.unavailable += 1
            return
        detail = reply.get("error", {}).get("message") if isinstance(reply, dict) else reply
        self.failed(f"HTTP {status}: {str(detail)[:160]}")

    def failed(self, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1


async def call_once(port: int, calls: Calls, i: int) -> None:
    """One call on a connection of its own (the warm-up)."""
    conn = await RpcConnection.open(port)
    try:
        path, method, params = calls.request(i)
        status, reply = await conn.call(path, method, params, i)
        if status != 200:
            raise HttpError(f"{method} {path}: HTTP {status}: {str(reply)[:300]}")
    finally:
        conn.close()


async def drive(port: int, calls: Calls, clients: int, per_client: int,
                seconds: float) -> float:
    """``clients`` clients, each making ``per_client`` calls one after the other on its
    own connection, none started after ``seconds``; the wall time."""
    counter = iter(range(clients * per_client))
    deadline = time.monotonic() + seconds

    async def client() -> None:
        conn: RpcConnection | None = None
        for _ in range(per_client):
            if time.monotonic() > deadline:
                break
            i = next(counter)
            calls.n += 1
            path, method, params = calls.request(i)
            try:
                if conn is None:
                    conn = await RpcConnection.open(port)
                t0 = time.perf_counter()
                status, reply = await conn.call(path, method, params, i)
                calls.answered(status, reply, time.perf_counter() - t0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError,
                    ValueError) as e:
                calls.failed(type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def line_name(action: str, clients: int) -> str:
    return f"{action} {clients} client{'s' if clients > 1 else ''}"


def settle(engine: sa.Engine, mark: tuple[int, int], seconds: float) -> bool:
    """Wait until no new rows appear for :data:`QUIET` seconds; False after ``seconds``."""
    deadline = time.monotonic() + seconds
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(len(ids) for ids in rows_since(engine, mark))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= QUIET:
            return True
        time.sleep(0.25)
    return False


def complete_requests(engine: sa.Engine, mark: tuple[int, int]) -> None:
    """Finish the line's build requests and buildsets (SUCCESS), as the masters running
    them would: a master's distributor re-reads every pending request of its builders
    each time one is added, so requests left pending would slow the lines after."""
    now = int(time.time())
    br, bs = s.buildrequests, s.buildsets
    with engine.begin() as conn:
        conn.execute(br.update().where(br.c.id > mark[1])
                     .values(complete=1, results=0, complete_at=now))
        conn.execute(bs.update().where(bs.c.id > mark[0])
                     .values(complete=1, results=0, complete_at=now))


def measure(target: Target, engine: sa.Engine, plan: Plan, action: str, clients: int,
            per_client: int, tag: str, args: argparse.Namespace) -> Line:
    line = Line(line_name(action, clients), target.name, action, clients)
    calls = Calls(action, plan, tag)
    mark = high_water(engine)
    line.seconds = asyncio.run(drive(target.port, calls, clients, per_client,
                                     args.line_seconds))
    line.calls, line.not_sent = calls.n, clients * per_client - calls.n
    if not settle(engine, mark, args.settle_seconds):
        # calls that timed out are still queued: restarted, so the next line starts idle
        line.note = (f"still writing {args.settle_seconds:.0f}s after the line: restarted; "
                     "rows counted after the restart")
        target.restart()
    bsids, brids = rows_since(engine, mark)
    line.ok = len(calls.times)
    line.unavailable = calls.unavailable
    line.failed = sum(calls.errors.values())
    line.errors_seen = calls.errors
    if calls.errors:
        line.error = max(calls.errors, key=lambda k: calls.errors[k])
    if calls.times:
        line.p50_ms = statistics.median(calls.times) * 1000
        line.p99_ms = percentile(calls.times, 0.99)
        line.calls_per_s = line.ok / line.seconds
    line.new_buildsets, line.new_buildrequests = len(bsids), len(brids)
    line.expected_buildrequests = line.ok * (len(plan.builders) if action == "force" else 1)
    answered_bs, answered_br = set(calls.bsids), set(calls.brids)
    line.repeated = (len(calls.bsids) - len(answered_bs)) + (len(calls.brids) - len(answered_br))
    line.lost = len(answered_bs - set(bsids)) + len(answered_br - set(brids))
    line.extra = len(set(bsids) - answered_bs) + len(set(brids) - answered_br)
    line.consistent = (not line.lost and not line.extra and not line.repeated
                       and line.new_buildsets == line.ok
                       and line.new_buildrequests == line.expected_buildrequests)
    if args.complete:
        complete_requests(engine, mark)
    return line


def bench_target(target: Target, url: str, plan: Plan, args: argparse.Namespace,
                 say: Callable[[str], None]) -> list[Line]:
    engine = make_engine(url, pool_size=1)
    lines = []
    try:
        target.start()
        say(f"-- {target.describe()}, port {target.port}")
        say(HEADER)
        for action in ("force", "rebuild"):
            if action != "force":
                # a fresh process for each action: upstream stays busy long after its
                # force calls under 64 clients, which would be charged to the rebuilds
                target.restart()
            per_client = args.per_client
            if isinstance(target, Upstream) and args.upstream_per_client:
                per_client = args.upstream_per_client
            shapes = ((1, args.calls), (args.clients, per_client))
            try:
                # the first call finds or creates the scheduler's and builders' rows
                mark = high_water(engine)
                asyncio.run(call_once(target.port, Calls(action, plan, "warm-up"), 0))
                if args.complete:
                    complete_requests(engine, mark)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError) as e:
                # an action that does not work yet: its lines say why, the run goes on
                for clients, per_client in shapes:
                    line = Line(line_name(action, clients), target.name, action, clients,
                                calls=clients * per_client, failed=clients * per_client,
                                error=f"warm-up call failed: {type(e).__name__}: {e}"[:300])
                    lines.append(line)
                    say(format_line(asdict(line)))
                continue
            for clients, per_client in shapes:
                line = measure(target, engine, plan, action, clients, per_client,
                               f"{target.name}-{clients}", args)
                lines.append(line)
                say(format_line(asdict(line)))
    finally:
        target.stop()
        engine.dispose()
    return lines


def add_ratios(ours: list[Line], upstream: list[Line]) -> None:
    theirs = {line.name: line for line in upstream}
    for line in ours:
        other = theirs.get(line.name)
        if other is None:
            continue
        if line.p50_ms and other.p50_ms:
            line.p50_ratio = line.p50_ms / other.p50_ms
        if line.calls_per_s and other.calls_per_s:
            line.rate_ratio = line.calls_per_s / other.calls_per_s
        if other.failed or other.not_sent:
            note = (f"upstream answered {other.ok} of {other.calls} calls "
                    f"({other.not_sent} not sent): its p50 is of the answered ones")
            line.note = f"{line.note}; {note}" if line.note else note


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dialect = make_url(args.db).get_backend_name()
    report: dict[str, Any] = {
        "database": make_url(args.db).render_as_string(hide_password=True),
        "dialect": dialect, "scheduler": SCHEDULER, "calls_1_client": args.calls,
        "clients": args.clients, "calls_per_client": args.per_client,
        "upstream_calls_per_client": args.upstream_per_client or args.per_client,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "results": [], "upstream": "", "load_average_before": os.getloadavg()[0],
    }
    venv = None if args.no_upstream else upstream_venv()
    if args.no_upstream:
        report["upstream"] = "not measured (--no-upstream)"
    elif venv is None:
        report["upstream"] = "not measured: no upstream 4.3.0 virtualenv (the tests make it)"
    copies: list[str] = []
    try:
        ours_url = copy_database(args.db, "ours", workdir)
        copies.append(ours_url)
        engine = make_engine(ours_url, pool_size=1)
        try:
            plan = Plan.find(engine)
        finally:
            engine.dispose()
        report["builds"] = plan.builds
        report["builders"] = plan.builders
        say(f"{report['database']} ({plan.builds:,} builds): force scheduler {SCHEDULER!r} on "
            f"{', '.join(plan.builders)}; rebuilds of {len(plan.buildids)} builds in turn")
        ours = bench_target(Ours(ours_url, workdir, plan.builders), ours_url, plan, args, say)
        upstream: list[Line] = []
        if venv is not None:
            up_url = copy_database(args.db, "upstream", workdir)
            copies.append(up_url)
            try:
                upstream = bench_target(Upstream(venv, up_url, workdir, plan.builders),
                                        up_url, plan, args, say)
            except (RuntimeError, OSError, HttpError, TimeoutError) as e:
                report["upstream"] = f"failed: {type(e).__name__}: {e}"[:500]
                say(f"upstream: {report['upstream']}")
            else:
                report["upstream"] = "measured"
                add_ratios(ours, upstream)
        report["results"] = [asdict(line) for line in ours + upstream]
        report["load_average_after"] = os.getloadavg()[0]
    finally:
        if not args.keep:
            for url in copies:
                drop_database(url)
    return report


# -- the report ---------------------------------------------------------------------------

HEADER = (f"{'scenario':18} {'server':8} {'p50':>9} {'p99':>9} {'calls/s':>8} {'ok':>9} "
          f"{'503':>4} {'fail':>4}  {'rows':22} ours/upstream")


def _f(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_line(d: dict[str, Any]) -> str:
    if not d["ok"]:
        return f"{d['name']:18} {d['server']:8} FAILED: {d['error']}"
    rows = (f"{d['new_buildsets']} bs, {d['new_buildrequests']} br "
            + ("ok" if d["consistent"] else
               f"MISMATCH (lost {d['lost']}, extra {d['extra']}, repeated {d['repeated']}, "
               f"expected {d['ok']} bs, {d['expected_buildrequests']} br)"))
    ratio = ""
    if d["p50_ratio"] is not None or d["rate_ratio"] is not None:
        ratio = f"p50 {_f(d['p50_ratio'], 'x', 2)}, calls/s {_f(d['rate_ratio'], 'x', 2)}"
    text = (f"{d['name']:18} {d['server']:8} {_f(d['p50_ms'], ' ms', 2):>9} "
            f"{_f(d['p99_ms'], ' ms', 2):>9} {_f(d['calls_per_s']):>8} "
            f"{d['ok']:>4}/{d['calls']:<4} {d['unavailable']:>4} {d['failed']:>4}  "
            f"{rows:22} {ratio}")
    if d["error"]:
        text += f"\n{'':18} most frequent failure: {d['error']}"
    if d.get("not_sent"):
        text += f"\n{'':18} {d['not_sent']} calls not sent: the line's time was up"
    if d.get("note"):
        text += f"\n{'':18} {d['note']}"
    return text


def format_report(report: dict[str, Any]) -> str:
    lines = [f"buildbot_rest control benchmark, {report['date']}: {report['database']} "
             f"({report.get('builds', 0):,} builds), Python {report['python']}, "
             f"{report['cpus']} CPUs",
             f"force: POST /api/v2/forceschedulers/{report['scheduler']} on "
             f"{', '.join(report.get('builders', []))}; rebuild: POST /api/v2/builds/<id>; "
             f"1 client x {report['calls_1_client']} calls, {report['clients']} clients x "
             f"{report['calls_per_client']} calls",
             f"upstream 4.3.0: {report['upstream']}; load average (1 min) "
             f"{_f(report.get('load_average_before'), '', 2)} before, "
             f"{_f(report.get('load_average_after'), '', 2)} after", "", HEADER]
    lines += [format_line(d) for d in report["results"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True,
                        help="database URL (made by bench.generate; left as it is: the "
                             "calls go to copies)")
    parser.add_argument("--calls", type=int, default=200,
                        help="calls of the one client (default 200)")
    parser.add_argument("--clients", type=int, default=64,
                        help="concurrent clients (default 64)")
    parser.add_argument("--per-client", type=int, default=10,
                        help="calls of each concurrent client (default 10)")
    parser.add_argument("--upstream-per-client", type=int, metavar="N",
                        help="calls of each concurrent client on upstream (default: "
                             "--per-client; fewer keep the run short, upstream being slow)")
    parser.add_argument("--line-seconds", type=float, default=300.0,
                        help="no call starts after this many seconds of a line (default 300)")
    parser.add_argument("--settle-seconds", type=float, default=60.0,
                        help="after a line, wait this long for the server to stop writing, "
                             "else restart it (default 60)")
    parser.add_argument("--leave-pending", dest="complete", action="store_false",
                        help="leave the new build requests pending after each line (by "
                             "default they are completed, as masters running them would)")
    parser.add_argument("--no-upstream", action="store_true",
                        help="do not measure upstream Buildbot 4.3.0")
    parser.add_argument("--workdir", default="/tmp/bench-control",
                        help="the copies, the configurations and the servers' logs "
                             "(default /tmp/bench-control)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the copies of the database")
    parser.add_argument("--out", help="write the JSON report here, and the text beside it")
    args = parser.parse_args(argv)
    if min(args.calls, args.clients, args.per_client) < 1:
        parser.error("--calls, --clients and --per-client must be at least 1")
    # a stopped run still stops its servers and drops its copies
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.out:
        write_report(args.out, report, format_report(report))
    failed = [r for r in report["results"] if r["server"] == "ours" and not r["consistent"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
