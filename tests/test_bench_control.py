"""A smoke test of the control benchmark on a tiny database, on SQLite and PostgreSQL:
it starts the server with a force scheduler, forces and rebuilds with one client and with
several, checks the new rows against the answers and writes a report (no timings are
asserted; upstream is left out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import control
from buildbot_rest import demo
from buildbot_rest.db import Database
from buildbot_rest.db.database import make_engine


@pytest.fixture
def tiny_db(db_url: str) -> str:
    db = Database(db_url, pool_size=1)
    db.prepare_sync(create=True)
    db.engine.dispose()
    engine = make_engine(db_url, pool_size=1)
    try:
        demo.populate(engine, builds=20, seed=1)
    finally:
        engine.dispose()
    return db_url


def test_force_and_rebuild_are_counted(tiny_db: str, tmp_path: Path) -> None:
    out = tmp_path / "control.json"
    code = control.main(["--db", tiny_db, "--calls", "3", "--clients", "4",
                         "--per-client", "2", "--no-upstream", "--workdir",
                         str(tmp_path / "work"), "--out", str(out)])
    report = json.loads(out.read_text())
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == ["force 1 client", "force 4 clients", "rebuild 1 client",
                             "rebuild 4 clients"]
    for r in results.values():
        assert r["server"] == "ours"
        assert r["ok"] == r["calls"], r["error"]
        assert r["consistent"], r
        assert r["new_buildsets"] == r["calls"]
        assert r["p50_ms"] > 0 and r["calls_per_s"] > 0
    # the force scheduler starts a build request on each of its two builders
    assert results["force 4 clients"]["new_buildrequests"] == 16
    assert results["rebuild 1 client"]["new_buildrequests"] == 3
    assert code == 0
    assert "not measured (--no-upstream)" in out.with_suffix(".txt").read_text()
    # the benchmark worked on a copy, and removed it
    assert not list((tmp_path / "work").glob("*.sqlite"))
