"""The demo/benchmark data generator: deterministic, consistent, and shaped like upstream's
rows (see upstream resources §4.2)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildbot_rest import demo
from buildbot_rest.db import logchunks, schema
from buildbot_rest.db.database import Database, make_engine
from tests.conftest import upstream_env

BUILDS = 30


def populated(url: str, **kwargs) -> tuple[sa.Engine, dict[str, int]]:
    db = Database(url)
    try:
        db.prepare_sync()
    finally:
        db.engine.dispose()
    engine = make_engine(url)
    return engine, demo.populate(engine, builds=BUILDS, **kwargs)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite'}"
    engine, counts = populated(url)
    yield engine, counts
    engine.dispose()


def rows(conn: sa.Connection, sql: str) -> list[tuple]:
    return [tuple(r) for r in conn.exec_driver_sql(sql)]


def scalar(conn: sa.Connection, sql: str):
    return conn.exec_driver_sql(sql).scalar()


# -- every check, on one populated database ----------------------------------------------

def check_counts(conn: sa.Connection, counts: dict[str, int]) -> None:
    assert counts["builds"] == BUILDS
    for table in schema.metadata.sorted_tables:
        assert scalar(conn, f"SELECT COUNT(*) FROM {table.name}") == counts[table.name], table
    for table in ("masters", "projects", "builders", "workers", "changes", "sourcestamps",
                  "buildsets", "buildrequests", "steps", "logs", "logchunks",
                  "build_properties", "test_results", "users", "codebase_commits"):
        assert counts[table] > 0, table
    assert counts["masters"] == 2
    assert counts["projects"] == 3
    assert counts["builders"] >= 6


def check_foreign_keys(conn: sa.Connection) -> None:
    """Every non-NULL foreign key names an existing row."""
    for table in schema.metadata.sorted_tables:
        for fk in table.foreign_keys:
            col, target = fk.parent.name, fk.column
            dangling = scalar(conn, f"""
                SELECT COUNT(*) FROM {table.name} AS c
                LEFT JOIN {target.table.name} AS p ON p.{target.name} = c.{col}
                WHERE c.{col} IS NOT NULL AND p.{target.name} IS NULL""")
            assert dangling == 0, f"{table.name}.{col} -> {target.table.name}.{target.name}"


def check_unique(conn: sa.Connection) -> None:
    for table in schema.metadata.sorted_tables:
        for index in table.indexes:
            if not index.unique:
                continue
            cols = ", ".join(c.name for c in index.columns)
            # NULLs never collide in a unique index.
            present = " AND ".join(f"{c.name} IS NOT NULL" for c in index.columns)
            dups = scalar(conn, f"SELECT COUNT(*) FROM (SELECT {cols} FROM {table.name} "
                                f"WHERE {present} GROUP BY {cols} HAVING COUNT(*) > 1) AS d")
            assert dups == 0, index.name


def check_numbering(conn: sa.Connection) -> None:
    for builderid, n, lo, hi in rows(conn, "SELECT builderid, COUNT(*), MIN(number), "
                                           "MAX(number) FROM builds GROUP BY builderid"):
        assert (lo, hi) == (1, n), builderid
    # Numbers grow with ids, as upstream's max(number)+1 gives them.
    numbers = rows(conn, "SELECT builderid, number FROM builds ORDER BY id")
    last: dict[int, int] = {}
    for builderid, number in numbers:
        assert number == last.get(builderid, 0) + 1
        last[builderid] = number
    for buildid, n, lo, hi in rows(conn, "SELECT buildid, COUNT(*), MIN(number), MAX(number) "
                                         "FROM steps GROUP BY buildid"):
        assert (lo, hi) == (0, n - 1), buildid
    assert scalar(conn, "SELECT COUNT(*) FROM builds WHERE id NOT IN "
                        "(SELECT buildid FROM steps)") == 0


def check_logchunks(conn: sa.Connection) -> None:
    logs = {logid: (num_lines, type_) for logid, num_lines, type_ in
            rows(conn, "SELECT id, num_lines, type FROM logs")}
    lines: dict[int, list[str]] = {logid: [] for logid in logs}
    codes = set()
    for logid, first, last, content, code in rows(
            conn, "SELECT logid, first_line, last_line, content, compressed FROM logchunks "
                  "ORDER BY logid, first_line"):
        codes.add(code)
        content = bytes(content)
        assert len(content) <= demo.MAX_CHUNK_SIZE
        raw = logchunks.decompress(code, content)
        if code != logchunks.RAW:
            assert len(content) < len(raw), "compressed only when smaller"
        assert not raw.endswith(b"\n"), "stored without the final newline"
        chunk = raw.decode("utf-8").split("\n")
        assert len(chunk) == last - first + 1
        assert first == len(lines[logid]), "chunks follow each other"
        lines[logid] += chunk
    assert codes == {0, 1, 2, 3, 4, 5}
    for logid, (num_lines, type_) in logs.items():
        assert len(lines[logid]) == num_lines, logid
        assert num_lines > 0
        if type_ == "s":
            assert all(line[:1] in ("o", "e", "h") for line in lines[logid]), logid
    assert {t for _, t in logs.values()} == {"s", "t", "h"}


def check_states(conn: sa.Connection) -> None:
    # Incomplete requests and buildsets hold -1; complete ones a real result.
    assert scalar(conn, "SELECT COUNT(*) FROM buildrequests WHERE complete = 0 "
                        "AND (results != -1 OR complete_at IS NOT NULL)") == 0
    assert scalar(conn, "SELECT COUNT(*) FROM buildrequests WHERE complete = 1 "
                        "AND (results NOT IN (0, 1, 2, 3, 4, 6) OR complete_at IS NULL)") == 0
    assert scalar(conn, "SELECT COUNT(*) FROM buildsets WHERE complete = 0 "
                        "AND (results != -1 OR complete_at IS NOT NULL)") == 0
    assert scalar(conn, "SELECT COUNT(*) FROM buildsets WHERE complete = 1 "
                        "AND (results < 0 OR complete_at IS NULL)") == 0
    # Some requests wait unclaimed, some run (claimed, not complete).
    assert scalar(conn, "SELECT COUNT(*) FROM buildrequests WHERE complete = 0 AND id NOT IN "
                        "(SELECT brid FROM buildrequest_claims)") > 0
    assert scalar(conn, "SELECT COUNT(*) FROM buildrequests WHERE complete = 0 AND id IN "
                        "(SELECT brid FROM buildrequest_claims)") > 0
    # Running builds have neither complete_at nor results; finished ones have both.
    running = rows(conn, "SELECT id, results FROM builds WHERE complete_at IS NULL")
    assert running and all(r is None for _, r in running)
    assert scalar(conn, "SELECT COUNT(*) FROM builds WHERE complete_at IS NOT NULL "
                        "AND results IS NULL") == 0
    assert scalar(conn, "SELECT COUNT(*) FROM steps WHERE (complete_at IS NULL) != "
                        "(results IS NULL)") == 0
    # A request's builds run in its builder; a complete request's last build decided it.
    assert scalar(conn, "SELECT COUNT(*) FROM builds b JOIN buildrequests r "
                        "ON r.id = b.buildrequestid WHERE r.builderid != b.builderid") == 0
    # A build's master has its builder configured.
    assert scalar(conn, "SELECT COUNT(*) FROM builds b LEFT JOIN builder_masters bm ON "
                        "bm.builderid = b.builderid AND bm.masterid = b.masterid "
                        "WHERE bm.id IS NULL") == 0


def check_values(conn: sa.Connection) -> None:
    import json

    from buildbot_rest.db.hashes import name_hash, ss_hash

    for name, h in rows(conn, "SELECT name, name_hash FROM builders UNION ALL "
                              "SELECT name, name_hash FROM masters UNION ALL "
                              "SELECT name, name_hash FROM projects"):
        assert name_hash(name) == h
    for h, branch, rev, repo, project, codebase, patchid in rows(
            conn, "SELECT ss_hash, branch, revision, repository, project, codebase, patchid "
                  "FROM sourcestamps"):
        assert ss_hash(branch, rev, repo, project, codebase, patchid) == h
    for (value,) in rows(conn, "SELECT property_value FROM change_properties"):
        assert json.loads(value)[1] == "Change"
    for (value,) in rows(conn, "SELECT property_value FROM buildset_properties"):
        assert len(json.loads(value)) == 2
    props = dict(rows(conn, "SELECT name, value FROM build_properties WHERE buildid = 1"))
    assert json.loads(props["buildnumber"]) == 1
    assert isinstance(json.loads(props["buildername"]), str)
    for (info,) in rows(conn, "SELECT info FROM workers"):
        assert json.loads(info)["version"] == "4.3.0"
    for (urls,) in rows(conn, "SELECT urls_json FROM steps"):
        assert all(set(u) == {"name", "url"} for u in json.loads(urls))
    # parent_changeids: the latest earlier change with the same branch/repo/project/codebase.
    changes = rows(conn, "SELECT changeid, branch, repository, project, codebase, "
                         "parent_changeids FROM changes ORDER BY changeid")
    latest: dict[tuple, int] = {}
    for cid, *key, parent in changes:
        assert parent == latest.get(tuple(key))
        latest[tuple(key)] = cid
    # The whole result range shows up in a small data set too.
    assert {r for (r,) in rows(conn, "SELECT DISTINCT results FROM builds")} >= {0, 2, None}


CHECKS = [check_counts, check_foreign_keys, check_unique, check_numbering, check_logchunks,
          check_states, check_values]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_sqlite(sqlite_db: tuple[sa.Engine, dict], check) -> None:
    engine, counts = sqlite_db
    with engine.connect() as conn:
        if check is check_counts:
            check(conn, counts)
        else:
            check(conn)


# -- determinism --------------------------------------------------------------------------

TABLES = ["builders", "workers", "changes", "sourcestamps", "buildsets", "buildrequests",
          "buildrequest_claims", "builds", "build_properties", "steps", "logs", "logchunks",
          "test_results"]


def dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        out = {}
        for name in TABLES:
            table = schema.metadata.tables[name]
            query = sa.select(table).order_by(*table.columns)
            # Sorted here too: the backends' collations may order text differently.
            out[name] = sorted((tuple(bytes(v) if isinstance(v, memoryview) else v
                                      for v in row) for row in conn.execute(query)), key=repr)
        return out


def test_deterministic(sqlite_db: tuple[sa.Engine, dict], tmp_path: Path) -> None:
    engine, counts = sqlite_db
    again, counts2 = populated(f"sqlite:///{tmp_path / 'again.sqlite'}")
    try:
        assert counts2 == counts
        assert dump(again) == dump(engine)
    finally:
        again.dispose()


def test_seed_changes_data(sqlite_db: tuple[sa.Engine, dict], tmp_path: Path) -> None:
    engine, _ = sqlite_db
    other, _ = populated(f"sqlite:///{tmp_path / 'other.sqlite'}", seed=2)
    try:
        assert dump(other)["changes"] != dump(engine)["changes"]
    finally:
        other.dispose()


def test_refuses_non_empty_database(sqlite_db: tuple[sa.Engine, dict]) -> None:
    engine, _ = sqlite_db
    with pytest.raises(ValueError, match="not empty"):
        demo.populate(engine, builds=5)


def test_small_and_progress(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    url = f"sqlite:///{tmp_path / 'tiny.sqlite'}"
    Database(url).prepare_sync()
    engine = make_engine(url)
    try:
        counts = demo.populate(engine, builds=1, progress=lambda *a: calls.append(a))
        assert counts["builds"] == 1
        assert calls and calls[-1] == ("builds", 1, 1)
        with engine.connect() as conn:
            check_foreign_keys(conn)
    finally:
        engine.dispose()


def test_big_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.sqlite'}"
    Database(url).prepare_sync()
    engine = make_engine(url)
    size = 300_000
    stages: set[str] = set()
    try:
        demo.populate(engine, builds=3, big_log_bytes=size, big_log_codec=logchunks.LZ4,
                      progress=lambda stage, done, total: stages.add(stage))
        with engine.connect() as conn:
            logid, stepid, num_lines, complete = rows(
                conn, "SELECT id, stepid, num_lines, complete FROM logs "
                      "WHERE slug = 'big-stdio'")[0]
            assert (stepid, complete) == (1, 1)
            chunks = rows(conn, "SELECT first_line, last_line, content, compressed "
                                f"FROM logchunks WHERE logid = {logid} ORDER BY first_line")
        assert len(chunks) > 1 and {c[3] for c in chunks} == {logchunks.LZ4}
        text = b"\n".join(logchunks.decompress(c[3], bytes(c[2])) for c in chunks) + b"\n"
        assert len(text) == size
        assert text.count(b"\n") == num_lines == chunks[-1][1] + 1
        assert "big log" in stages
    finally:
        engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------

@pytest.mark.postgresql
def test_postgresql(request: pytest.FixtureRequest, sqlite_db: tuple[sa.Engine, dict]
                    ) -> None:
    if not os.environ.get("BUILDBOT_REST_TEST_PG", "").strip():
        pytest.skip("set BUILDBOT_REST_TEST_PG to a PostgreSQL server URL to run this")
    url = request.getfixturevalue("pg_database")
    engine, counts = populated(url)
    try:
        assert counts == sqlite_db[1]
        with engine.connect() as conn:
            check_counts(conn, counts)
            for check in CHECKS[1:]:
                check(conn)
        assert dump(engine) == dump(sqlite_db[0]), "the same rows as on SQLite"
        # Sequences were moved past the explicit ids: plain inserts still work.
        with engine.begin() as conn:
            new = conn.execute(schema.masters.insert().values(
                name="x:/y", name_hash="0" * 40, active=0, last_active=0)).inserted_primary_key
            assert new[0] == 3
    finally:
        engine.dispose()


# -- upstream Buildbot reads it ---------------------------------------------------------------

UPSTREAM_READ = textwrap.dedent("""
    import sys
    from twisted.internet import defer, task
    from buildbot.config.master import DBConfig, MasterConfig
    from buildbot.master import BuildMaster

    async def main(reactor, basedir, url, logids):
        master = BuildMaster(basedir, reactor=reactor)
        master.config = MasterConfig()
        master.config.db = DBConfig(url)
        db = master.db
        await db.setup(check_version=True, verbose=False)
        db.logs.startService()
        try:
            print("current", await db.model.is_current())
            print("builds", len(await db.builds.getBuilds()))
            print("changes", len(await db.changes.getChanges()))
            print("buildsets", len(await db.buildsets.getBuildsets()))
            print("requests", len(await db.buildrequests.getBuildRequests()))
            lines = 0
            for logid in map(int, logids.split(",")):
                log = await db.logs.getLog(logid)
                text = await db.logs.getLogLines(logid, 0, log.num_lines)
                assert text.count("\\n") == log.num_lines, log
                lines += log.num_lines
            print("lines", lines)
        finally:
            db.logs.stopService()
            await db.pool.stop()

    task.react(lambda reactor, *a: defer.ensureDeferred(main(reactor, *a)), sys.argv[1:])
""")


@pytest.mark.upstream
def test_upstream_reads_it(sqlite_db: tuple[sa.Engine, dict], upstream_venv: Path,
                           tmp_path: Path) -> None:
    engine, counts = sqlite_db
    python = upstream_venv / "bin" / "python"
    # Upstream's lz4, zstd and brotli codecs are optional dependencies.
    codecs = {logchunks.RAW, logchunks.GZ, logchunks.BZ2}
    for code, module in ((logchunks.LZ4, "lz4"), (logchunks.ZSTD, "zstandard"),
                         (logchunks.BROTLI, "brotli")):
        if subprocess.run([str(python), "-c", f"import {module}"], env=upstream_env(),
                          capture_output=True, check=False).returncode == 0:
            codecs.add(code)
    with engine.connect() as conn:
        unreadable = {logid for logid, code in rows(conn, "SELECT logid, compressed "
                                                          "FROM logchunks")
                      if code not in codecs}
        logs = {logid: n for logid, n in rows(conn, "SELECT id, num_lines FROM logs")
                if logid not in unreadable}
    assert logs
    script = tmp_path / "read.py"
    script.write_text(UPSTREAM_READ)
    proc = subprocess.run([str(python), str(script), str(tmp_path), str(engine.url),
                           ",".join(map(str, logs))],
                          cwd=tmp_path, env=upstream_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["current"] == "True"
    assert int(out["builds"]) == counts["builds"]
    assert int(out["changes"]) == counts["changes"]
    assert int(out["buildsets"]) == counts["buildsets"]
    assert int(out["requests"]) == counts["buildrequests"]
    assert int(out["lines"]) == sum(logs.values())


def test_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    cmd = [sys.executable, "-m", "bench.generate", "--db", url, "--builds", "12"]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "generated 12 builds" in proc.stdout
    assert "builds" in proc.stderr  # the progress bar
    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 2
    assert "not empty" in again.stderr
