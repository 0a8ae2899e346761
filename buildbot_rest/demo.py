# -*- test-case-name: tests.test_demo -*-
"""Deterministic demo, test and benchmark data, written the way upstream Buildbot 4.3.0
writes its rows.

:func:`populate` fills an empty database (schema already created) with masters, builders,
workers, changes, buildsets, build requests, builds, steps, logs and test results. The same
seed gives the same rows, byte for byte, on every backend. It is one module on purpose: the
generator is a single pass whose parts share its state (ids, clocks, the random stream).

Rows are buffered as tuples in schema column order and written in batches, parents before
children, so foreign keys hold at every statement.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import functools
import io
import itertools
import json
import random
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from buildbot_rest.db import schema
from buildbot_rest.db.hashes import name_hash, ss_hash
from buildbot_rest.db.logchunks import RAW, ZSTD, compress

Progress = Callable[[str, int, int], None]
_Src = tuple[str | None, str | None]  # (branch, revision) of a build's first sourcestamp

#: The clock of generated data starts here (2023-11-14T22:13:20Z); nothing reads now().
EPOCH = 1_700_000_000

#: the most bytes of text (newlines counted) in one log chunk, as upstream's appendLog
MAX_CHUNK_SIZE = 65536

SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED = range(7)
_RESULT_NAMES = ("success", "warnings", "failure", "skipped", "exception", "retry",
                 "cancelled")
# worst_status ranks; SKIPPED counts as better than SUCCESS.
_RANK = {SKIPPED: 0, SUCCESS: 1, WARNINGS: 2, FAILURE: 3, EXCEPTION: 4, RETRY: 5,
         CANCELLED: 6}
# Cumulative frequencies of build results.
_RESULT_CDF = ((0.70, SUCCESS), (0.78, WARNINGS), (0.915, FAILURE), (0.925, SKIPPED),
               (0.955, EXCEPTION), (0.975, RETRY), (1.0, CANCELLED))


def _chunk(lines: list[bytes], code: int, first: int) -> tuple[int, int, bytes, int]:
    """One logchunks row (first_line, last_line, content, compressed) for whole lines
    without their newlines; the codec is kept only if it makes the chunk smaller."""
    raw = b"\n".join(lines)
    packed = compress(code, raw)
    if len(packed) >= len(raw):
        packed, code = raw, RAW
    return first, first + len(lines) - 1, packed, code


def split_chunks(lines: list[bytes], code: int, first: int = 0
                 ) -> Iterator[tuple[int, int, bytes, int]]:
    """Chunk rows for ``lines`` the way upstream's appendLog cuts them: whole lines, at most
    65536 bytes counting newlines."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        n = len(line) + 1
        if batch and size + n > MAX_CHUNK_SIZE:
            yield _chunk(batch, code, first)
            first += len(batch)
            batch, size = [], 0
        batch.append(line[:MAX_CHUNK_SIZE - 1])
        size += n
    if batch:
        yield _chunk(batch, code, first)


# -- fixed vocabulary ------------------------------------------------------------------

_PEOPLE = [("Alice Lovelace", "alice"), ("Bob Hopper", "bob"), ("Carol Shannon", "carol"),
           ("Dan Ritchie", "dan"), ("Eve Turing", "eve"), ("Frank Liskov", "frank"),
           ("Grace Knuth", "grace"), ("Heidi Dijkstra", "heidi")]
_AUTHORS = [f"{n} <{u}@example.org>" for n, u in _PEOPLE]
_PLATFORMS = ["linux", "macos", "windows", "freebsd"]
_FLAVORS = ["py311", "py312", "py310", "py313", "py39", "pypy3"]
_VARIANTS = ["", "-pg", "-mysql", "-coverage", "-asan", "-minimal", "-release", "-arm64"]
_MODULES = ["core", "api", "db", "www", "util", "config", "auth", "cache", "render", "net"]
_SUBJECTS = ["fix race in {m} shutdown", "add {m} option for timeouts", "refactor {m} loader",
             "speed up {m} queries", "document {m} settings", "drop deprecated {m} helper",
             "handle unicode in {m}", "test {m} edge cases", "bump {m} dependency"]
_BRANCHES = ["main"] * 6 + ["release/4.2", "release/4.3", "feature/async-db"]

# (project name, slug, change-project string, [(codebase, repository)])
_PROJECTS = [
    ("Widgets", "widgets", "widgets", [("", "https://github.com/example/widgets.git")]),
    ("Gizmo Server", "gizmo-server", "gizmo",
     [("app", "https://git.example.org/gizmo/app.git"),
      ("lib", "https://git.example.org/gizmo/lib.git")]),
    ("Documentation", "docs", "docs", [("", "https://github.com/example/docs.git")]),
]

# (name, class, enabled, masterid or None)
_SCHEDULERS = [("all", "basic.AnyBranchScheduler", 1, 1), ("nightly", "timed.Nightly", 1, 1),
               ("force", "forcesched.ForceScheduler", 1, 2),
               ("try", "trysched.Try_Userpass", 1, 2),
               ("release-triggered", "triggerable.Triggerable", 1, 1),
               ("weekly-legacy", "timed.Periodic", 0, None)]
# (kind, cumulative weight, scheduler)
_BUILDSET_KINDS = [("change", 0.60, "all"), ("nightly", 0.68, "nightly"),
                   ("force", 0.78, "force"), ("try", 0.88, "try"),
                   ("triggered", 0.95, "release-triggered"), ("rebuild", 1.0, "rebuild")]

# step kind -> (name, running description, shell command or None)
_STEPS = {
    "prep": ("worker_preparation", "preparing worker", None),
    "git": ("git", "updating", None),
    "install": ("install", "installing", "pip install -e .[test]"),
    "compile": ("compile", "compiling", "make -j4 all"),
    "docs": ("build docs", "building docs", "make -C docs html"),
    "test": ("test", "testing", "python -m pytest -q tests"),
    "props": ("set properties", "setting", None),
    "upload": ("upload", "uploading", "rsync -a dist/ upload@files.example.org:/srv/dl/"),
}

# kind -> (name, running text, summary per result code, typical duration, has a stdio log)
_STEP_KINDS = {
    kind: (name, running,
           [base if r == SUCCESS else f"{base} ({_RESULT_NAMES[r]})" for r in range(7)],
           {"prep": 1, "git": 8, "install": 40, "compile": 200, "docs": 90, "test": 400,
            "props": 0, "upload": 15}[kind],
           cmd is not None or kind == "git")
    for kind, (name, running, cmd) in _STEPS.items()
    for base in [{"prep": "worker ready", "git": "update", "props": "Set"}.get(kind, f"'{cmd}'")]
}
_BUILD_TEXT = {FAILURE: "failed", EXCEPTION: "exception", RETRY: "retry",
               CANCELLED: "cancelled"}


@functools.lru_cache(maxsize=4096)
def _jstr(value: str | None) -> str:
    """json.dumps of a (repeated) string."""
    return json.dumps(value)


@dataclass
class _Builder:
    id: int
    name: str
    platform: str
    project: int  # index in _PROJECTS, for scheduling
    recipe: list[str]
    masterids: list[int]
    workerids: list[int] = field(default_factory=list)
    number: int = 0
    test_names: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jname = json.dumps(self.name)
        self.jproject = json.dumps(_PROJECTS[self.project][2])
        self.jrepository = json.dumps(_PROJECTS[self.project][3][0][1])


class _Writer:
    """Buffers rows per table and writes them in batches, parents first."""

    def __init__(self, conn: sa.Connection, batch: int) -> None:
        self.conn = conn
        self.batch = batch
        self.order = [t for t in schema.metadata.sorted_tables]
        self.rows: dict[str, list[tuple]] = {t.name: [] for t in self.order}
        self.counts: dict[str, int] = {t.name: 0 for t in self.order}
        self.sqlite = conn.dialect.name == "sqlite"
        self.copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
        self.sql: dict[str, str] = {}
        for t in self.order:
            cols = [c.name for c in t.columns]
            self.sql[t.name] = (f"INSERT INTO {t.name} ({', '.join(cols)}) "
                                f"VALUES ({', '.join('?' * len(cols))})")

    def add(self, table: str, row: tuple) -> None:
        self.rows[table].append(row)

    def row(self, table: str, **values: Any) -> None:
        """Add a row given by column name; missing columns are NULL."""
        self.add(table, tuple(values.get(c.name) for c in schema.metadata.tables[table].c))

    def full(self) -> bool:
        return sum(map(len, self.rows.values())) >= self.batch

    def flush(self) -> None:
        for table in self.order:
            rows = self.rows[table.name]
            if not rows:
                continue
            if self.sqlite:
                # The DB-API's executemany with tuples: no per-row work in SQLAlchemy.
                self.conn.exec_driver_sql(self.sql[table.name], rows)
            elif self.copy:
                self._copy(table, rows)
            else:
                names = [c.name for c in table.columns]
                self.conn.execute(table.insert(), [dict(zip(names, r, strict=True)) for r in rows])
            self.counts[table.name] += len(rows)
            rows.clear()  # in place: the generator holds on to these lists
        self.conn.commit()

    def _copy(self, table: sa.Table, rows: list[tuple]) -> None:
        """COPY the rows in, in PostgreSQL's text format."""
        buf = io.StringIO("".join("\t".join(map(_copy_field, row)) + "\n" for row in rows))
        cols = ", ".join(c.name for c in table.columns)
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(f"COPY {table.name} ({cols}) FROM STDIN", buf)
        finally:
            cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()  # bytea's hex input, its backslash escaped
    return str(value)


class _LogBank:
    """Log bodies drawn from a pool of templates, compressed once per codec.

    Logs repeat across builds (as real ones mostly do); the pool grows with the data set so
    small data sets still show many different logs."""

    def __init__(self, seed: int, variants: int) -> None:
        self.rng = random.Random(seed * 7919 + 17)
        self.variants = variants
        self.lines: dict[tuple[str, bool, int], list[bytes]] = {}
        self.chunks: dict[tuple[str, bool, int, int], list[tuple[int, int, bytes, int]]] = {}

    def get(self, kind: str, ok: bool, variant: int, code: int
            ) -> list[tuple[int, int, bytes, int]]:
        key = (kind, ok, variant % self.variants, code)
        chunks = self.chunks.get(key)
        if chunks is None:
            lines = self._lines(kind, ok, key[2])
            # Upstream appends while the command runs: one chunk per append, here 1 to 3.
            parts = 1 if len(lines) < 12 or key[2] % 3 else 2
            step = -(-len(lines) // parts)
            chunks = []
            for start in range(0, len(lines), step):
                chunks.extend(split_chunks(lines[start:start + step], code, start))
            self.chunks[key] = chunks
        return chunks

    def _lines(self, kind: str, ok: bool, variant: int) -> list[bytes]:
        key = (kind, ok, variant)
        if key not in self.lines:
            text = getattr(self, "_" + kind)(self.rng, ok)
            self.lines[key] = [s.encode("utf-8") for s in text]
        return self.lines[key]

    # The templates.  Stdio lines carry their stream: o(ut), e(rr), h(eader).

    @staticmethod
    def _header(cmd: str) -> list[str]:
        argv = repr(cmd.split())
        return [f"h{cmd}", "h in dir /home/buildbot/worker/build (timeout 1200 secs)",
                "h watching logfiles {}", f"h argv: {argv}", "h environment:",
                "h  HOME=/home/buildbot", "h  LANG=C.UTF-8",
                "h  PATH=/usr/local/bin:/usr/bin:/bin",
                "h  PWD=/home/buildbot/worker/build", "h using PTY: False"]

    @staticmethod
    def _footer(rng: random.Random, code: int) -> list[str]:
        return [f"hprogram finished with exit code {code}",
                f"helapsedTime={rng.uniform(0.2, 600):.6f}"]

    def _git(self, rng: random.Random, ok: bool) -> list[str]:
        rev = f"{rng.getrandbits(160):040x}"
        out = self._header("git fetch -t origin +refs/heads/main")
        out += ["eFrom https://github.com/example/widgets",
                "e * branch            main       -> FETCH_HEAD"]
        out += self._footer(rng, 0 if ok else 128)
        if ok:
            out += self._header(f"git checkout -f {rev}")
            out += [f"eHEAD is now at {rev[:7]} {rng.choice(_SUBJECTS).format(m='core')}"]
            out += self._footer(rng, 0)
        else:
            out.append("efatal: unable to access 'https://github.com/example/widgets/': "
                       "Could not resolve host: github.com")
        return out

    def _install(self, rng: random.Random, ok: bool) -> list[str]:
        out = self._header(_STEPS["install"][2] or "")
        pkgs = rng.sample(["attrs", "twisted", "sqlalchemy", "pytest", "mock", "lz4",
                           "zstandard", "klein", "treq", "jinja2", "pyyaml", "idna"], 6)
        for p in pkgs:
            version = f"{rng.randint(1, 24)}.{rng.randint(0, 9)}"
            out.append(f"oCollecting {p}>={version}")
            out.append(f"o  Using cached {p}-{version}.0-py3-none-any.whl")
        if ok:
            out.append("oSuccessfully installed " + " ".join(pkgs))
        else:
            out.append("eERROR: Could not find a version that satisfies the requirement "
                       f"{pkgs[0]}")
        return out + self._footer(rng, 0 if ok else 1)

    def _compile(self, rng: random.Random, ok: bool) -> list[str]:
        out = self._header(_STEPS["compile"][2] or "")
        for m in rng.sample(_MODULES, rng.randint(4, 10)):
            out.append(f"ogcc -O2 -Wall -c src/{m}.c -o build/{m}.o")
            if rng.random() < 0.3:
                out.append(f"esrc/{m}.c:{rng.randint(10, 900)}:{rng.randint(1, 40)}: warning: "
                           f"unused variable 'tmp{rng.randint(0, 9)}' [-Wunused-variable]")
        if ok:
            out.append("ogcc -o build/widgets build/*.o -lm")
        else:
            m = rng.choice(_MODULES)
            out.append(f"esrc/{m}.c:{rng.randint(10, 900)}:5: error: expected ';' before '}}'")
            out.append("emake: *** [Makefile:12: build] Error 1")
        return out + self._footer(rng, 0 if ok else 2)

    def _docs(self, rng: random.Random, ok: bool) -> list[str]:
        out = self._header(_STEPS["docs"][2] or "")
        out += ["oRunning Sphinx v7.2.6", "oloading pickled environment... done"]
        pages = rng.sample(_MODULES, rng.randint(3, 8))
        out += [f"oreading sources... [{100 * (i + 1) // len(pages):3d}%] {p}"
                for i, p in enumerate(pages)]
        if ok:
            out.append("obuild succeeded.")
        else:
            out.append(f"e/docs/{pages[0]}.rst:12: ERROR: Unknown directive type \"foo\".")
        return out + self._footer(rng, 0 if ok else 2)

    def _test(self, rng: random.Random, ok: bool) -> list[str]:
        out = self._header(_STEPS["test"][2] or "")
        out.append(f"o{' test session starts ':=^80}")
        failed = 0
        for m in rng.sample(_MODULES, rng.randint(5, 10)):
            marks = "".join("F" if not ok and rng.random() < 0.1 else "."
                            for _ in range(rng.randint(5, 40)))
            failed += marks.count("F")
            out.append(f"otests/test_{m}.py {marks}")
        if not ok and not failed:
            failed = 1
            out.append("otests/test_core.py F")
        elapsed = rng.uniform(1, 300)
        if ok:
            out.append(f"o{f' {rng.randint(50, 400)} passed in {elapsed:.2f}s ':=^80}")
        else:
            tally = f" {failed} failed, {rng.randint(50, 400)} passed in {elapsed:.2f}s "
            out += [f"o{' FAILURES ':=^80}", "eAssertionError: assert 2 == 3",
                    f"o{tally:=^80}"]
        return out + self._footer(rng, 0 if ok else 1)

    def _upload(self, rng: random.Random, ok: bool) -> list[str]:
        out = self._header(_STEPS["upload"][2] or "")
        out += [f"odist/widgets-4.3.{i}.tar.gz" for i in range(rng.randint(1, 4))]
        return out + self._footer(rng, 0 if ok else 23)

    def _warnings(self, rng: random.Random, ok: bool) -> list[str]:
        return [f"src/{m}.c:{rng.randint(10, 900)}:{rng.randint(1, 40)}: warning: "
                f"comparison of integers of different signs [-Wsign-compare]"
                for m in rng.choices(_MODULES, k=rng.randint(3, 30))]

    def _report(self, rng: random.Random, ok: bool) -> list[str]:
        rows = [f"<tr><td>tests/test_{m}.py</td><td>{rng.randint(5, 60)}</td></tr>"
                for m in rng.sample(_MODULES, 5)]
        return ["<html><head><title>Test report</title></head><body>",
                "<table><tr><th>module</th><th>tests</th></tr>", *rows,
                "</table></body></html>"]

    def _traceback(self, rng: random.Random, ok: bool) -> list[str]:
        return ["Traceback (most recent call last):",
                '  File "buildbot/process/buildstep.py", line 723, in startStep',
                "    self.results = await self.run()",
                '  File "buildbot/process/remotecommand.py", line 198, in _finished',
                "    raise failure",
                ("twisted.spread.pb.PBConnectionLost: [Failure instance: Traceback "
                 "(failure with no frames): <class 'twisted.internet.error.ConnectionLost'>]")]


def _slug(name: str) -> str:
    """upstream's forceIdentifier(50, name)."""
    s = name[:50]
    out = [c if (c.isascii() and (c.isalnum() or c in "_-")) else "_" for c in s]
    if out and out[0].isdigit():
        out[0] = "_"
    return "".join(out)


_SLUGS = {name: _slug(name) for name in ("stdio", "warnings", "err.text", "report.html")}


class _Generator:
    def __init__(self, w: _Writer, *, builds: int, seed: int, progress: Progress | None,
                 big_log_bytes: int, big_log_codec: int) -> None:
        self.w = w
        self.rng = random.Random(seed)
        self.total = builds
        self.progress = progress
        self.big_log_bytes = big_log_bytes
        self.big_log_codec = big_log_codec
        self.logs = _LogBank(seed, variants=min(128, max(12, builds // 20)))
        self.now = self.latest = EPOCH
        self.ids: dict[str, int] = {}
        self.nbuilds = 0
        self.flushed_buildid = 0
        self.buildid = self.stepid = self.logid = 0
        rows = w.rows
        self.r_builds = rows["builds"]
        self.r_props = rows["build_properties"]
        self.r_steps = rows["steps"]
        self.r_logs = rows["logs"]
        self.r_chunks = rows["logchunks"]
        self.running_from = builds - max(1, builds // 250)
        # completed builds that buildsets may point to: (buildid, builder, ssids, src)
        self.recent: deque[tuple[int, _Builder, list[int], _Src]] = deque(maxlen=200)
        self.ss_ids: dict[str, int] = {}
        self.latest_ss: dict[tuple[int, str], int] = {}
        self.last_change: dict[tuple, int] = {}
        self.last_commit: dict[int, tuple[int, int]] = {}
        self.codebase_ids: dict[str, int] = {}
        self.users: dict[str, int] = {}

    def next_id(self, table: str) -> int:
        n = self.ids.get(table, 0) + 1
        self.ids[table] = n
        return n

    def maybe_flush(self, force: bool = False) -> None:
        if force or self.w.full():
            self.w.flush()
            self.flushed_buildid = self.buildid
            if self.progress:
                self.progress("builds", self.nbuilds, self.total)

    # -- the whole run ------------------------------------------------------------------

    def run(self) -> None:
        self.static()
        self.maybe_flush(force=True)
        while self.nbuilds < self.total:
            self.buildset()
            self.maybe_flush()
        # Requests still waiting for a worker.
        for _ in range(max(1, self.total // 500)):
            self.buildset(pending=True)
        self.finish()
        self.maybe_flush(force=True)
        if self.big_log_bytes > 0:
            self.big_log()

    # -- configuration-like tables -------------------------------------------------------

    def static(self) -> None:
        w, rng = self.w, self.rng
        for i in (1, 2):
            name = f"master{i}.example.org:/srv/buildbot/master"
            w.row("masters", id=i, name=name, name_hash=name_hash(name), active=1,
                  last_active=EPOCH)
        for name, user in _PEOPLE[:5]:
            uid = self.next_id("users")
            email = f"{user}@example.org"
            self.users[f"{name} <{email}>"] = uid
            w.row("users", uid=uid, identifier=email,
                  bb_username=user if uid <= 3 else None,
                  bb_password=f"pbkdf2:{rng.getrandbits(64):016x}" if uid <= 2 else None)
            w.row("users_info", uid=uid, attr_type="git", attr_data=f"{name} <{email}>")
            w.row("users_info", uid=uid, attr_type="email", attr_data=email)
        for p, (pname, slug, _, codebases) in enumerate(_PROJECTS, start=1):
            desc = fmt = html = None
            if p == 1:
                desc = "The **Widgets** library: widgets for every occasion."
                fmt = "markdown"
                html = "<p>The <strong>Widgets</strong> library: widgets for every occasion.</p>"
            elif p == 2:
                desc = "Gizmo server, built from its app and lib repositories."
            w.row("projects", id=p, name=pname, name_hash=name_hash(pname), slug=slug,
                  description=desc, description_format=fmt, description_html=html)
            for cb, _repo in codebases:
                if cb:
                    cbid = self.next_id("codebases")
                    self.codebase_ids[cb] = cbid
                    w.row("codebases", id=cbid, projectid=p, name=cb, name_hash=name_hash(cb),
                          slug=cb)
        for sid, (name, cls, enabled, masterid) in enumerate(_SCHEDULERS, start=1):
            w.row("schedulers", id=sid, name=name, name_hash=name_hash(name), enabled=enabled)
            if masterid:
                w.row("scheduler_masters", schedulerid=sid, masterid=masterid)
            w.row("objects", id=sid, name=name, class_name=f"buildbot.schedulers.{cls}")
            if cls == "timed.Nightly":
                w.row("object_state", objectid=sid, name="last_build",
                      value_json=json.dumps(EPOCH))
        repos = [repo for _, _, _, cbs in _PROJECTS for _, repo in cbs]
        for cid, repo in enumerate(repos, start=1):
            name = f"GitPoller:{repo}"
            w.row("changesources", id=cid, name=name, name_hash=name_hash(name))
            if cid <= 3:
                w.row("changesource_masters", changesourceid=cid, masterid=1 + cid % 2)
        self.builders_and_workers()

    def builders_and_workers(self) -> None:
        w, rng = self.w, self.rng
        nb = max(6, round(self.total / 100))
        tags: dict[str, int] = {}
        self.builders: list[_Builder] = []
        self.by_project: list[list[_Builder]] = [[] for _ in _PROJECTS]
        for i in range(nb):
            platform = _PLATFORMS[i % 4]
            flavor = _FLAVORS[(i // 4) % 6]
            v = i // 24
            variant = _VARIANTS[v] if v < len(_VARIANTS) else f"-shard{v}"
            project = i % 3
            if project == 2:
                name = f"docs-{platform}-{flavor}{variant}"
                recipe = ["prep", "git", "install", "docs", "upload"]
            else:
                name = f"{platform}-{flavor}{variant}"
                recipe = ["prep", "git", "install", "compile", "test"]
                if i % 3 == 0:
                    recipe += ["props", "upload"]
            masterids = [[1, 2], [1], [2]][i % 3]
            b = _Builder(i + 1, name, platform, project, recipe, masterids)
            desc = fmt = html = None
            if i == 0:
                desc, fmt = f"Tests on **{platform}** with `{flavor}`.", "markdown"
                html = f"<p>Tests on <strong>{platform}</strong> with <code>{flavor}</code>.</p>"
            elif i % 4 == 1:
                desc = f"Runs the {_PROJECTS[project][0]} checks on {platform} ({flavor})."
            w.row("builders", id=b.id, name=name, description=desc, description_format=fmt,
                  description_html=html, projectid=None if i % 7 == 5 else project + 1,
                  name_hash=name_hash(name))
            for tag in [platform, flavor, variant.lstrip("-")]:
                if not tag:
                    continue
                if tag not in tags:
                    tags[tag] = len(tags) + 1
                    w.row("tags", id=tags[tag], name=tag, name_hash=name_hash(tag))
                w.row("builders_tags", id=self.next_id("builders_tags"), builderid=b.id,
                      tagid=tags[tag])
            self.builders.append(b)
            self.by_project[project].append(b)

        nw = max(6, nb // 3)
        self.worker_jnames: dict[int, str] = {}
        pools: dict[str, list[int]] = {p: [] for p in _PLATFORMS}
        for j in range(nw):
            platform = _PLATFORMS[j % 4]
            wid = j + 1
            name = f"{platform}-worker-{j // 4 + 1:02d}"
            self.worker_jnames[wid] = json.dumps(name)
            pools[platform].append(wid)
            info = {"admin": "Buildbot admins <buildbot@example.org>",
                    "host": f"{name}.example.org", "os": platform,
                    "basedir": "C:\\buildbot" if platform == "windows" else "/home/buildbot",
                    "version": "4.3.0"}
            paused = int(j % 5 == 3)
            w.row("workers", id=wid, name=name, info=json.dumps(info, sort_keys=True),
                  paused=paused, pause_reason="maintenance window" if paused and j % 2 else None,
                  graceful=int(j % 11 == 4))
            if j % 7 != 6:
                w.row("connected_workers", id=self.next_id("connected_workers"),
                      masterid=1 + j % 2, workerid=wid)
        for b in self.builders:
            pool = pools[b.platform]
            b.workerids = sorted(rng.sample(pool, min(len(pool), rng.randint(2, 3))))
            for masterid in b.masterids:
                bmid = self.next_id("builder_masters")
                w.row("builder_masters", id=bmid, builderid=b.id, masterid=masterid)
                for wid in b.workerids:
                    w.row("configured_workers", id=self.next_id("configured_workers"),
                          buildermasterid=bmid, workerid=wid)

    # -- source stamps and changes ---------------------------------------------------------

    def sourcestamp(self, branch: str | None, revision: str | None, repository: str,
                    project: str, codebase: str, patchid: int | None, when: int) -> int:
        h = ss_hash(branch, revision, repository, project, codebase, patchid)
        ssid = self.ss_ids.get(h)
        if ssid is None:
            ssid = self.ss_ids[h] = self.next_id("sourcestamps")
            self.w.add("sourcestamps", (ssid, h, branch, revision, patchid, repository,
                                        codebase, project, when))
        return ssid

    def change(self, p: int, codebase: str, repository: str) -> tuple[int, _Src]:
        """A new change in project ``p``; its sourcestamp id, branch and revision."""
        w, rng = self.w, self.rng
        when = self.now - rng.randint(5, 900)
        branch = rng.choice(_BRANCHES)
        rev = f"{rng.getrandbits(160):040x}"
        pstr = _PROJECTS[p][2]
        ssid = self.sourcestamp(branch, rev, repository, pstr, codebase, None, when)
        cid = self.next_id("changes")
        author = rng.choice(_AUTHORS)
        module = rng.choice(_MODULES)
        subject = rng.choice(_SUBJECTS).format(m=module)
        comments = f"{subject}\n\nSee issue #{rng.randint(100, 9999)}."
        key = (branch, repository, pstr, codebase)
        parent = self.last_change.get(key)
        self.last_change[key] = cid
        revlink = repository.removesuffix(".git") + "/commit/" + rev
        w.add("changes", (cid, author, author if rng.random() < 0.8 else _AUTHORS[0], comments,
                          branch, rev, revlink, when, "bugfix" if "fix" in subject else None,
                          repository, codebase, pstr, ssid, parent))
        for f in sorted({f"src/{module}/{rng.choice(_MODULES)}.py"
                         for _ in range(rng.randint(1, 4))}):
            w.add("change_files", (cid, f))
        w.add("change_properties", (cid, "event", json.dumps(["push", "Change"])))
        if cid % 3 == 0:
            w.add("change_properties",
                  (cid, "github_distinct", json.dumps([True, "Change"])))
        uid = self.users.get(author)
        if uid is not None and cid % 2 == 0:
            w.add("change_users", (cid, uid))
        self.latest_ss[(p, codebase)] = ssid
        cbid = self.codebase_ids.get(codebase)
        if cbid is not None:
            commitid = self.next_id("codebase_commits")
            prev = self.last_commit.get(cbid)
            w.add("codebase_commits", (commitid, cbid, author, author, comments, when, rev,
                                       prev[0] if prev else None))
            self.last_commit[cbid] = (commitid, when)
        return ssid, (branch, rev)

    def plain_sourcestamps(self, p: int, branch: str | None) -> list[int]:
        """The revision-less sourcestamps a timed or forced build of project ``p`` uses."""
        return [self.sourcestamp(branch, None, repo, _PROJECTS[p][2], cb, None, self.now)
                for cb, repo in _PROJECTS[p][3]]

    def patch_sourcestamp(self, p: int) -> tuple[list[int], _Src]:
        rng = self.rng
        cb, repo = _PROJECTS[p][3][0]
        module = rng.choice(_MODULES)
        body = (f"--- a/src/{module}.py\n+++ b/src/{module}.py\n@@ -1,3 +1,3 @@\n"
                f" import os\n-TIMEOUT = {rng.randint(1, 60)}\n+TIMEOUT = {rng.randint(61, 120)}\n"
                " \n")
        pid = self.next_id("patches")
        self.w.add("patches", (pid, 1, base64.b64encode(body.encode()).decode(),
                               rng.choice(_AUTHORS), f"try: tune {module} timeout",
                               None if pid % 2 else "src"))
        rev = f"{rng.getrandbits(160):040x}"
        return [self.sourcestamp("main", rev, repo, _PROJECTS[p][2], cb, pid, self.now)], (
            "main", rev)

    # -- buildsets, requests and builds ----------------------------------------------------

    def buildset(self, pending: bool = False) -> None:
        w, rng = self.w, self.rng
        self.now += rng.randint(20, 240)
        x = rng.random()
        kind, scheduler = next((k, s) for k, c, s in _BUILDSET_KINDS if x < c)
        parent = rebuilt = None
        relationship = external = None
        waited_for = 0
        priority = 0
        candidates = []
        if kind in ("triggered", "rebuild"):
            # Only builds already written: buildsets are written before builds.
            candidates = [r for r in self.recent if r[0] <= self.flushed_buildid]
            if not candidates:
                kind, scheduler = "change", "all"
        owner = rng.choice(_AUTHORS)
        props: list[tuple[str, Any, str]] = [("scheduler", scheduler, "Scheduler")]
        if kind in ("triggered", "rebuild"):
            origin = rng.choice(candidates)
            ssids, src = origin[2], origin[3]
            p = origin[1].project
            if kind == "triggered":
                parent, relationship, waited_for, priority = origin[0], "Triggered from", 1, 10
                builders = [rng.choice(self.by_project[p])]
                reason = f"The Triggerable scheduler named '{scheduler}' triggered this build"
            else:
                rebuilt, builders, reason = origin[0], [origin[1]], "rebuild"
        else:
            p = rng.choice((0, 0, 0, 1, 1, 2))
            pool = self.by_project[p]
            if kind == "change":
                cb, repo = rng.choice(_PROJECTS[p][3])
                # The scheduler's tree-stable timer may gather a few changes.
                for _ in range(1 if rng.random() < 0.6 else 2):
                    ssid, src = self.change(p, cb, repo)
                ssids = [ssid]
                for other, orepo in _PROJECTS[p][3]:
                    if other != cb:
                        ssids.append(self.latest_ss.get((p, other)) or self.sourcestamp(
                            "main", None, orepo, _PROJECTS[p][2], other, None, self.now))
                builders = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
                reason = (f"The AnyBranchScheduler scheduler named '{scheduler}' "
                          "triggered this build")
                if rng.random() < 0.1:
                    external = f"gerrit:{rng.randint(10000, 99999)}/{rng.randint(1, 9)}"
            elif kind == "nightly":
                ssids, src = self.plain_sourcestamps(p, "main"), ("main", None)
                builders = rng.sample(pool, min(len(pool), rng.randint(2, 4)))
                reason = f"The Nightly scheduler named '{scheduler}' triggered this build"
            elif kind == "force":
                branch = rng.choice(_BRANCHES)
                ssids, src = self.plain_sourcestamps(p, branch), (branch, None)
                builders = [rng.choice(pool)]
                reason = f"A build was forced by '{owner}': testing a fix"
                props += [("owner", owner, "Force Build Form"),
                          ("reason", "testing a fix", "Force Build Form")]
            else:
                ssids, src = self.patch_sourcestamp(p)
                builders = rng.sample(pool, min(len(pool), rng.randint(1, 2)))
                reason = "'try' job"
                external = f"try-{self.ids.get('patches', 0):06d}"
                priority = 5
                props += [("owner", owner, "Force Build Form")]

        bsid = self.next_id("buildsets")
        results_all: list[int | None] = []
        complete_ats: list[int] = []
        for b in builders:
            res, cat = self.buildrequest(bsid, b, ssids, src, pending, priority, waited_for,
                                         kind, scheduler, owner)
            results_all.append(res)
            if cat is not None:
                complete_ats.append(cat)
        complete = all(r is not None for r in results_all)
        worst = SUCCESS
        for r in results_all:
            if r is not None and _RANK[r] > _RANK[worst]:
                worst = r
        w.add("buildsets", (bsid, external, reason, self.now, int(complete),
                            max(complete_ats) if complete else None, worst if complete else -1,
                            parent, relationship, rebuilt))
        for name, value, source in props:
            w.add("buildset_properties", (bsid, name, json.dumps([value, source])))
        for ssid in ssids:
            w.add("buildset_sourcestamps", (self.next_id("buildset_sourcestamps"), bsid, ssid))

    def buildrequest(self, bsid: int, b: _Builder, ssids: list[int], src: _Src, pending: bool,
                     priority: int, waited_for: int, kind: str, scheduler: str, owner: str
                     ) -> tuple[int | None, int | None]:
        """Add a request and its builds; its results and complete_at (None if incomplete)."""
        w, rng = self.w, self.rng
        brid = self.next_id("buildrequests")
        submitted = self.now
        claim: tuple[int, int] | None = None  # (masterid, claimed_at)
        results: int | None = None
        complete_at: int | None = None
        x = rng.random()
        if pending or self.nbuilds >= self.total:
            pass  # unclaimed, waiting
        elif x < 0.01:  # collapsed into a newer request
            claim = (rng.choice(b.masterids), submitted + 1)
            results, complete_at = SKIPPED, submitted + 1
        elif x < 0.015:  # cancelled before it started
            claim = (rng.choice(b.masterids), submitted + 30)
            results, complete_at = CANCELLED, submitted + 30
        else:
            start = submitted + rng.randint(1, 120)
            while self.nbuilds < self.total:
                masterid = rng.choice(b.masterids)
                claim = (masterid, start - 1)
                res, end = self.build(brid, b, masterid, start, ssids, src, kind, scheduler,
                                      owner)
                if res != RETRY:
                    results, complete_at = res, end
                    break
                claim = None  # a retried request is unclaimed and claimed again
                start = (end or start) + rng.randint(5, 60)
        w.add("buildrequests", (brid, bsid, b.id, priority, int(results is not None),
                                -1 if results is None else results, submitted, complete_at,
                                waited_for))
        if claim is not None:
            w.add("buildrequest_claims", (brid, claim[0], claim[1]))
        return results, complete_at

    def build(self, brid: int, b: _Builder, masterid: int, start: int, ssids: list[int],
              src: _Src, kind: str, scheduler: str, owner: str
              ) -> tuple[int | None, int | None]:
        """Add one build with its steps; its results and complete_at (None while running).

        This and :meth:`step` run for every build: they append tuples to the writer's lists
        directly and draw from ``rng.random`` alone, which is what makes a million builds
        affordable."""
        r = self.rng.random
        self.nbuilds += 1
        self.buildid = buildid = self.buildid + 1
        b.number += 1
        running = self.nbuilds > self.running_from
        wid = b.workerids[int(r() * len(b.workerids))]
        workerid: int | None = None if r() < 0.005 else wid  # None: deleted since
        x = r()
        results: int | None = None if running else next(v for c, v in _RESULT_CDF if x < c)
        locks = 0 if running or r() < 0.8 else 1 + int(r() * 90)
        recipe = b.recipe
        # Where the build stops: at the failing step, or at the running one.
        stop = len(recipe)
        if running or results in (EXCEPTION, RETRY, CANCELLED):
            stop = 1 + int(r() * (len(recipe) - 1))
        elif results == FAILURE:
            stop = recipe.index("test") if "test" in recipe and r() < 0.7 else 3
        elif results == SKIPPED:
            stop = 1
        t = start
        state = ""
        got_revision = False
        for number, kind_ in enumerate(recipe):
            if number > stop:
                break
            if number == stop:
                sres = None if running else results
            elif results == WARNINGS and kind_ in ("compile", "docs"):
                sres = WARNINGS
            else:
                sres = SUCCESS
            t, summary = self.step(buildid, b, number, kind_, t, sres)
            if number == stop:
                state = summary
            elif kind_ == "git":
                got_revision = True
        complete_at = None if running else t + locks
        self.latest = max(self.latest, t)
        if running:
            state_string = "building"
        elif results in (SUCCESS, SKIPPED):
            state_string = "build successful"
        elif results == WARNINGS:
            state_string = "warnings"
        else:
            state_string = f"{_BUILD_TEXT[results]} {state}"  # type: ignore[index]
        self.r_builds.append((buildid, b.number, b.id, brid, workerid, masterid, start,
                              complete_at, locks, state_string, results))
        add = self.r_props.append
        add((buildid, "buildername", b.jname, "Builder"))
        add((buildid, "buildnumber", str(b.number), "Build"))
        add((buildid, "workername", self.worker_jnames[wid], "Worker"))
        add((buildid, "scheduler", _jstr(scheduler), "Scheduler"))
        add((buildid, "branch", _jstr(src[0]), "Build"))
        add((buildid, "revision", f'"{src[1]}"' if src[1] else "null", "Build"))
        add((buildid, "project", b.jproject, "Build"))
        add((buildid, "repository", b.jrepository, "Build"))
        if got_revision:
            add((buildid, "got_revision", f'"{self.rng.getrandbits(160):040x}"', "Git"))
        if kind in ("force", "try"):
            add((buildid, "owners", json.dumps([owner]), "Build"))
        if buildid % 10 == 3 and complete_at:
            self.build_data(buildid)
        if complete_at:
            self.recent.append((buildid, b, ssids, src))
        return results, complete_at

    def build_data(self, buildid: int) -> None:
        rng = self.rng
        value = json.dumps({"lines": rng.randint(1000, 50000),
                            "covered": rng.randint(500, 1000)}).encode()
        self.w.add("build_data", (self.next_id("build_data"), buildid, "coverage", value,
                                  len(value), "Coverage"))
        if buildid % 20 == 3:
            blob = rng.randbytes(rng.randint(64, 2048))
            self.w.add("build_data", (self.next_id("build_data"), buildid, "artifact.bin",
                                      blob, len(blob), "Upload"))

    def step(self, buildid: int, b: _Builder, number: int, kind: str, t: int,
             results: int | None) -> tuple[int, str]:
        """Add one step with its logs; the time it ended and its summary."""
        r = self.rng.random
        self.stepid = stepid = self.stepid + 1
        name, running_text, summaries, duration, logged = _STEP_KINDS[kind]
        acquired = t + int(r() * 30) if number and r() < 0.05 else t
        if results is None:
            self.r_steps.append((stepid, number, name, buildid, t, acquired, None,
                                 running_text, None, "[]", 0))
            if logged:
                self.log(stepid, "stdio", "s", kind, True, complete=False)
            return t, running_text
        end = acquired + duration // 2 + int(r() * duration * 1.5)
        summary = summaries[results]
        urls = "[]"
        if kind == "test" and stepid % 4 == 0:
            urls = json.dumps([{"name": "coverage report",
                                "url": f"https://reports.example.org/{b.name}/{b.number}/"}])
        elif kind == "upload":
            urls = json.dumps([{"name": "widgets.tar.gz",
                                "url": f"https://files.example.org/dl/{buildid}/widgets.tar.gz"}])
        self.r_steps.append((stepid, number, name, buildid, t, acquired, end, summary,
                             results, urls, int(kind == "props")))
        if not logged or results == SKIPPED:
            return end, summary
        ok = results <= WARNINGS
        self.log(stepid, "stdio", "s", kind, ok)
        if results == WARNINGS:
            self.log(stepid, "warnings", "t", "warnings", ok)
        elif results in (EXCEPTION, RETRY):
            self.log(stepid, "err.text", "t", "traceback", ok)
        if kind == "test":
            if stepid % 3 == 0:
                self.log(stepid, "report.html", "h", "report", ok)
            if buildid % 5 == 0:
                self.test_results(buildid, b, stepid, ok)
        return end, summary

    def log(self, stepid: int, name: str, type_: str, kind: str, ok: bool,
            complete: bool = True) -> None:
        self.logid = logid = self.logid + 1
        chunks = self.logs.get(kind, ok, int(self.rng.random() * self.logs.variants),
                               logid % 6)
        if not complete:
            chunks = chunks[:max(1, len(chunks) - 1)]
        self.r_logs.append((logid, name, _SLUGS[name], stepid, int(complete), chunks[-1][1] + 1,
                            type_))
        add = self.r_chunks.append
        for first, last, content, code in chunks:
            add((logid, first, last, content, code))

    def test_results(self, buildid: int, b: _Builder, stepid: int, ok: bool) -> None:
        w, rng = self.w, self.rng
        if not b.test_names:
            for m in _MODULES:
                pathid = self.next_id("test_code_paths")
                path = f"tests/test_{m}.py"
                w.add("test_code_paths", (pathid, b.id, path))
                for case in ("basic", "empty", "unicode"):
                    nameid = self.next_id("test_names")
                    name = f"{path}::test_{m}_{case}"
                    w.add("test_names", (nameid, b.id, name))
                    b.test_names.append((nameid, pathid, name))
        setid = self.next_id("test_result_sets")
        picked = rng.sample(b.test_names, rng.randint(5, 15))
        values = ["0" if not ok and i == 0 else "1" for i in range(len(picked))]
        w.add("test_result_sets", (setid, b.id, buildid, stepid, "Pytest results",
                                   "pass_fail", "boolean", values.count("1"),
                                   values.count("0"), 1))
        for (nameid, pathid, _), value in zip(picked, values, strict=True):
            w.add("test_results", (self.next_id("test_results"), b.id, setid, nameid, pathid,
                                   rng.randint(1, 400), rng.randint(10**5, 10**9), value))

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> None:
        w = self.w
        end = max(self.now, self.latest) + 60
        for cbid in self.codebase_ids.values():
            last = self.last_commit.get(cbid)
            for branch in ("main", "release/4.3"):
                w.row("codebase_branches", id=self.next_id("codebase_branches"),
                      codebaseid=cbid, name=branch, name_hash=name_hash(branch),
                      commitid=last[0] if last and branch == "main" else None,
                      last_timestamp=last[1] if last else EPOCH)
        # Changes a scheduler has seen but not yet acted on.
        for cid in range(max(1, self.ids.get("changes", 0) - 2), self.ids.get("changes", 0) + 1):
            w.row("scheduler_changes", schedulerid=1, changeid=cid, important=1)
        self.end = end

    def big_log(self) -> None:
        """One log of exactly ``big_log_bytes`` bytes on the first step of build 1, written
        as it is generated: one append of about 4 MB at a time, as upstream's appendLog
        would cut it into chunks."""
        w, r = self.w, self.rng.random
        self.logid = logid = self.logid + 1
        w.add("logs", (logid, "big-stdio", "big-stdio", 1, 0, 0, "s"))
        w.flush()
        words = [f"o{m}: test_{m}_{c} ... ok" for m in _MODULES for c in range(20)]
        pool = [words[int(r() * len(words))] for _ in range(4099)]
        target = self.big_log_bytes
        written = first = 0
        while written < target:
            lines = [f"{pool[i % 4099]} [{i:010d}]".encode()
                     for i in range(first, first + 100_000)]
            ends = list(itertools.accumulate(len(line) + 1 for line in lines))
            if written + ends[-1] >= target:
                # Stop at the line that reaches the target, cut to end exactly there.
                n = bisect.bisect_left(ends, target - written) + 1
                lines = lines[:n]
                cut = written + ends[n - 1] - target
                if cut:
                    lines[-1] = lines[-1][:len(lines[-1]) - cut]
                written = target
            else:
                written += ends[-1]
            # Chunk boundaries straight from the running sizes (every line is short).
            start = 0
            while start < len(lines):
                base = ends[start - 1] if start else 0
                stop = bisect.bisect_right(ends, base + MAX_CHUNK_SIZE, lo=start)
                self.r_chunks.append((logid, *_chunk(lines[start:stop], self.big_log_codec,
                                                     first + start)))
                start = stop
            first += len(lines)
            w.flush()
            if self.progress:
                self.progress("big log", written, target)
        logs = schema.logs
        w.conn.execute(logs.update().where(logs.c.id == logid)
                       .values(num_lines=first, complete=1))
        w.conn.commit()


def _reset_sequences(conn: sa.Connection) -> None:
    """After explicit ids, point PostgreSQL's sequences past them."""
    for table in schema.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].foreign_keys:
            continue
        col = pk[0].name
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                           {"t": table.name, "c": col}).scalar()
        if seq:
            conn.execute(sa.text(f"SELECT setval(:s, COALESCE((SELECT MAX({col}) FROM "
                                 f"{table.name}), 0) + 1, false)"), {"s": seq})
    conn.commit()


def _sqlite_pragmas(conn: sa.Connection, fast: bool) -> dict[str, Any]:
    """Trade durability for speed on the generator's own connection; the old settings."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    old = {name: raw.execute(f"PRAGMA {name}").fetchone()[0]
           for name in ("synchronous", "cache_size", "journal_mode")}
    if fast:
        raw.execute("PRAGMA synchronous=OFF")
        raw.execute("PRAGMA cache_size=-262144")  # 256 MiB
        # Out of WAL, so pages are written once; fails if others have the file open.
        with contextlib.suppress(sqlite3.OperationalError):
            raw.execute("PRAGMA journal_mode=MEMORY")
    return old


def _sqlite_restore(conn: sa.Connection, old: dict[str, Any]) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with contextlib.suppress(sqlite3.OperationalError):
        raw.execute(f"PRAGMA journal_mode={old['journal_mode']}")
    raw.execute(f"PRAGMA synchronous={int(old['synchronous'])}")
    raw.execute(f"PRAGMA cache_size={int(old['cache_size'])}")


def populate(engine: sa.Engine, *, builds: int = 200, seed: int = 1,
             progress: Progress | None = None, big_log_bytes: int = 0,
             big_log_codec: int = ZSTD, batch_rows: int = 20000) -> dict[str, int]:
    """Fill an empty database (its schema already created) with upstream-shaped data.

    ``builds`` builds are made, with about as many build requests and half as many
    buildsets and changes; one builder per 100 builds (at least 6). The same
    ``seed`` gives the same rows. ``progress(stage, done, total)`` is called after each
    batch. ``big_log_bytes`` adds one log of that size (slug ``big-stdio``, on step 0 of
    build 1) compressed with ``big_log_codec``. Returns the number of rows per table.
    """
    if builds < 1:
        raise ValueError("builds must be at least 1")
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        old = _sqlite_pragmas(conn, fast=builds >= 5000) if sqlite else None
        try:
            used = [t.name for t in (schema.masters, schema.builders, schema.builds)
                    if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()]
            conn.commit()
            if used:
                raise ValueError(f"the database is not empty (it has {', '.join(used)})")
            gen = _Generator(_Writer(conn, batch_rows), builds=builds, seed=seed,
                             progress=progress, big_log_bytes=big_log_bytes,
                             big_log_codec=big_log_codec)
            gen.run()
            masters = schema.masters
            conn.execute(masters.update().values(last_active=gen.end))
            conn.commit()
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn)
        finally:
            if old is not None:
                conn.rollback()
                _sqlite_restore(conn, old)
    counts = dict(sorted(gen.w.counts.items()))
    return counts
