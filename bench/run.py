# -*- test-case-name: tests.test_bench -*-
"""Run the benchmark scenarios: ``python -m bench.run --db URL``.

Starts the server as a subprocess on the database (the ``buildbot-rest`` twistd plugin when
it is installed, else a small server script in this module), warms it up, sends each
scenario's request one at a time over a keep-alive connection, and times the same rows
read with plain SQLAlchemy and encoded with orjson in this process (the floor, see
:mod:`bench.floor`). Prints one line per scenario and writes JSON and text reports.

A scenario that fails (an endpoint not written yet, an error status, a timeout) is reported
as failed with its reason; the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa

from bench.scenarios import Ids, Scenario, select
from buildbot_rest.db.database import make_engine

REQUEST_TIMEOUT = 300.0
START_TIMEOUT = 60.0
KEEP_BODY = 512 * 1024 * 1024  # warm-up bodies up to this size are parsed and checked


# -- the server process -------------------------------------------------------------------

def serve(url: str, port: int) -> None:
    """The fallback server: what the twistd plugin does, without auth or live events."""
    from twisted.internet import endpoints, reactor
    from twisted.web.server import Site

    from buildbot_rest.data.connector import DataConnector
    from buildbot_rest.db import Database
    from buildbot_rest.www import WebApp

    db = Database(url)
    db.prepare_sync(create=False)
    db.start()
    connector = DataConnector(db, base_url=f"http://127.0.0.1:{port}/")
    site = Site(WebApp(connector).resource())
    site.noisy = False
    endpoints.serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1").listen(site)
    reactor.addSystemEventTrigger("before", "shutdown", db.stop)
    reactor.run()  # type: ignore[attr-defined]


def plugin_available() -> bool:
    try:
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        from twisted import plugins
    except ImportError:
        return False
    return any(getattr(p, "tapname", None) == "buildbot-rest"
               for p in getPlugins(IServiceMaker, plugins))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The server subprocess: start, wait until it answers, read its memory, stop."""

    def __init__(self, url: str, how: str, log_path: Path, access_log: str = "-",
                 workers: int = 1, extra_args: tuple[str, ...] = ()) -> None:
        self.url = url
        self.port = free_port()
        self.log_path = log_path
        if how == "auto":
            how = "plugin" if plugin_available() else "script"
        self.how = how
        if how == "plugin":
            cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                   "-n", "--pidfile=", "buildbot-rest", "--db", url,
                   "--port", f"tcp:{self.port}:interface=127.0.0.1",
                   "--access-log", access_log, "--workers", str(workers), *extra_args]
        else:
            cmd = [sys.executable, "-m", "bench.run", "--serve", url, str(self.port)]
        self.log = open(log_path, "wb")  # noqa: SIM115 - open as long as the server
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parent.parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                conn = await Connection.open(self.port)
                try:
                    status, _, _ = await conn.get("/api/v2", keep=0)
                finally:
                    conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"server did not answer within {START_TIMEOUT:.0f}s")

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM in bytes (empty when /proc cannot tell)."""
        out = {}
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        out[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return out

    def reset_peak(self) -> None:
        try:  # Linux: "5" resets VmHWM to the current RSS
            with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class PeakSampler:
    """Samples the server's RSS every few ms in a thread; ``peak`` also reads VmHWM."""

    def __init__(self, server: Server, interval: float = 0.01) -> None:
        self.server = server
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.server.reset_peak()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.server.memory().get("VmRSS", 0))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        mem = self.server.memory()
        self.peak = max(self.peak, mem.get("VmHWM", 0), mem.get("VmRSS", 0))


# -- a minimal HTTP/1.1 client (loopback, keep-alive, bounded) ----------------------------

class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection; ``get`` returns (status, body bytes, kept body)."""

    def __init__(self, port: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(port, reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def get(self, path: str, *, keep: int = 64 * 1024) -> tuple[int, int, bytes]:
        return await asyncio.wait_for(self._get(path, keep), REQUEST_TIMEOUT)

    async def _get(self, path: str, keep: int) -> tuple[int, int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          "Accept: application/json\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        kept: list[bytes] = []
        size = 0

        def take(data: bytes) -> None:
            nonlocal size
            if size < keep:
                kept.append(data[:keep - size])
            size += len(data)

        if "content-length" in headers:
            await self._read(int(headers["content-length"]), take)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                n = int((await self.reader.readline()).split(b";")[0], 16)
                if n == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b""):
                        pass
                    break
                await self._read(n, take)
                await self.reader.readexactly(2)
        else:
            while data := await self.reader.read(1 << 20):
                take(data)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, size, b"".join(kept)

    async def _read(self, n: int, take: Callable[[bytes], None]) -> None:
        while n > 0:
            data = await self.reader.read(min(n, 1 << 20))
            if not data:
                raise HttpError("connection closed in the middle of a body")
            take(data)
            n -= len(data)


# -- measuring ----------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    kind: str
    path: str = ""
    ok: bool = True
    error: str = ""
    iterations: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    rps: float | None = None
    peak_rss_mb: float | None = None
    bytes: int | None = None
    mb_per_s: float | None = None
    items: int | None = None
    total: int | None = None
    floor_median_ms: float | None = None
    floor_p95_ms: float | None = None
    floor_mb_per_s: float | None = None
    floor_error: str = ""
    ratio: float | None = None
    clients: int = 1
    errors: int = 0
    speedup_vs_1: float | None = None
    note: str = ""


def _ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _parse_collection(body: bytes) -> tuple[int | None, int | None]:
    try:
        doc = json.loads(body)
    except ValueError:
        return None, None
    lists = [v for k, v in doc.items() if k != "meta" and isinstance(v, list)]
    return (len(lists[0]) if lists else None), doc.get("meta", {}).get("total")


async def measure_api(server: Server, sc: Scenario, path: str, n: int, res: Result,
                      engine: sa.Engine, floor: Callable[[sa.Connection], Any] | None) -> None:
    """Time ``n`` requests one at a time, each followed by one run of the floor, so that
    both see the same load on a shared machine."""
    conn = await Connection.open(server.port)
    fconn = engine.connect() if floor is not None else None
    try:
        status, size, body = await conn.get(path, keep=KEEP_BODY if sc.kind == "api" else 1024)
        if status != 200:
            raise HttpError(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        if sc.kind == "api":
            res.items, res.total = _parse_collection(body)
        del body
        floor_times: list[float] = []
        fsize = _floor_warm_up(fconn, floor, res)
        times = []
        with PeakSampler(server) as peak:
            for _ in range(n):
                t0 = time.perf_counter()
                status, size, body = await conn.get(path, keep=256)
                times.append(time.perf_counter() - t0)
                if status != 200:
                    raise HttpError(f"HTTP {status}: {body.decode('utf-8', 'replace')}")
                if fconn is not None and floor is not None and not res.floor_error:
                    t0 = time.perf_counter()
                    fsize = floor(fconn)
                    floor_times.append(time.perf_counter() - t0)
                    fconn.rollback()
    finally:
        conn.close()
        if fconn is not None:
            fconn.close()
    res.iterations = n
    res.median_ms, res.p95_ms = _ms(times)
    res.rps = n / sum(times)
    res.peak_rss_mb = peak.peak / 2**20
    res.bytes = size
    if sc.kind == "raw":
        res.mb_per_s = size / 2**20 / statistics.median(times)
    if floor_times:
        res.floor_median_ms, res.floor_p95_ms = _ms(floor_times)
        if sc.kind == "raw" and isinstance(fsize, int):
            res.floor_mb_per_s = fsize / 2**20 / (res.floor_median_ms / 1000)


def _floor_warm_up(conn: sa.Connection | None, floor: Callable[[sa.Connection], Any] | None,
                   res: Result) -> Any:
    if conn is None or floor is None:
        return None
    try:
        out = floor(conn)
    except Exception as e:  # noqa: BLE001 - a broken floor is reported; the run goes on
        res.floor_error = f"{type(e).__name__}: {e}"[:300]
        conn.rollback()
        return None
    conn.rollback()
    if res.kind == "api" and isinstance(out, bytes) and res.items is None:
        res.items, res.total = _parse_collection(out)
    return out


async def measure_load(server: Server, path: str, clients: int, seconds: float,
                       res: Result) -> None:
    deadline = time.monotonic() + seconds
    times: list[float] = []
    errors: list[str] = []

    async def client() -> None:
        conn: Connection | None = None
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = await Connection.open(server.port)
                t0 = time.perf_counter()
                status, _, _ = await conn.get(path, keep=256)
                if status == 200:
                    times.append(time.perf_counter() - t0)
                else:
                    errors.append(f"HTTP {status}")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError, ValueError) as e:
                errors.append(type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    with PeakSampler(server) as peak:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    res.iterations = len(times)
    res.errors = len(errors)
    if errors and not times:
        raise HttpError(f"every request failed, e.g. {errors[0]}")
    res.median_ms, res.p95_ms = _ms(times)
    res.rps = len(times) / wall
    res.peak_rss_mb = peak.peak / 2**20
    if errors:
        res.error = f"{len(errors)} errors, e.g. {errors[0]}"


def measure_floor(engine: sa.Engine, floor: Callable[[sa.Connection], Any], n: int,
                  res: Result) -> None:
    with engine.connect() as conn:
        out = floor(conn)  # warm-up
        if res.kind == "api" and isinstance(out, bytes) and res.items is None:
            res.items, res.total = _parse_collection(out)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            out = floor(conn)
            times.append(time.perf_counter() - t0)
            conn.rollback()
    res.floor_median_ms, res.floor_p95_ms = _ms(times)
    if res.kind == "raw" and isinstance(out, int):
        res.floor_mb_per_s = out / 2**20 / (res.floor_median_ms / 1000)
    if res.kind == "count":
        res.median_ms, res.p95_ms, res.iterations = res.floor_median_ms, res.floor_p95_ms, n
        res.total = out


# -- query plans --------------------------------------------------------------------------

PLAN_PATHS = ["/builds?limit=50&order=-buildid",
              "/builds?builderid={builderid}&limit=50&order=-buildid",
              "/builds?results=2&limit=50&order=-buildid",
              "/builds?complete=false&limit=50&order=-buildid",
              "/builds?limit=50&order=-started_at"]


def server_statements(url: str, engine: sa.Engine, path: str) -> list[tuple[str, Any]]:
    """The SQL the server's engine runs for ``path`` (captured, run in this process)."""
    from buildbot_rest.data.connector import DataConnector
    from buildbot_rest.data.resolve import resolve
    from buildbot_rest.data.resultspec import group, parse_query_string
    from buildbot_rest.db import Database

    db = Database(url, pool_size=1)
    db.engine.dispose()
    db.engine = engine
    connector = DataConnector(db)
    route, _, query = path.partition("?")
    endpoint, kwargs = connector.match(tuple(route.strip("/").split("/")))
    spec = connector.parse_spec(endpoint, group(parse_query_string(query.encode())))
    ctx = connector.context(endpoint, kwargs)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    with engine.connect() as conn:
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            resolve(conn, kwargs, tuple(endpoint.unchecked))
            seen.clear()  # the page's own statements, without the path's look-ups
            endpoint.get_in(conn, ctx, spec, kwargs)
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def explain(engine: sa.Engine, statement: str, params: Any) -> list[str]:
    dialect = engine.dialect.name
    prefix = {"sqlite": "EXPLAIN QUERY PLAN ",
              "postgresql": "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "}.get(
                  dialect, "EXPLAIN ")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).fetchall()
    if dialect == "sqlite":
        return [f"{r[1]:>3} {r[3]}" for r in rows]
    return [" | ".join(str(c) for c in r) for r in rows]


def query_plans(url: str, engine: sa.Engine, ids: Ids) -> list[dict[str, Any]]:
    plans = []
    for template in PLAN_PATHS:
        path = template.format(**vars(ids))
        try:
            for statement, params in server_statements(url, engine, path):
                plans.append({"path": path, "sql": " ".join(statement.split()),
                              "plan": explain(engine, statement, params)})
        except Exception as e:  # noqa: BLE001 - a plan is a report, never a reason to stop
            plans.append({"path": path, "sql": "", "plan": [f"unavailable: {e!r}"]})
    return plans


# -- the run ------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(args.db, pool_size=1)
    with engine.connect() as conn:
        ids = Ids.find(conn)
        builds = conn.execute(sa.text("select count(*) from builds")).scalar()
    scenarios = select(args.scenarios)
    log_path = Path(args.server_log)
    access_log = args.access_log or str(log_path.with_suffix(".access.log"))
    server = Server(args.db, args.server, log_path, access_log)
    report: dict[str, Any] = {
        "database": engine.url.render_as_string(hide_password=True),
        "dialect": engine.dialect.name, "builds": builds, "server": server.how,
        "access_log": access_log if server.how == "plugin" else "none",
        "iterations": args.iterations, "python": platform.python_version(),
        "cpus": os.cpu_count(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "results": [], "plans": [],
    }
    try:
        await server.wait_ready()
        report["idle_rss_mb"] = server.memory().get("VmRSS", 0) / 2**20
        print(f"server ({server.how}) pid {server.pid} on port {server.port}, "
              f"idle RSS {report['idle_rss_mb']:.1f} MB; {builds:,} builds")
        print(HEADER, flush=True)
        state: dict[str, Any] = {}
        for sc in scenarios:
            res = await run_scenario(args, server, engine, ids, sc, state)
            report["results"].append(asdict(res))
            print(format_line(res), flush=True)
        if args.extra_indexes:
            await with_extra_indexes(args, server, engine, ids, scenarios, report, state)
        report["final_rss_mb"] = server.memory().get("VmRSS", 0) / 2**20
    finally:
        server.stop()
    if args.workers > 1 and server.how == "plugin":
        await with_workers(args, engine, ids, scenarios, report, state, log_path, access_log)
    if not args.no_plans:
        report["plans"] = query_plans(args.db, engine, ids)
    engine.dispose()
    return report


async def run_scenario(args: argparse.Namespace, server: Server, engine: sa.Engine, ids: Ids,
                       sc: Scenario, state: dict[str, Any], suffix: str = "") -> Result:
    """Measure one scenario (and its floor); ``state`` carries the one-client load rate."""
    res = Result(sc.name + suffix, sc.kind, clients=sc.clients, note=sc.note)
    n = min(args.iterations, sc.max_iterations or args.iterations)
    try:
        if sc.kind == "raw" and ids.big_logid is None:
            raise HttpError("no big-stdio log: generate with --big-log-mb")
        if sc.kind != "count":
            res.path = sc.url_path(ids)
        floor = sc.floor(ids) if sc.floor is not None and not args.no_floor else None
        if sc.kind in ("api", "raw"):
            await measure_api(server, sc, res.path, n, res, engine, floor)
        elif sc.kind == "load":
            await measure_load(server, res.path, sc.clients, args.load_seconds, res)
            if sc.clients == 1:
                state["one_client_rps"] = res.rps
            elif state.get("one_client_rps") and res.rps:
                res.speedup_vs_1 = res.rps / state["one_client_rps"]
    except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError, ValueError,
            RuntimeError) as e:
        res.ok, res.error = False, f"{type(e).__name__}: {e}".strip()[:300]
    # floors not measured beside the requests (failed, load, count): on their own
    if (sc.floor is not None and not args.no_floor and res.floor_median_ms is None
            and not res.floor_error):
        try:
            measure_floor(engine, sc.floor(ids), n if sc.kind != "load" else
                          args.iterations, res)
        except Exception as e:  # noqa: BLE001 - reported; the other scenarios run
            res.floor_error = f"{type(e).__name__}: {e}"[:300]
    # under load, latency is queueing: the load lines compare throughputs instead
    if (res.ok and res.median_ms and res.floor_median_ms and sc.kind != "count"
            and not (sc.kind == "load" and sc.clients > 1)):
        res.ratio = res.median_ms / res.floor_median_ms
    return res


async def with_extra_indexes(args: argparse.Namespace, server: Server, engine: sa.Engine,
                             ids: Ids, scenarios: list[Scenario], report: dict[str, Any],
                             state: dict[str, Any]) -> None:
    """Add the opt-in extra indexes the scenarios name, measure those scenarios again
    (their floors too, which then use the indexes as well), and drop the indexes added."""
    from buildbot_rest.db import extra_indexes

    served = [sc for sc in scenarios if sc.extra_indexes]
    names = sorted({name for sc in served for name in sc.extra_indexes})
    if not served:
        return
    started = time.monotonic()
    added = extra_indexes.add(engine, names)
    # SQLite keeps EXPLAIN results of statements prepared before a schema change: fresh
    # connections for the plans (here and after the drop)
    engine.dispose()
    report["extra_indexes"] = {"names": names, "added": added,
                               "build_seconds": time.monotonic() - started}
    print(f"-- with the extra indexes {', '.join(names)} "
          f"(built in {report['extra_indexes']['build_seconds']:.1f}s):", flush=True)
    try:
        for sc in served:
            res = await run_scenario(args, server, engine, ids, sc, state, " +index")
            report["results"].append(asdict(res))
            print(format_line(res), flush=True)
        if not args.no_plans:
            report["plans_with_indexes"] = query_plans(args.db, engine, ids)
    finally:
        if added:
            extra_indexes.drop(engine, added)
            engine.dispose()


async def with_workers(args: argparse.Namespace, engine: sa.Engine, ids: Ids,
                       scenarios: list[Scenario], report: dict[str, Any],
                       state: dict[str, Any], log_path: Path, access_log: str) -> None:
    """The load scenarios again, on a server started with ``--workers N``; throughputs
    are compared with the one-process, one-client rate measured before."""
    loads = [sc for sc in scenarios if sc.kind == "load"]
    if not loads:
        return
    server = Server(args.db, "plugin", log_path.with_suffix(".workers.log"), access_log,
                    workers=args.workers)
    try:
        await server.wait_ready()
        await asyncio.sleep(2.0)  # the workers start after the parent listens
        print(f"-- with {args.workers} worker processes:", flush=True)
        for sc in loads:
            # a throwaway state: the speed-up is against the one-process rate, set here
            res = await run_scenario(args, server, engine, ids, sc, {},
                                     f" ({args.workers} workers)")
            if sc.clients > 1 and state.get("one_client_rps") and res.rps:
                res.speedup_vs_1 = res.rps / state["one_client_rps"]
            report["results"].append(asdict(res))
            print(format_line(res), flush=True)
    finally:
        server.stop()


# -- the report ---------------------------------------------------------------------------

HEADER = (f"{'scenario':44} {'median':>9} {'p95':>9} {'req/s':>8} {'peak RSS':>9} "
          f"{'floor':>9} {'ratio':>6}  notes")


def _f(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_line(r: Result | dict[str, Any]) -> str:
    d = asdict(r) if isinstance(r, Result) else r
    notes = []
    if not d["ok"]:
        return f"{d['name']:44} FAILED: {d['error']}" + (
            f"  (floor {_f(d['floor_median_ms'], ' ms', 2)})" if d["floor_median_ms"] else "")
    if d["kind"] == "raw":
        notes.append(f"{d['bytes'] / 2**20:.0f} MB at {_f(d['mb_per_s'])} MB/s "
                     f"(floor {_f(d['floor_mb_per_s'])} MB/s)")
    if d["kind"] == "load":
        notes.append(f"{d['clients']} clients, {d['errors']} errors")
        if d["speedup_vs_1"]:
            notes.append(f"x{d['speedup_vs_1']:.2f} of 1 client")
    if d["kind"] == "api" and d["items"] is not None:
        notes.append(f"{d['items']} items" + (f", total {d['total']}"
                                             if d["total"] is not None else ""))
    if d["kind"] == "count":
        what = "rows" if d["name"].startswith("PAGE") else "="
        notes.append(f"{what} {d['total']} (SQLAlchemy, no HTTP)")
    if d["floor_error"]:
        notes.append(f"floor failed: {d['floor_error']}")
    floor = None if d["kind"] == "count" else d["floor_median_ms"]
    return (f"{d['name']:44} {_f(d['median_ms'], ' ms', 2):>9} {_f(d['p95_ms'], ' ms', 2):>9} "
            f"{_f(d['rps']):>8} {_f(d['peak_rss_mb'], ' MB'):>9} "
            f"{_f(floor, ' ms', 2):>9} {_f(d['ratio'], 'x', 2):>6}  {'; '.join(notes)}")


def format_report(report: dict[str, Any]) -> str:
    lines = [(f"buildbot_rest benchmark, {report['date']}: {report['database']} "
             f"({report['builds']:,} builds), server: {report['server']}, "
             f"{report['iterations']} iterations, Python {report['python']}, "
             f"{report['cpus']} CPUs, access log: {report.get('access_log', '-')}"),
             (f"idle RSS {_f(report.get('idle_rss_mb'), ' MB')}, "
             f"at the end {_f(report.get('final_rss_mb'), ' MB')}"), "", HEADER]
    lines += [format_line(r) for r in report["results"]]
    text = "\n".join(lines) + "\n" + format_plans(report["plans"])
    if report.get("plans_with_indexes"):
        text += "\nwith the extra indexes:\n" + format_plans(report["plans_with_indexes"])
    return text


def format_plans(plans: list[dict[str, Any]]) -> str:
    lines = []
    for plan in plans:
        lines += ["", f"plan of {plan['path']}:", f"  {plan['sql']}"]
        lines += [f"    {p}" for p in plan["plan"]]
    return "\n".join(lines) + "\n" if lines else ""


def write_report(out_path: str, report: dict[str, Any], text: str) -> None:
    """The JSON ``report`` at ``out_path`` and its ``text`` beside it (``.txt``)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text)
    print(f"wrote {out} and {out.with_suffix('.txt')}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="database URL (made by bench.generate)")
    parser.add_argument("--scenarios", nargs="*", metavar="NAME",
                        help="only scenarios whose name contains one of these")
    parser.add_argument("--iterations", type=int, default=30,
                        help="timed requests per scenario (default 30)")
    parser.add_argument("--load-seconds", type=float, default=5.0,
                        help="duration of each concurrent-load scenario (default 5)")
    parser.add_argument("--server", choices=("auto", "plugin", "script"), default="auto",
                        help="start `twistd buildbot-rest` (plugin) or bench's own server "
                             "(script); auto takes the plugin when installed")
    parser.add_argument("--access-log", metavar="WHERE",
                        help="the plugin server's --access-log: -, off or a file (default: a "
                             "file beside --server-log, as a production server would keep)")
    parser.add_argument("--workers", type=int, default=1,
                        help="then run the load scenarios again on a server with this many "
                             "worker processes (default 1: not)")
    parser.add_argument("--out", help="write the JSON report here, and the text table "
                                      "beside it (.txt)")
    parser.add_argument("--server-log", default="/tmp/bench-server.log",
                        help="the server's output (default /tmp/bench-server.log)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floors")
    parser.add_argument("--no-plans", action="store_true", help="skip the query plans")
    parser.add_argument("--extra-indexes", action="store_true",
                        help="then add the opt-in extra indexes (buildbot-rest indexes add), "
                             "measure the scenarios they serve again, and drop them")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    report = asyncio.run(run(args))
    text = format_report(report)
    print(format_plans(report["plans"]), end="")
    if report.get("plans_with_indexes"):
        print("\nwith the extra indexes:\n" + format_plans(report["plans_with_indexes"]), end="")
    if args.out:
        write_report(args.out, report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
