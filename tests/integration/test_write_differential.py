"""The write differential: upstream Buildbot 4.3.0 and buildbot_rest make the same writes
on two copies of one database, and must make them alike.

Two parts, on each backend:

* JSON-RPC (:func:`test_same_control_answers_as_upstream`): an upstream master (with two
  builders and a force scheduler ``diff-force`` in its master.cfg; their rows are in the
  database) serves copy 1, our server (the same force scheduler in its configuration, a
  message queue) serves copy 2. Each call of :func:`rpc_cases` is POSTed to both; the
  HTTP status, the JSON-RPC envelope (id, code, message, result) and the difference the
  call made to each database (every table dumped before and after; new ids named by
  rank, times as ``T``) are compared.
* Update methods (:func:`test_same_updates_as_upstream`): the sequence
  :data:`UPDATE_CALLS` runs with upstream's own ``master.data.updates`` (in its
  virtualenv, upstream_updates.py) over copy 1 and with our ``connector.updates`` over
  copy 2, both clocks fixed at :data:`NOW`; the results, the events (routing keys and
  messages) and the database difference of each call are compared.

Where the two differ, the rules below are tried: each names a deviation we make on
purpose (the docs/compatibility.rst item, or the item of the project's table of
compatibility decisions, #n) and first checks that our side does what that decision
promises. What no rule explains is a mismatch: the test fails, and the report (in the
run's basetemp, write-differential-report.txt) lists each one.
"""

from __future__ import annotations

import copy
import functools
import json
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from sqlalchemy.engine import make_url
from twisted.internet import endpoints, reactor, task, threads
from twisted.web.server import Site

from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.mq import SimpleMQ
from tests.conftest import raw_engine_for, upstream_env
from tests.integration import dbdump
from tests.integration.conftest import BACKENDS, TERMINAL_SUMMARY, fill_demo
from tests.integration.upstream_master import (
    BASE_URL,
    UpstreamMaster,
    force_cfg,
    keep_masters_alive,
)
from tests.integration.upstream_updates import jsonable, resolve

HERE = Path(__file__).resolve().parent

#: the fixed clock of the update-method part (epoch seconds)
NOW = 1_700_500_000
#: the master both sides' update methods act as (a demo master, active)
MASTERID = 1

FORCE_BUILDERS = ["linux-py311", "freebsd-py311"]
FORCE_NAME = "diff-force"
#: the force scheduler, as upstream's master.cfg declares it ...
UPSTREAM_SCHEDULERS = f"""[schedulers.ForceScheduler(
    name={FORCE_NAME!r}, builderNames={FORCE_BUILDERS!r},
    codebases=[util.CodebaseParameter('')],
    properties=[util.IntParameter(name='count', default=1),
                util.StringParameter(name='tag', required=True),
                util.BooleanParameter(name='clean'),
                util.ChoiceStringParameter(name='flavor', choices=['a', 'b'], default='a'),
                util.StringParameter(name='ver', regex='^[0-9.]+$', default='1.0')])]"""
#: ... and as our configuration declares it
OUR_FORCESCHEDULER: dict[str, Any] = {
    "name": FORCE_NAME, "builder_names": FORCE_BUILDERS,
    "codebases": [{"codebase": ""}],
    "parameters": [
        {"kind": "int", "name": "count", "default": 1},
        {"kind": "string", "name": "tag", "required": True},
        {"kind": "boolean", "name": "clean"},
        {"kind": "choice", "name": "flavor", "choices": ["a", "b"], "default": "a"},
        {"kind": "string", "name": "ver", "regex": "^[0-9.]+$", "default": "1.0"},
    ],
}
#: columns whose changes are the upstream master's own life (its heartbeat)
IGNORED = frozenset({("masters", "last_active")})


# -- databases ---------------------------------------------------------------------------

class Copies:
    """Copies of one database (SQLite files, or PostgreSQL databases made from it as a
    template), dropped at the end."""

    def __init__(self, tmp: Path, admin_url: str | None) -> None:
        self.tmp = tmp
        self.admin_url = admin_url
        self.made: list[str] = []

    def copy(self, url: str) -> str:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            target = self.tmp / f"copy-{uuid.uuid4().hex[:8]}.sqlite"
            # the backup API: a consistent copy even while another process has it open
            src = sqlite3.connect(str(parsed.database))
            dst = sqlite3.connect(str(target))
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            return f"sqlite:///{target}"
        assert self.admin_url is not None
        name = f"bbrest_wdiff_{uuid.uuid4().hex[:12]}"
        admin = raw_engine_for(self.admin_url, isolation_level="AUTOCOMMIT",
                               poolclass=sa.pool.NullPool)
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{parsed.database}"')
        finally:
            admin.dispose()
        self.made.append(name)
        return parsed.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.made or self.admin_url is None:
            return
        admin = raw_engine_for(self.admin_url, isolation_level="AUTOCOMMIT",
                               poolclass=sa.pool.NullPool)
        try:
            with admin.connect() as conn:
                for name in self.made:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@dataclass
class Pristine:
    backend: str
    url: str
    copies: Copies


@pytest.fixture(scope="module", params=BACKENDS)
def pristine(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    """The demo data (as the read differential's), and a maker of its copies."""
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"write-differential-{backend}")
    admin = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'pristine.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
        admin = request.getfixturevalue("pg_url")
    fill_demo(url)
    copies = Copies(tmp, admin)
    try:
        yield Pristine(backend, url, copies)
    finally:
        copies.drop_all()


class Side:
    """One database seen from the test: dumps and differences."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = raw_engine_for(url, poolclass=sa.pool.NullPool)
        self.schema = dbdump.Schema(self.engine)

    def dump(self) -> dbdump.Dump:
        return dbdump.dump(self.engine, self.schema)

    def close(self) -> None:
        self.engine.dispose()


# -- verdicts and the report -----------------------------------------------------------

@dataclass
class Verdict:
    name: str
    verdict: str  #: identical, deviation, mismatch
    rules: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    name: str
    reference: str
    reason: str


RPC_RULES = {r.name: r for r in [
    Rule("case-sensitive-actions", "compatibility.rst Action names (#8)",
         "\"Stop\" is an unknown method here (501), upstream runs stop"),
    Rule("unknown-action-501", "compatibility.rst No 500 for bad input (#4)",
         "an unknown method is 501/-32601 on every endpoint; upstream answers 200 null "
         "(schedulers, forceschedulers) or 500 (buildrequests)"),
    Rule("no-500", "compatibility.rst No 500 for bad input (#4)",
         "upstream crashes (500); ours answers 400/404 with no change to the database"),
    Rule("stop-inactive-master", "COMPAT.md Also: actions whose effect upstream leaves "
         "to the master", "the build's master is not active: ours finishes it CANCELLED "
         "in the database; upstream only publishes the control message"),
    Rule("worker-state-without-master", "COMPAT.md Also: actions whose effect upstream "
         "leaves to the master", "no active master holds the worker: ours sets its state "
         "in the database; upstream only publishes the control message"),
    Rule("set-priority-works", "compatibility.rst Also: set_priority",
         "upstream's set_priority fails (500); ours sets the priority"),
    Rule("force-on-scheduler-id", "COMPAT.md Also: the seed document's control example",
         "force on /schedulers/<id> of a force scheduler works here (upstream: 200 null, "
         "nothing done)"),
    Rule("cancel-claims-as-own-master", "compatibility.rst: cancel of a waiting build request",
         "an unclaimed request is claimed and completed CANCELLED as upstream's master "
         "does, but the claim names our server's masters row"),
    Rule("control-message-only", "the test's environment: two message buses",
         "the worker is held by upstream's master (active, on its own message bus), which "
         "acts on the control message; ours publishes the same message on its bus, where "
         "no master listens, and writes nothing, as it must for a worker a master holds"),
    Rule("missing-entity-404", "compatibility.rst No 500 for bad input (#4)",
         "a missing entity is 404 (upstream: 200 null, having published a control "
         "message or written a row that names nothing)"),
    Rule("builderid-among-builders", "compatibility.rst: force checks (builderid must be one "
         "of the scheduler's builders)", "upstream forces any builder named by builderid; ours "
         "refuses one the scheduler does not have (400)"),
    Rule("singular-alias", "COMPAT.md Also: singular collection names are aliases",
         "POST /build/<id> works (upstream: 404 Invalid path)"),
    Rule("complete-request-409", "compatibility.rst: set_priority of a complete request",
         "409 (upstream: 500)"),
]}


def report_lines(part: str, backend: str, verdicts: list[Verdict], seconds: float,
                 rules: dict[str, Rule]) -> str:
    counts = Counter(v.verdict for v in verdicts)
    by_rule = Counter(r for v in verdicts if v.verdict == "deviation" for r in v.rules)
    lines = [f"[{backend}] write differential, {part}: {len(verdicts)} cases in "
             f"{seconds:.1f}s: {counts['identical']} identical, {counts['deviation']} "
             f"deviations, {counts['mismatch']} mismatches"
             + (f", {counts['missing']} not implemented on our side" if counts["missing"]
                else "")]
    for name, n in sorted(by_rule.items()):
        ref = rules[name].reference if name in rules else ""
        lines.append(f"    deviation {name:<32} {n:>3}  ({ref})")
    for v in verdicts:
        if v.verdict in ("mismatch", "missing"):
            lines.append(f"    {v.verdict} {v.name}")
    return "\n".join(lines)


def report_details(verdicts: list[Verdict]) -> str:
    out = []
    for v in verdicts:
        if v.verdict != "identical":
            out.append(f"== {v.verdict} {v.name} {' '.join(v.rules)}")
            out += [f"    {d}" for d in v.details]
    return "\n".join(out)


def write_report(tmp_path_factory: pytest.TempPathFactory, title: str, text: str) -> Path:
    path = tmp_path_factory.getbasetemp() / "write-differential-report.txt"
    with open(path, "a") as f:
        f.write(f"######## {title} ({time.strftime('%H:%M:%S')})\n{text}\n\n")
    return path


def short(value: Any, size: int = 600) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= size else text[:size] + "..."


# ======================================================================================
# Part 1: JSON-RPC
# ======================================================================================

@dataclass
class Servers:
    backend: str
    up: Side
    ours: Side
    upstream_root: str
    ours_root: str
    connector: DataConnector
    facts: dict[str, Any]
    #: the control messages our server published (routing key, message)
    controls: list[tuple[str, Any]] = field(default_factory=list)


def _facts(side: Side) -> dict[str, Any]:
    """Entities the calls name, found in the copy."""
    with side.engine.connect() as conn:
        def one(sql: str) -> Any:
            return conn.execute(sa.text(sql)).scalar()

        return {
            "finished_build": one("SELECT min(id) FROM builds WHERE complete_at IS NOT NULL"),
            "finished_build_2": one("SELECT max(id) FROM builds WHERE complete_at IS NOT NULL"),
            "running_build": one("SELECT min(id) FROM builds WHERE complete_at IS NULL"),
            "unclaimed_br": one("SELECT min(r.id) FROM buildrequests r LEFT JOIN "
                                "buildrequest_claims c ON c.brid = r.id WHERE r.complete = 0 "
                                "AND c.brid IS NULL"),
            "claimed_br": one("SELECT min(r.id) FROM buildrequests r JOIN buildrequest_claims "
                              "c ON c.brid = r.id WHERE r.complete = 0"),
            "complete_br": one("SELECT min(id) FROM buildrequests WHERE complete = 1"),
            "scheduler": one("SELECT min(id) FROM schedulers WHERE name = 'nightly'"),
            "force_scheduler": one(f"SELECT id FROM schedulers WHERE name = '{FORCE_NAME}'"),
            "worker": one("SELECT min(id) FROM workers WHERE paused = 0"),
            "diff_worker": one("SELECT id FROM workers WHERE name = 'diff-worker'"),
            "builder": one(f"SELECT id FROM builders WHERE name = '{FORCE_BUILDERS[0]}'"),
            "other_builder": one(f"SELECT min(id) FROM builders WHERE name NOT IN "
                                 f"('{FORCE_BUILDERS[0]}', '{FORCE_BUILDERS[1]}')"),
            "build_builder": one("SELECT builderid FROM builds WHERE id = (SELECT min(id) "
                                 "FROM builds WHERE complete_at IS NOT NULL)"),
            "build_number": one("SELECT number FROM builds WHERE id = (SELECT min(id) "
                                "FROM builds WHERE complete_at IS NOT NULL)"),
        }


def _serve(url: str) -> Iterator[tuple[str, DataConnector]]:
    db = Database(url, pool_size=4)
    db.prepare_sync(create=False)
    db.start()
    config = Config(db_url=url, port=None, base_url=BASE_URL,
                    forceschedulers=[copy.deepcopy(OUR_FORCESCHEDULER)])
    connector = DataConnector(db, config=config, base_url=BASE_URL, mq=SimpleMQ())
    from buildbot_rest.www import WebApp
    site = Site(WebApp(connector).resource())
    port = pytest_twisted.blockon(
        endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site))
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/", connector
    finally:
        pytest_twisted.blockon(port.stopListening())
        db.stop()
        db.engine.dispose()


@pytest.fixture(scope="module")
def write_servers(pristine: Pristine, upstream_venv: Path, run_upstream: Callable[..., str],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Upstream over copy 1, ours over copy 2, made once upstream had registered its
    builders, workers and force scheduler in copy 1."""
    url_up = pristine.copies.copy(pristine.url)
    workdir = tmp_path_factory.mktemp(f"write-upstream-{pristine.backend}")
    master = UpstreamMaster(upstream_venv, workdir / "master", url_up)
    master.create(run_upstream, force_cfg("diff-worker", FORCE_BUILDERS, UPSTREAM_SCHEDULERS))
    try:
        master.start()
        _wait_registered(url_up)
        # killed, not stopped: a stop would deactivate its master and release what it
        # registered; a PostgreSQL template must have no connection
        assert master.process is not None
        master.process.kill()
        master.process.wait(30)
        master.process = None
        keep_masters_alive(url_up)
        url_ours = pristine.copies.copy(url_up)
        master.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    up, ours = Side(url_up), Side(url_ours)
    try:
        for root, connector in _serve(url_ours):
            servers = Servers(pristine.backend, up, ours, master.root, root, connector,
                              _facts(ours))
            mq = connector.mq
            assert isinstance(mq, SimpleMQ)
            mq.consume(functools.partial(_record_control, servers.controls),
                       ("control", None, None, None))
            yield servers
    finally:
        master.stop()
        up.close()
        ours.close()


def _record_control(into: list[tuple[str, Any]], key: tuple[str, ...], msg: Any) -> None:
    into.append(("/".join(key), msg))


def _wait_registered(url: str, timeout: float = 60) -> None:
    """Wait until upstream's starting master has written the rows of its configuration
    (its worker configured on its builders, its force scheduler)."""
    engine = raw_engine_for(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                found = conn.execute(sa.text(
                    "SELECT (SELECT count(*) FROM configured_workers c JOIN workers w "
                    "ON w.id = c.workerid WHERE w.name = 'diff-worker'), "
                    "(SELECT count(*) FROM scheduler_masters m JOIN schedulers s "
                    f"ON s.id = m.schedulerid WHERE s.name = '{FORCE_NAME}')")).one()
            if found[0] >= len(FORCE_BUILDERS) and found[1] == 1:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"upstream did not register its configuration: {found}",
                            pytrace=False)
            time.sleep(0.25)
    finally:
        engine.dispose()


@dataclass
class RpcCase:
    name: str
    path: str
    #: the JSON-RPC body (a dict: method/params/id added as given) or raw bytes
    body: Any
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: rules that may explain a difference in this case (each checks ours)
    rules: tuple[str, ...] = ()
    #: what ours must answer where a rule applies: (status, JSON-RPC code or None)
    ours: tuple[int, int | None] | None = None
    #: upstream's effect comes after its answer (through its message queue)
    settle: bool = False
    #: a check of our database difference, for the rules that expect one
    check: Callable[[dict[str, Any], dict[str, Any]], str | None] | None = None
    #: a (new) masters row made inactive in both copies before the call
    deactivate_master_of_build: int | None = None
    #: the control message ours must publish (for the rule control-message-only)
    control: str | None = None


def call(method: str, params: dict[str, Any] | None = None, call_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": call_id}


def _changed_row(diff: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [c["after"] for c in diff.get(table, {}).get("changed", [])]


def _build_cancelled(diff: dict[str, Any], facts: dict[str, Any]) -> str | None:
    rows = _changed_row(diff, "builds")
    if not rows or rows[0].get("results") != 6 or rows[0].get("complete_at") is None:
        return f"our build is not finished CANCELLED: {short(diff.get('builds'))}"
    return None


def _worker_paused(paused: int) -> Callable[[dict[str, Any], dict[str, Any]], str | None]:
    def check(diff: dict[str, Any], facts: dict[str, Any]) -> str | None:
        rows = _changed_row(diff, "workers")
        if not rows or rows[0].get("paused") != paused:
            return f"our worker's paused is not {paused}: {short(diff.get('workers'))}"
        return None
    return check


def _priority(value: int) -> Callable[[dict[str, Any], dict[str, Any]], str | None]:
    def check(diff: dict[str, Any], facts: dict[str, Any]) -> str | None:
        rows = _changed_row(diff, "buildrequests")
        if set(diff) != {"buildrequests"} or not rows or rows[0] != {"priority": value}:
            return f"ours did not set the priority alone: {short(diff)}"
        return None
    return check


def _claimed_by_own_master(diff: dict[str, Any], facts: dict[str, Any],
                           up_diff: dict[str, Any] | None = None) -> str | None:
    """Ours is upstream's difference but for the master that claims (and its masters
    row, made on first use)."""
    ours, up = copy.deepcopy(diff), copy.deepcopy(up_diff or {})
    added = ours.pop("masters", {}).get("added", [])
    if len(added) > 1 or any(m.get("active") != 0 for m in added):
        return f"ours made masters rows: {short(added)}"
    for d in (ours, up):
        for row in d.get("buildrequest_claims", {}).get("added", []):
            row["masterid"] = "M"
    if dbdump.canon(ours) != dbdump.canon(up):
        return "ours differs from upstream beyond the claiming master"
    return None


def _forced(diff: dict[str, Any], facts: dict[str, Any]) -> str | None:
    if not diff.get("buildsets", {}).get("added") or not diff.get("buildrequests", {}).get(
            "added"):
        return f"ours made no buildset: {short(diff)}"
    return None


def rpc_cases(f: dict[str, Any]) -> list[RpcCase]:
    """Every call, in the order made (some change what later ones see)."""
    fs = f"forceschedulers/{FORCE_NAME}"
    build = f"builds/{f['finished_build']}"
    running = f"builds/{f['running_build']}"
    worker = f"workers/{f['worker']}"
    cases = [
        # -- protocol.md 4.1, in its order
        RpcCase("bad content type", build, call("rebuild"), content_type="text/plain"),
        RpcCase("content type with charset", "builds", call("stop"),
                content_type="application/json; charset=utf-8"),
        RpcCase("not JSON", build, b"{not json"),
        RpcCase("batch", build, b"[]"),
        RpcCase("not an object", build, b"1"),
        RpcCase("missing jsonrpc", build, {"method": "rebuild", "id": 1, "params": {}}),
        RpcCase("missing method", build, {"jsonrpc": "2.0", "id": 1, "params": {}}),
        RpcCase("missing id", build, {"jsonrpc": "2.0", "method": "rebuild", "params": {}}),
        RpcCase("missing params", build, {"jsonrpc": "2.0", "method": "rebuild", "id": 1}),
        RpcCase("jsonrpc not a string", build, {**call("rebuild"), "jsonrpc": 2}),
        RpcCase("method not a string", build, {**call("rebuild"), "method": 1}),
        RpcCase("id a float", build, {**call("rebuild"), "id": 1.5}),
        RpcCase("id a list", build, {**call("rebuild"), "id": [1]}),
        RpcCase("params a list", build, {**call("rebuild"), "params": []}),
        RpcCase("jsonrpc 1.0", build, {**call("rebuild"), "jsonrpc": "1.0"}),
        RpcCase("invalid path", "nosuch/1", call("stop", {}, "x")),
        RpcCase("id null, unknown method on a collection", "builds", call("stop", {}, None)),
        RpcCase("id a string, unknown method", "masters/1", call("frobnicate", {}, "abc")),
        RpcCase("id true", "changes", call("stop", {}, True)),
        RpcCase("foreign origin", build, call("rebuild"),
                headers={"Origin": "http://elsewhere.example"}),
        RpcCase("the origin of buildbotURL", "builds", call("stop"),
                headers={"Origin": BASE_URL.rstrip("/")}),
        # -- schedulers
        RpcCase("enable false", f"schedulers/{f['scheduler']}",
                call("enable", {"enabled": False})),
        RpcCase("enable true", f"schedulers/{f['scheduler']}",
                call("enable", {"enabled": True})),
        RpcCase("enable without enabled", f"schedulers/{f['scheduler']}", call("enable"),
                rules=("no-500",), ours=(400, -32602)),
        RpcCase("enable missing scheduler", "schedulers/9999",
                call("enable", {"enabled": True}), rules=("missing-entity-404",),
                ours=(404, -32600)),
        RpcCase("unknown method on a scheduler", f"schedulers/{f['scheduler']}",
                call("disable"), rules=("unknown-action-501",), ours=(501, -32601)),
        RpcCase("Enable (case)", f"schedulers/{f['scheduler']}",
                call("Enable", {"enabled": False}),
                rules=("unknown-action-501", "case-sensitive-actions"), ours=(501, -32601)),
        # -- force
        RpcCase("force", fs, call("force", {"tag": "v1", "owner": "mallory",
                                             "reason": "differential"})),
        RpcCase("force with every field", fs, call("force", {
            "tag": "v2", "count": "3", "clean": True, "flavor": "b", "ver": "1.2",
            "branch": "main", "revision": "abc123", "repository": "https://example.org/r",
            "project": "p", "username": "Alice <alice@example.org>", "priority": "2"})),
        RpcCase("force one builder by builderNames", fs,
                call("force", {"tag": "v3", "builderNames": [FORCE_BUILDERS[1]]})),
        RpcCase("force by builderid", fs,
                call("force", {"tag": "v4", "builderid": f["builder"]})),
        RpcCase("force missing required field", fs, call("force", {"count": "2"})),
        RpcCase("force bad int", fs, call("force", {"tag": "x", "count": "many"})),
        RpcCase("force regex mismatch", fs, call("force", {"tag": "x", "ver": "abc"})),
        RpcCase("force bad choice", fs, call("force", {"tag": "x", "flavor": "z"})),
        RpcCase("force unknown builder", fs,
                call("force", {"tag": "x", "builderNames": ["nosuch"]}),
                rules=("no-500",), ours=(400, -32602)),
        RpcCase("force builderid of another builder", fs,
                call("force", {"tag": "x", "builderid": f["other_builder"]}),
                rules=("builderid-among-builders",), ours=(400, -32602)),
        RpcCase("force unknown scheduler", "forceschedulers/nosuch",
                call("force", {"tag": "x"}), rules=("no-500",), ours=(404, -32600)),
        RpcCase("unknown method on a force scheduler", fs, call("frobnicate"),
                rules=("unknown-action-501",), ours=(501, -32601)),
        RpcCase("Force (case)", fs, call("Force", {"tag": "x"}),
                rules=("unknown-action-501", "case-sensitive-actions"), ours=(501, -32601)),
        RpcCase("force on the scheduler's id", f"schedulers/{f['force_scheduler']}",
                call("force", {"tag": "seed"}), rules=("force-on-scheduler-id",),
                ours=(200, None), check=_forced),
        # -- builds
        RpcCase("rebuild", build, call("rebuild")),
        RpcCase("rebuild by builder and number",
                f"builders/{f['build_builder']}/builds/{f['build_number']}", call("rebuild")),
        RpcCase("rebuild by builder name and number",
                f"builders/{FORCE_BUILDERS[0]}/builds/1", call("rebuild"),
                rules=("no-500",), ours=(200, None), check=_forced),
        RpcCase("rebuild singular alias", f"build/{f['finished_build_2']}", call("rebuild"),
                rules=("singular-alias",), ours=(200, None), check=_forced),
        RpcCase("rebuild missing build", "builds/999999", call("rebuild"),
                rules=("no-500",), ours=(404, -32600)),
        RpcCase("stop a running build", running, call("stop", {"reason": "enough"})),
        RpcCase("stop a finished build", build, call("stop")),
        RpcCase("stop missing build", "builds/999999", call("stop"),
                rules=("missing-entity-404",), ours=(404, -32600)),
        RpcCase("Stop (case)", running, call("Stop"),
                rules=("case-sensitive-actions",), ours=(501, -32601)),
        RpcCase("STOP (case)", running, call("STOP"),
                rules=("case-sensitive-actions",), ours=(501, -32601)),
        RpcCase("unknown method on a build", build, call("frobnicate")),
        # -- build requests
        RpcCase("set_priority", f"buildrequests/{f['unclaimed_br']}",
                call("set_priority", {"priority": 5}), rules=("set-priority-works",),
                ours=(200, None), check=_priority(5)),
        RpcCase("set_priority without priority", f"buildrequests/{f['unclaimed_br']}",
                call("set_priority"), rules=("no-500",), ours=(400, -32602)),
        RpcCase("set_priority bad int", f"buildrequests/{f['unclaimed_br']}",
                call("set_priority", {"priority": "high"}), rules=("no-500",),
                ours=(400, -32602)),
        RpcCase("set_priority on a complete request", f"buildrequests/{f['complete_br']}",
                call("set_priority", {"priority": 1}), rules=("complete-request-409",),
                ours=(409, None)),
        RpcCase("unknown method on a build request", f"buildrequests/{f['unclaimed_br']}",
                call("frobnicate"), rules=("unknown-action-501",), ours=(501, -32601)),
        RpcCase("cancel a claimed request", f"buildrequests/{f['claimed_br']}",
                call("cancel", {"reason": "no"}), settle=True),
        RpcCase("cancel an unclaimed request", f"buildrequests/{f['unclaimed_br']}",
                call("cancel", {"reason": "no"}), settle=True,
                rules=("cancel-claims-as-own-master",), ours=(200, None),
                check=_claimed_by_own_master),
        RpcCase("cancel a complete request", f"buildrequests/{f['complete_br']}",
                call("cancel"), settle=True),
        RpcCase("cancel a missing request", "buildrequests/999999", call("cancel"),
                settle=True, rules=("missing-entity-404",), ours=(404, -32600)),
        RpcCase("Cancel (case)", f"buildrequests/{f['claimed_br']}", call("Cancel"),
                rules=("unknown-action-501", "case-sensitive-actions"), ours=(501, -32601)),
        # -- workers
        RpcCase("pause", worker, call("pause", {"reason": "maintenance"}),
                rules=("worker-state-without-master",), ours=(200, None),
                check=_worker_paused(1)),
        RpcCase("unpause", worker, call("unpause"),
                rules=("worker-state-without-master",), ours=(200, None),
                check=_worker_paused(0)),
        RpcCase("Pause (case)", worker, call("Pause"),
                rules=("case-sensitive-actions",), ours=(501, -32601)),
        RpcCase("unknown method on a worker", worker, call("frobnicate")),
        RpcCase("pause a missing worker", "workers/9999", call("pause"),
                rules=("no-500",), ours=(404, -32600)),
        RpcCase("pause the configured worker", f"workers/{f['diff_worker']}",
                call("pause", {"reason": "maintenance"}), settle=True,
                rules=("control-message-only",), ours=(200, None),
                control=f"control/worker/{f['diff_worker']}/pause"),
        RpcCase("unpause the configured worker", f"workers/{f['diff_worker']}",
                call("unpause"), settle=True, rules=("control-message-only",),
                ours=(200, None), control=f"control/worker/{f['diff_worker']}/unpause"),
        RpcCase("stop the configured worker", f"workers/{f['diff_worker']}",
                call("stop", {"reason": "bye"}), settle=True, rules=("control-message-only",),
                ours=(200, None), control=f"control/worker/{f['diff_worker']}/stop"),
        # -- other endpoints
        RpcCase("method on a log", "logs/1", call("stop")),
        RpcCase("method on a change", "changes/1", call("stop")),
        RpcCase("id beyond 64 bits", "builds/99999999999999999999999", call("stop"),
                rules=("missing-entity-404",), ours=(404, -32600)),
        # last: it finishes the running build (and its request) on our side only
        RpcCase("stop a build of an inactive master", running, call("stop", {"reason": "x"}),
                rules=("stop-inactive-master",), ours=(200, None), check=_build_cancelled,
                deactivate_master_of_build=f["running_build"]),
    ]
    return cases


@dataclass
class RpcAnswer:
    status: int
    doc: Any
    body: bytes


async def post(root: str, case: RpcCase) -> RpcAnswer:
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    headers: dict[bytes | str, list[bytes | str]] = {"Content-Type": [case.content_type]}
    headers.update({k: [v] for k, v in case.headers.items()})
    resp = await treq.post(f"{root}api/v2/{case.path}", data=body, headers=headers,
                           persistent=False)
    content = await resp.content()
    try:
        doc = json.loads(content)
    except ValueError:
        doc = None
    return RpcAnswer(resp.code, doc, content)


def normalise_result(result: Any, ids: dict[tuple[str, Any], str]) -> Any:
    """A force or rebuild result ``[bsid, {builderid: brid}]`` (or ``{"buildsetid"...}``)
    with its new ids named."""
    if (isinstance(result, list) and len(result) == 2 and isinstance(result[0], int)
            and isinstance(result[1], dict)):
        return [ids.get(("buildsets", result[0]), result[0]),
                {k: ids.get(("buildrequests", v), v) for k, v in result[1].items()}]
    return result


def envelope(answer: RpcAnswer, ids: dict[tuple[str, Any], str]) -> Any:
    doc = answer.doc
    if not isinstance(doc, dict):
        return {"status": answer.status, "body": answer.body[:200].decode(errors="replace")}
    out: dict[str, Any] = {"status": answer.status, "keys": sorted(doc)}
    for key in ("id", "jsonrpc"):
        if key in doc:
            out[key] = doc[key]
    if isinstance(doc.get("error"), dict):
        out["code"] = doc["error"].get("code")
        out["message"] = doc["error"].get("message")
    elif "error" in doc:
        out["error"] = doc["error"]
    if "result" in doc:
        out["result"] = normalise_result(doc["result"], ids)
    return out


def judge_rpc(case: RpcCase, up_env: Any, our_env: Any, up_diff: Any, our_diff: Any,
              facts: dict[str, Any], controls: list[tuple[str, Any]] | None = None
              ) -> Verdict:
    v = Verdict(f"POST /{case.path} {case.name}", "identical")
    if up_env == our_env and up_diff == our_diff:
        return v
    v.details += [f"upstream: {short(up_env)}", f"ours:     {short(our_env)}"]
    if up_diff != our_diff:
        v.details += [f"upstream db: {short(up_diff, 1500)}",
                      f"ours db:     {short(our_diff, 1500)}"]
    problems = []
    if case.rules and case.ours is not None:
        status, code = case.ours
        if our_env.get("status") != status:
            problems.append(f"ours: status {our_env.get('status')}, the rule wants {status}")
        if code is not None and our_env.get("code") != code:
            problems.append(f"ours: code {our_env.get('code')}, the rule wants {code}")
        if case.control is not None:
            keys = [k for k, _ in controls or []]
            if case.control not in keys:
                problems.append(f"ours did not publish {case.control} (published: {keys})")
            if our_diff:
                problems.append("ours wrote to the database")
        if case.check is _claimed_by_own_master:
            problem = _claimed_by_own_master(our_diff, facts, up_diff)
            if problem:
                problems.append(problem)
        elif case.check is not None:
            problem = case.check(our_diff, facts)
            if problem:
                problems.append(problem)
        elif our_diff and (status >= 400 or case.control is not None):
            problems.append("ours changed the database on an error")
        if status >= 400 and our_env.get("id", "absent") != up_env.get("id", "absent"):
            problems.append("ours: the reply's id differs")
        if (case.check is None and case.control is None and status < 400
                and our_diff != up_diff):
            problems.append("ours: the database difference is not upstream's")
        if "missing-entity-404" in case.rules and up_env.get("status") == 404:
            problems.append("upstream answered 404 too: no deviation to explain")
        if "no-500" in case.rules and up_env.get("status") != 500:
            problems.append(f"upstream did not crash ({up_env.get('status')}): "
                            "the no-500 rule does not apply")
    elif case.rules:
        # a rule with no promise of ours to check: only the named difference, if any
        problems.append("no expectation of ours to check")
    else:
        problems.append("no rule")
    if problems:
        v.verdict = "mismatch"
        v.details = problems + v.details
    else:
        v.verdict = "deviation"
        v.rules = list(case.rules[:1]) if len(case.rules) == 1 else [
            r for r in case.rules if r != "unknown-action-501"] or list(case.rules)
    return v


async def _settled(side: Side, first: dbdump.Dump, tries: int = 10) -> dbdump.Dump:
    """A dump once the database has stopped changing (upstream's effects that follow
    its answer, through its message queue)."""
    last = first
    for _ in range(tries):
        await task.deferLater(reactor, 0.3, lambda: None)
        now = side.dump()
        if dbdump.canon(now) == dbdump.canon(last):
            return now
        last = now
    return last


def _set_master_active(side: Side, buildid: int, active: int) -> None:
    with side.engine.begin() as conn:
        conn.execute(sa.text("UPDATE masters SET active = :a WHERE id = (SELECT masterid "
                             "FROM builds WHERE id = :b)"), {"a": active, "b": buildid})


@pytest.mark.upstream
@pytest_twisted.ensureDeferred
async def test_same_control_answers_as_upstream(
        write_servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> None:
    s = write_servers
    started = time.monotonic()
    verdicts: list[Verdict] = []
    for case in rpc_cases(s.facts):
        if case.deactivate_master_of_build is not None:
            for side in (s.up, s.ours):
                _set_master_active(side, case.deactivate_master_of_build, 0)
        up_before, our_before = s.up.dump(), s.ours.dump()
        s.controls.clear()
        up_answer = await post(s.upstream_root, case)
        our_answer = await post(s.ours_root, case)
        await task.deferLater(reactor, 0.1, lambda: None)
        up_after = s.up.dump()
        if case.settle:
            up_after = await _settled(s.up, up_after)
        our_after = s.ours.dump()
        if case.deactivate_master_of_build is not None:
            for side in (s.up, s.ours):
                _set_master_active(side, case.deactivate_master_of_build, 1)
        up_changes = dbdump.diff(up_before, up_after, s.up.schema)
        our_changes = dbdump.diff(our_before, our_after, s.ours.schema)
        up_ids = dbdump.new_ids(up_changes, s.up.schema)
        our_ids = dbdump.new_ids(our_changes, s.ours.schema)
        up_diff = dbdump.normalise(up_changes, s.up.schema, times=True, ids=up_ids,
                                   ignore=IGNORED)
        our_diff = dbdump.normalise(our_changes, s.ours.schema, times=True, ids=our_ids,
                                    ignore=IGNORED)
        verdicts.append(judge_rpc(case, envelope(up_answer, up_ids),
                                  envelope(our_answer, our_ids), up_diff, our_diff, s.facts,
                                  s.controls))
    # the force scheduler as both serve it (our configuration matches upstream's)
    up_fs = await treq.get(f"{s.upstream_root}api/v2/forceschedulers/{FORCE_NAME}")
    our_fs = await treq.get(f"{s.ours_root}api/v2/forceschedulers/{FORCE_NAME}")
    a, b = json.loads(await up_fs.content()), json.loads(await our_fs.content())
    same = dbdump.canon(a) == dbdump.canon(b)
    verdicts.append(Verdict(f"GET /forceschedulers/{FORCE_NAME} (the configuration)",
                            "identical" if same else "mismatch", [],
                            [] if same else [f"upstream: {short(a, 3000)}",
                                             f"ours:     {short(b, 3000)}"]))

    summary = report_lines("JSON-RPC", s.backend, verdicts, time.monotonic() - started,
                           RPC_RULES)
    path = write_report(tmp_path_factory, f"{s.backend} JSON-RPC",
                        summary + "\n\n" + report_details(verdicts))
    TERMINAL_SUMMARY.append(f"{summary}\n    (details: {path})")
    mismatches = [v for v in verdicts if v.verdict == "mismatch"]
    assert not mismatches, (f"{len(mismatches)} control calls differ from upstream's "
                            f"without a documented reason (see {path}):\n{summary}")


# ======================================================================================
# Part 2: update methods
# ======================================================================================

def ref(label: str, *path: Any) -> dict[str, Any]:
    return {"$ref": label, "path": list(path)}


BR = ref("bs", 1, "*")  #: the build request of the buildset ``bs``
BUILD = ref("build", 0)
STEP = ref("step", 0)

#: the sequence of update-method calls (``as``: a label for its result)
UPDATE_CALLS: list[dict[str, Any]] = [
    {"method": "masterActive", "args": {"name": "master1.example.org:/srv/buildbot/master",
                                        "masterid": MASTERID}},
    {"method": "findBuilderId", "args": {"name": "diff-builder"}, "as": "builder"},
    {"method": "findBuilderId", "args": {"name": "linux-py311"}},
    {"method": "updateBuilderInfo", "args": {
        "builderid": ref("builder"), "description": "from the differential",
        "description_format": "markdown", "description_html": "<p>from</p>",
        "projectid": 1, "tags": ["diff", "nightly"]}},
    {"method": "findWorkerId", "args": {"name": "diff-worker"}, "as": "worker"},
    {"method": "workerConnected", "args": {"workerid": ref("worker"), "masterid": MASTERID,
                                           "workerinfo": {"os": "linux", "cores": 4}}},
    {"method": "set_worker_paused", "args": {"workerid": ref("worker"), "paused": True,
                                             "pause_reason": "maintenance"}},
    {"method": "set_worker_paused", "args": {"workerid": ref("worker"), "paused": False}},
    {"method": "set_worker_graceful", "args": {"workerid": ref("worker"), "graceful": True}},
    {"method": "schedulerEnable", "args": {"schedulerid": 6, "v": True}},
    {"method": "schedulerEnable", "args": {"schedulerid": 1, "v": False}},
    {"method": "findSchedulerId", "args": {"name": "diff-scheduler"}, "as": "scheduler"},
    {"method": "addChange", "args": {
        "files": ["src/a.py", "docs/b.rst"], "comments": "fix the differential",
        "author": "Alice Lovelace <alice@example.org>", "committer": "Bob <bob@example.org>",
        "revision": "0123456789abcdef", "when_timestamp": 1_700_400_000, "branch": "main",
        "category": "bugfix", "revlink": "https://example.org/r/0123",
        "properties": {"ticket": 42}, "repository": "https://example.org/repo.git",
        "codebase": "", "project": "diff-project"}, "as": "change"},
    {"method": "addChange", "args": {
        "files": [], "comments": "second", "author": "Carol <carol@example.org>",
        "revision": "fedcba", "branch": "main", "repository": "https://example.org/repo.git",
        "codebase": "", "project": "diff-project"}, "as": "change2"},
    {"method": "addBuildset", "args": {
        "waited_for": False, "scheduler": "diff-scheduler",
        "sourcestamps": [{"branch": "main", "revision": "0123456789abcdef",
                          "repository": "https://example.org/repo.git", "codebase": "",
                          "project": "diff-project"}],
        "reason": "differential", "properties": {"prop": [1, "Scheduler"],
                                                 "other": ["x", "Force"]},
        "builderids": [ref("builder")], "external_idstring": "ext-1"}, "as": "bs"},
    {"method": "claimBuildRequests", "args": {"brids": [BR]}},
    {"method": "addBuild", "args": {"builderid": ref("builder"), "buildrequestid": BR,
                                    "workerid": ref("worker")}, "as": "build"},
    {"method": "generateNewBuildEvent", "args": {"buildid": BUILD}},
    {"method": "setBuildStateString", "args": {"buildid": BUILD, "state_string": "building"}},
    {"method": "setBuildProperties", "args": {"buildid": BUILD, "properties": {
        "x": [1, "test"], "y": ["text", "test"], "z": [[1, {"a": None}], "other"]}}},
    {"method": "setBuildProperties", "args": {"buildid": BUILD, "properties": {
        "x": [1, "test"], "y": ["changed", "test"]}}},
    {"method": "setBuildProperty", "args": {"buildid": BUILD, "name": "w", "value": 3.5,
                                            "source": "step"}},
    {"method": "addStep", "args": {"buildid": BUILD, "name": "compile"}, "as": "step"},
    {"method": "addStep", "args": {"buildid": BUILD, "name": "compile"}, "as": "step2"},
    {"method": "startStep", "args": {"stepid": STEP}},
    {"method": "set_step_locks_acquired_at", "args": {"stepid": STEP}},
    {"method": "setStepStateString", "args": {"stepid": STEP, "state_string": "compiling"}},
    {"method": "addStepURL", "args": {"stepid": STEP, "name": "report",
                                      "url": "https://example.org/report"}},
    {"method": "addStepURL", "args": {"stepid": STEP, "name": "report",
                                      "url": "https://example.org/report"}},
    {"method": "addLog", "args": {"stepid": STEP, "name": "stdio", "type": "s"}, "as": "log"},
    {"method": "addLog", "args": {"stepid": STEP, "name": "std io!", "type": "t"},
     "as": "log2"},
    {"method": "appendLog", "args": {"logid": ref("log"),
                                     "content": "ohello\neworld\nhheader\n"}},
    {"method": "appendLog", "args": {"logid": ref("log"), "content": "o" + "x" * 300 + "\n"}},
    {"method": "appendLog", "args": {"logid": ref("log2"), "content": "plain text\n"}},
    {"method": "finishLog", "args": {"logid": ref("log")}},
    {"method": "compressLog", "args": {"logid": ref("log")}},
    {"method": "addTestResultSet", "args": {
        "builderid": ref("builder"), "buildid": BUILD, "stepid": STEP,
        "description": "unit tests", "category": "pass_fail", "value_unit": "boolean"},
     "as": "trs"},
    {"method": "addTestResults", "args": {
        "builderid": ref("builder"), "test_result_setid": ref("trs"), "result_values": [
            {"test_name": "test_a", "value": "1"},
            {"test_name": "test_b", "test_code_path": "tests/b.py", "line": 12,
             "duration_ns": 1500, "value": "0"},
            {"test_code_path": "tests/c.py", "value": "1"}]}},
    {"method": "completeTestResultSet", "args": {"test_result_setid": ref("trs"),
                                                 "tests_passed": 2, "tests_failed": 1}},
    {"method": "setBuildData", "args": {"buildid": BUILD, "name": "coverage",
                                        "value": {"$bytes": "87%"}, "source": "cov"}},
    {"method": "setBuildData", "args": {"buildid": BUILD, "name": "coverage",
                                        "value": {"$bytes": "88%"}, "source": "cov"}},
    {"method": "finishStep", "args": {"stepid": STEP, "results": 0, "hidden": False}},
    {"method": "add_build_locks_duration", "args": {"buildid": BUILD, "duration_s": 3}},
    {"method": "finishBuild", "args": {"buildid": BUILD, "results": 2}},
    {"method": "completeBuildRequests", "args": {"brids": [BR], "results": 2}},
    {"method": "maybeBuildsetComplete", "args": {"bsid": ref("bs", 0)}},
    # a second buildset: claimed, unclaimed, then completed unclaimed
    {"method": "addBuildset", "args": {
        "waited_for": True, "scheduler": "diff-scheduler",
        "sourcestamps": [{"branch": "dev", "revision": None, "codebase": "other",
                          "repository": "", "project": ""},
                         {"branch": "main", "revision": "0123456789abcdef",
                          "repository": "https://example.org/repo.git", "codebase": "",
                          "project": "diff-project"}],
        "reason": "second", "builderids": [ref("builder"), 1], "priority": 3},
     "as": "bs2"},
    {"method": "claimBuildRequests", "args": {"brids": [ref("bs2", 1, "*")]}},
    {"method": "claimBuildRequests", "args": {"brids": [ref("bs2", 1, "*")]}},
    {"method": "unclaimBuildRequests", "args": {"brids": [ref("bs2", 1, "*")]}},
    {"method": "workerDisconnected", "args": {"workerid": ref("worker"),
                                              "masterid": MASTERID}},
    # change sources, projects, codebases, commits, branches, builder lists, workers
    {"method": "findChangeSourceId", "args": {"name": "diff-poller"}, "as": "cs"},
    {"method": "trySetChangeSourceMaster", "args": {"changesourceid": ref("cs"),
                                                    "masterid": 2}},
    {"method": "trySetChangeSourceMaster", "args": {"changesourceid": ref("cs"),
                                                    "masterid": MASTERID}},
    {"method": "find_project_id", "args": {"name": "diff-project"}, "as": "project"},
    {"method": "find_project_id", "args": {"name": "no-project", "auto_create": False}},
    {"method": "update_project_info", "args": {
        "projectid": ref("project"), "slug": "diff-project",
        "description": "from the differential", "description_format": None,
        "description_html": None}},
    {"method": "find_codebase_id", "args": {"projectid": ref("project"), "name": "main repo"},
     "as": "codebase"},
    {"method": "update_codebase_info", "args": {"codebaseid": ref("codebase"),
                                                "projectid": ref("project"),
                                                "slug": "main-repo"}},
    {"method": "add_commit", "args": {
        "codebaseid": ref("codebase"), "author": "Alice <alice@example.org>",
        "committer": None, "files": ["a.py"], "comments": "first",
        "when_timestamp": 1_700_400_000, "revision": "aaaa", "parent_commitid": None}},
    {"method": "update_branch", "args": {"codebaseid": ref("codebase"), "name": "main",
                                         "commitid": None, "last_timestamp": 1_700_400_001}},
    {"method": "updateBuilderList", "args": {"masterid": 2, "builderNames": [
        "linux-py311", "docs-windows-py311", "freebsd-py311", "docs-macos-py312",
        "diff-builder"]}},
    # (on SQLite upstream leaves the configured_workers rows of a removed builder_masters
    # row behind: SQLite does not enforce the schema's ON DELETE CASCADE there)
    {"method": "updateBuilderList", "args": {"masterid": 2, "builderNames": [
        "linux-py311", "docs-windows-py311", "freebsd-py311", "diff-builder"]},
     "only": "postgresql"},
    {"method": "workerConfigured", "args": {"workerid": ref("worker"), "masterid": 2,
                                            "builderids": [ref("builder"), 1]}},
    {"method": "workerMissing", "args": {"workerid": ref("worker"), "masterid": 2,
                                         "last_connection": "yesterday", "notify": True}},
    {"method": "deconfigureAllWorkersForMaster", "args": {"masterid": 2}},
    {"method": "expireMasters", "args": {}},
    # the end of a master: its running builds finished with RETRY, its claims released
    {"method": "masterStopped", "args": {"name": "master1.example.org:/srv/buildbot/master",
                                         "masterid": MASTERID}},
    {"method": "masterActive", "args": {"name": "master1.example.org:/srv/buildbot/master",
                                        "masterid": MASTERID}},
    # errors: missing entities and bad values ("bad": ours must refuse it). On
    # PostgreSQL upstream's addBuild and addStep take the foreign key violation for a
    # number or name taken and retry forever: SQLite only.
    {"method": "addBuild", "args": {"builderid": 99999, "buildrequestid": BR,
                                    "workerid": ref("worker")}, "bad": True, "only": "sqlite"},
    {"method": "addStep", "args": {"buildid": 99999, "name": "x"}, "bad": True,
     "only": "sqlite"},
    {"method": "finishBuild", "args": {"buildid": 99999, "results": 0}, "bad": True},
    {"method": "schedulerEnable", "args": {"schedulerid": 99999, "v": True}, "bad": True},
    {"method": "appendLog", "args": {"logid": ref("log2"), "content": "no newline"},
     "bad": True},
    {"method": "addBuildset", "args": {"waited_for": False, "sourcestamps": [],
                                       "builderids": [1]}, "bad": True},
    {"method": "completeBuildRequests", "args": {"brids": [BR], "results": 0}},
]


def sorted_inner(value: Any, name: str) -> Any:
    """``value`` with every list under the key ``name`` sorted (as JSON text)."""
    if isinstance(value, list):
        return [sorted_inner(v, name) for v in value]
    if isinstance(value, dict):
        return {k: sorted(v, key=dbdump.canon) if k == name and isinstance(v, list)
                else sorted_inner(v, name) for k, v in value.items()}
    return value


def _ssid_order(ss: Any) -> tuple[int, int]:
    ssid = ss.get("ssid") if isinstance(ss, dict) else None
    if isinstance(ssid, str) and "#" in ssid:  # a created one (named by IdNames)
        return (1, int(ssid.split("#")[1]))
    return (0, ssid if isinstance(ssid, int) else 0)


def sourcestamps_by_ssid(value: Any) -> Any:
    """``value`` with every ``sourcestamps`` list in ssid order."""
    if isinstance(value, list):
        return [sourcestamps_by_ssid(v) for v in value]
    if isinstance(value, dict):
        return {k: sorted(v, key=_ssid_order) if k == "sourcestamps" and isinstance(v, list)
                else sourcestamps_by_ssid(v) for k, v in value.items()}
    return value


def without_master_links(value: Any) -> Any:
    """``value`` without the ``link`` of embedded masters (only where it is the right
    link: anything else stays, to differ)."""
    if isinstance(value, list):
        return [without_master_links(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if (k == "master" and isinstance(v, dict) and v.get("link")
                    == f"{BASE_URL}api/v2/masters/{v.get('masterid')}"):
                v = {mk: mv for mk, mv in v.items() if mk != "link"}
            out[k] = without_master_links(v)
        return out
    return value


#: entity fields that hold the id of a row of a table
ID_FIELDS = {
    "stepid": "steps", "buildid": "builds", "logid": "logs", "bsid": "buildsets",
    "buildsetid": "buildsets", "buildrequestid": "buildrequests", "changeid": "changes",
    "ssid": "sourcestamps", "sourcestampid": "sourcestamps",
    "test_result_setid": "test_result_sets", "test_resultid": "test_results",
    "workerid": "workers", "builderid": "builders", "masterid": "masters",
    "claimed_by_masterid": "masters", "schedulerid": "schedulers", "projectid": "projects",
    "codebaseid": "codebases", "commitid": "codebase_commits",
    "branchid": "codebase_branches", "changesourceid": "changesources",
    "parent_changeids": "changes", "rebuilt_buildid": "builds", "parent_buildid": "builds",
}
#: routing key segments followed by an id of a table
KEY_SEGMENTS = {
    "builds": "builds", "steps": "steps", "logs": "logs", "buildsets": "buildsets",
    "buildrequests": "buildrequests", "changes": "changes", "workers": "workers",
    "builders": "builders", "masters": "masters", "schedulers": "schedulers",
    "test_result_sets": "test_result_sets", "projects": "projects",
    "codebases": "codebases", "commits": "codebase_commits", "branches": "codebase_branches",
}
#: the tables of the ids an update method returns (a list: by position)
RESULT_TABLES: dict[str, Any] = {
    "findBuilderId": "builders", "findWorkerId": "workers", "findSchedulerId": "schedulers",
    "addChange": "changes", "addLog": "logs", "addTestResultSet": "test_result_sets",
    "addStep": ["steps"], "addBuild": ["builds"], "addBuildset": ["buildsets", "brids"],
}


class IdNames:
    """Names for the rows one side created in a sequence of calls (``"<table>#<n>"``, n
    counted over the whole sequence), so that results and events compare whatever ids
    each database gave (a PostgreSQL sequence spends an id on a failed insert)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, Any], str] = {}
        self.counts: Counter[str] = Counter()

    def add(self, changes: dict[str, Any], schema: dbdump.Schema) -> None:
        for (table, i), name in sorted(dbdump.new_ids(changes, schema).items(),
                                       key=lambda kv: (kv[0][0], kv[0][1])):
            if table in dbdump.NAMED_BY:
                self.ids[(table, i)] = name
            else:
                self.counts[table] += 1
                self.ids[(table, i)] = f"{table}#{self.counts[table]}"

    def name(self, table: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.name(table, v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return self.ids.get((table, value), value)
        if isinstance(value, str) and value.isdigit():
            return self.ids.get((table, int(value)), value)
        return value

    def message(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.message(v) for v in value]
        if isinstance(value, dict):
            return {k: self.name(ID_FIELDS[k], v) if k in ID_FIELDS else self.message(v)
                    for k, v in value.items()}
        return value

    def key(self, key: str) -> str:
        parts = key.split("/")
        for n in range(1, len(parts)):
            if parts[n - 1] in KEY_SEGMENTS:
                parts[n] = str(self.name(KEY_SEGMENTS[parts[n - 1]], parts[n]))
        return "/".join(parts)

    def apply(self, method: str, item: dict[str, Any]) -> dict[str, Any]:
        """A call's result and events with the created ids named."""
        out = dict(item)
        out["events"] = [[self.key(k), self.message(m)] for k, m in item["events"]]
        tables, result = RESULT_TABLES.get(method), item["result"]
        if isinstance(tables, str):
            result = self.name(tables, result)
        elif isinstance(tables, list) and isinstance(result, list) and result:
            result = list(result)
            result[0] = self.name(tables[0], result[0])
            if len(tables) > 1 and len(result) > 1 and isinstance(result[1], dict):
                result[1] = {str(self.name("builders", k)): self.name("buildrequests", v)
                             for k, v in result[1].items()}
        out["result"] = result
        return out


def first_event_difference(up: list[Any], me: list[Any]) -> list[str]:
    """Where two lists of events first differ (for the report)."""
    for i, (a, b) in enumerate(zip(up, me, strict=False)):
        if dbdump.canon(a) != dbdump.canon(b):
            out = [f"first different event #{i}: upstream {a[0]}, ours {b[0]}",
                   f"    keys from there, upstream: {short([e[0] for e in up[i:]], 1200)}",
                   f"    keys from there, ours:     {short([e[0] for e in me[i:]], 1200)}"]
            if a[0] == b[0] and isinstance(a[1], dict) and isinstance(b[1], dict):
                keys = sorted(k for k in set(a[1]) | set(b[1])
                              if dbdump.canon(a[1].get(k)) != dbdump.canon(b[1].get(k)))
                out += [f"    {k}: upstream {short(a[1].get(k), 200)}, ours "
                        f"{short(b[1].get(k), 200)}" for k in keys]
            return out
    if len(up) != len(me):
        extra = up[len(me):] if len(up) > len(me) else me[len(up):]
        return [f"{len(up)} events upstream, {len(me)} ours; the extra ones: "
                f"{short([e[0] for e in extra], 800)}"]
    return []


def _canon_events(events: list[Any]) -> list[str]:
    return [dbdump.canon(e) for e in events]


async def run_ours(connector: DataConnector, side: Side,
                   calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events: list[list[Any]] = []
    mq = connector.mq
    assert isinstance(mq, SimpleMQ)
    publish = mq.produce

    def produce(routing_key: tuple[str, ...], message: Any) -> None:
        events.append(["/".join(routing_key), jsonable(copy.deepcopy(message))])
        publish(routing_key, message)

    mq.produce = produce  # type: ignore[method-assign,unused-ignore]
    labels: dict[str, Any] = {}
    out = []
    names = set(connector.updates.names())
    for c in calls:
        item: dict[str, Any] = {"result": None, "error": None}
        if c["method"] not in names:
            item["missing"] = True
            item["error"] = "AttributeError: no such update method"
        else:
            try:
                args = resolve(c.get("args", {}), labels)
                result = await getattr(connector.updates, c["method"])(**args)
                labels[c.get("as", "")] = result
                item["result"] = jsonable(result)
            except Exception as e:  # noqa: BLE001 - reported, the sequence goes on
                item["error"] = f"{type(e).__name__}: {e}"
        item["events"], events[:] = list(events), []
        item["dump"] = side.dump()
        out.append(item)
    return out


def run_upstream_updates(venv: Path, url: str, calls: list[dict[str, Any]],
                         tmp: Path) -> list[dict[str, Any]]:
    calls_path, out_path = tmp / "calls.json", tmp / "upstream-out.json"
    calls_path.write_text(json.dumps(calls))
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(HERE / "upstream_updates.py"), url,
         str(calls_path), str(out_path), str(NOW), str(MASTERID)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env=upstream_env(), cwd=tmp, check=False)
    if proc.returncode != 0:
        pytest.fail(f"upstream_updates.py exited {proc.returncode}:\n{proc.stderr[-3000:]}",
                    pytrace=False)
    result: list[dict[str, Any]] = json.loads(out_path.read_text())
    return result


def tags_by_name(diff: Any) -> Any:
    """A database difference with the ids of the tags it adds replaced by their names
    (and its added rows sorted), so that the order the tags were created in does not
    count."""
    if not isinstance(diff, dict) or "tags" not in diff:
        return diff
    names = {t["id"]: t["name"] for t in diff["tags"].get("added", [])}
    result = json.loads(json.dumps(diff))
    for table, column in (("tags", "id"), ("builders_tags", "tagid")):
        rows = (result.get(table) or {}).get("added")
        if rows:
            for row in rows:
                row[column] = names.get(row[column], row[column])
            rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return result


UPDATE_RULES = {r.name: r for r in [
    Rule("error-not-crash", "compatibility.rst: Update methods, clean errors",
         "upstream fails with a database error (or none); ours raises a data API error "
         "and writes nothing"),
    Rule("refuses-bad-arguments", "compatibility.rst: Update methods, clean errors",
         "upstream writes what it is given (no foreign key check on SQLite, nothing "
         "found to update) or fails deep inside; ours refuses with a data API error "
         "(NotFound, InvalidParams, BadRequest) and writes nothing"),
    Rule("master-link", "COMPAT.md Also: an embedded master carries a link",
         "an embedded master (schedulers, change sources) has its link, as GET answers "
         "it here; upstream's has none"),
    Rule("sourcestamps-by-ssid", "compatibility.rst (#31)",
         "embedded source stamps are by ssid ascending on every database (upstream: the "
         "order the database gives, on PostgreSQL the order given to addBuildset)"),
    Rule("worker-configured-on-order", "read differential's rule of that name",
         "upstream's configured_on comes in the database's order; compared as sets",),
    Rule("event-order", "resources.md 5: buildrequest new events are started without "
         "waiting", "the same events, in another order where upstream's is not defined"),
    Rule("property-name-key", "properties.py setBuildProperty (upstream bug)",
         "setBuildProperty's message names the property (upstream: the key \"name\")"),
    Rule("tags-created-concurrently", "upstream's db/builders.py updateBuilderInfo",
         "upstream creates a builder's new tags all at once (a DeferredList), so their ids "
         "come in whatever order its threads run; ours in the order given. Compared by "
         "name"),
    Rule("released-claims-announced", "masters.py finish_builds",
         "a stopped master's claims are given up with an unclaimed event each, so that "
         "clients see the requests waiting again (upstream deletes them silently, and "
         "only when the master stopped is its own)"),
]}


def judge_update(i: int, c: dict[str, Any], up: dict[str, Any], me: dict[str, Any],
                 up_diff: Any, our_diff: Any) -> Verdict:
    v = Verdict(f"#{i} {c['method']}({short(c.get('args', {}), 160)})", "identical")
    if me.get("missing"):
        v.verdict = "missing"
        return v
    up_ev, my_ev = _canon_events(up["events"]), _canon_events(me["events"])
    same_result = dbdump.canon(up["result"]) == dbdump.canon(me["result"])
    same_error = (up["error"] is None) == (me["error"] is None)
    if same_result and same_error and up_ev == my_ev and up_diff == our_diff:
        return v
    v.details += [f"upstream: result {short(up['result'])} error {up['error']}",
                  f"ours:     result {short(me['result'])} error {me['error']}"]
    if up_ev != my_ev:
        v.details += [f"upstream events: {short(up['events'], 2500)}",
                      f"ours events:     {short(me['events'], 2500)}"]
        v.details += first_event_difference(up["events"], me["events"])
    if up_diff != our_diff:
        v.details += [f"upstream db: {short(up_diff, 2500)}",
                      f"ours db:     {short(our_diff, 2500)}"]
    # rules
    if (up["error"] is not None and me["error"] is not None and not our_diff
            and not my_ev and not c.get("bad")):
        v.verdict, v.rules = "deviation", ["error-not-crash"]
        if up_diff or up_ev:
            v.details.insert(0, "(upstream wrote or published before failing)")
        return v
    if (c.get("bad") and me["error"] is not None and not our_diff and not my_ev
            and me["error"].split(":")[0] in ("NotFound", "InvalidParams", "BadRequest",
                                              "Conflict")):
        v.verdict, v.rules = "deviation", ["refuses-bad-arguments"]
        return v
    if (same_result and same_error and up_diff == our_diff and up_ev != my_ev
            and _canon_events(sorted_inner(up["events"], "configured_on"))
            == _canon_events(sorted_inner(me["events"], "configured_on"))):
        v.verdict, v.rules = "deviation", ["worker-configured-on-order"]
        return v
    if (same_result and same_error and up_diff == our_diff and up_ev != my_ev
            and _canon_events(sourcestamps_by_ssid(up["events"])) == my_ev
            and _canon_events(sourcestamps_by_ssid(me["events"])) == my_ev):
        v.verdict, v.rules = "deviation", ["sourcestamps-by-ssid"]
        return v
    if (c["method"] == "updateBuilderInfo" and same_result and same_error
            and up_ev == my_ev and up_diff != our_diff
            and tags_by_name(up_diff) == tags_by_name(our_diff)):
        v.verdict, v.rules = "deviation", ["tags-created-concurrently"]
        return v
    if (same_result and same_error and up_diff == our_diff and up_ev != my_ev
            and _canon_events(without_master_links(me["events"])) == up_ev):
        v.verdict, v.rules = "deviation", ["master-link"]
        return v
    if (same_result and same_error and up_diff == our_diff and up_ev != my_ev
            and sorted(up_ev) == sorted(my_ev) and c["method"] == "addBuildset"):
        v.verdict, v.rules = "deviation", ["event-order"]
        return v
    if (c["method"] in ("masterStopped", "expireMasters") and same_result and same_error
            and up_diff == our_diff and up_ev != my_ev):
        unclaimed = [e for e in me["events"] if str(e[0]).endswith("/unclaimed")]
        rest = [e for e in me["events"] if not str(e[0]).endswith("/unclaimed")]
        released = (our_diff.get("buildrequest_claims") or {}).get("removed")
        if unclaimed and released and _canon_events(rest) == up_ev:
            v.verdict, v.rules = "deviation", ["released-claims-announced"]
            return v
    if (c["method"] == "setBuildProperty" and same_result and same_error
            and up_diff == our_diff and len(up_ev) == len(my_ev) == 1):
        (k1, m1), (k2, m2) = up["events"][0], me["events"][0]
        name = c["args"]["name"]
        if k1 == k2 and m1 == {"name": m2.get(name)} and list(m2) == [name]:
            v.verdict, v.rules = "deviation", ["property-name-key"]
            return v
    v.verdict = "mismatch"
    return v


@pytest.mark.upstream
@pytest_twisted.ensureDeferred
async def test_same_updates_as_upstream(pristine: Pristine, upstream_venv: Path,
                                        tmp_path: Path,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    started = time.monotonic()
    calls = [c for c in UPDATE_CALLS if c.get("only", pristine.backend) == pristine.backend]
    url_up = pristine.copies.copy(pristine.url)
    url_ours = pristine.copies.copy(pristine.url)
    up_side, our_side = Side(url_up), Side(url_ours)
    try:
        up_start = up_side.dump()
        upstream = await threads.deferToThread(run_upstream_updates, upstream_venv, url_up,
                                               calls, tmp_path)
        db = Database(url_ours, pool_size=2)
        db.prepare_sync(create=False)
        db.start()
        try:
            connector = DataConnector(db, config=Config(db_url=url_ours, port=None),
                                      base_url=BASE_URL, mq=SimpleMQ())
            connector.clock = lambda: NOW
            connector.masterid = MASTERID
            ours = await run_ours(connector, our_side, calls)
        finally:
            db.stop()
            db.engine.dispose()
        our_start = up_start  # the copies are the same before the calls
        verdicts = []
        up_prev, our_prev = up_start, our_start
        up_names, our_names = IdNames(), IdNames()
        for i, (c, up, me) in enumerate(zip(calls, upstream, ours, strict=True), 1):
            up_changes = dbdump.diff(up_prev, up["dump"], up_side.schema)
            our_changes = dbdump.diff(our_prev, me["dump"], our_side.schema)
            up_prev, our_prev = up["dump"], me["dump"]
            up_names.add(up_changes, up_side.schema)
            our_names.add(our_changes, our_side.schema)
            up_diff = dbdump.normalise(up_changes, up_side.schema, ids=up_names.ids)
            our_diff = dbdump.normalise(our_changes, our_side.schema, ids=our_names.ids)
            verdicts.append(judge_update(i, c, up_names.apply(c["method"], up),
                                         our_names.apply(c["method"], me), up_diff, our_diff))
    finally:
        up_side.close()
        our_side.close()

    summary = report_lines("update methods", pristine.backend, verdicts,
                           time.monotonic() - started, UPDATE_RULES)
    path = write_report(tmp_path_factory, f"{pristine.backend} update methods",
                        summary + "\n\n" + report_details(verdicts))
    TERMINAL_SUMMARY.append(f"{summary}\n    (details: {path})")
    mismatches = [v for v in verdicts if v.verdict in ("mismatch", "missing")]
    assert not mismatches, (f"{len(mismatches)} update-method calls differ from upstream's "
                            f"(see {path}):\n{summary}")


# -- the judges themselves ---------------------------------------------------------------

def test_normalise_names_new_ids() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY, t INTEGER)")
        conn.exec_driver_sql("CREATE TABLE c (id INTEGER PRIMARY KEY, "
                             "pid INTEGER REFERENCES p(id), submitted_at INTEGER)")
        conn.exec_driver_sql("INSERT INTO p VALUES (1, 0)")
    schema = dbdump.Schema(engine)
    before = dbdump.dump(engine, schema)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO p VALUES (7, 0)")
        conn.exec_driver_sql("INSERT INTO c VALUES (3, 7, 123)")
        conn.exec_driver_sql("INSERT INTO c VALUES (4, 1, 124)")
        conn.exec_driver_sql("UPDATE p SET t = 5 WHERE id = 1")
    changes = dbdump.diff(before, dbdump.dump(engine, schema), schema)
    assert dbdump.normalise(changes, schema, times=True) == {
        "c": {"added": [{"id": "c#1", "pid": "p#1", "submitted_at": "T"},
                        {"id": "c#2", "pid": 1, "submitted_at": "T"}]},
        "p": {"added": [{"id": "p#1", "t": 0}],
              "changed": [{"key": {"id": 1}, "before": {"t": 0}, "after": {"t": 5}}]},
    }
    engine.dispose()


def test_judge_rpc_rules() -> None:
    case = RpcCase("x", "builds/1", call("Stop"), rules=("case-sensitive-actions",),
                   ours=(501, -32601))
    up = {"status": 200, "id": 1, "result": None}
    good = {"status": 501, "id": 1, "code": -32601, "message": "m"}
    assert judge_rpc(case, up, good, {}, {}, {}).verdict == "deviation"
    assert judge_rpc(case, up, {**good, "status": 200}, {}, {}, {}).verdict == "mismatch"
    assert judge_rpc(case, up, good, {}, {"builds": {}}, {}).verdict == "mismatch"
    plain = RpcCase("y", "builds/1", call("stop"))
    assert judge_rpc(plain, up, up, {}, {}, {}).verdict == "identical"
    assert judge_rpc(plain, up, good, {}, {}, {}).verdict == "mismatch"


def test_judge_update_rules() -> None:
    def item(result: Any = None, error: str | None = None,
             events: list[Any] | None = None) -> dict[str, Any]:
        return {"result": result, "error": error, "events": events or []}

    bad = {"method": "addStep", "args": {"buildid": 9, "name": "x"}, "bad": True}
    wrote = {"steps": {"added": [{"id": "steps#1"}]}}
    assert judge_update(1, bad, item([1, 0, "x"]), item(error="NotFound: no build 9"),
                        wrote, {}).verdict == "deviation"
    # refusing is not enough when ours wrote anyway, or failed some other way
    assert judge_update(1, bad, item([1, 0, "x"]), item(error="NotFound: no build 9"),
                        wrote, wrote).verdict == "mismatch"
    assert judge_update(1, bad, item([1, 0, "x"]), item(error="IntegrityError: x"),
                        wrote, {}).verdict == "mismatch"
    master = {"masterid": 1, "name": "m", "active": True}
    linked = {**master, "link": f"{BASE_URL}api/v2/masters/1"}
    enable = {"method": "schedulerEnable", "args": {"schedulerid": 1, "v": True}}
    up = item(events=[["schedulers/1/updated", {"schedulerid": 1, "master": master}]])
    ours = item(events=[["schedulers/1/updated", {"schedulerid": 1, "master": linked}]])
    assert judge_update(1, enable, up, ours, {}, {}).rules == ["master-link"]
    wrong = item(events=[["schedulers/1/updated", {"schedulers": 1, "master": {
        **master, "link": f"{BASE_URL}api/v2/masters/2"}}]])
    assert judge_update(1, enable, up, wrong, {}, {}).verdict == "mismatch"
    missing = {"method": "nosuch", "args": {}}
    assert judge_update(1, missing, item(), {**item(), "missing": True}, {}, {}
                        ).verdict == "missing"


def test_id_names_follow_each_side() -> None:
    names = IdNames()
    names.ids = {("steps", 172): "steps#2", ("builds", 31): "builds#1"}
    out = names.apply("addStep", {"result": [172, 1, "c"], "events": [
        ["builds/31/steps/172/new", {"stepid": 172, "buildid": 31, "number": 1}]]})
    assert out["result"] == ["steps#2", 1, "c"]
    assert out["events"] == [["builds/builds#1/steps/steps#2/new",
                              {"stepid": "steps#2", "buildid": "builds#1", "number": 1}]]
