"""A smoke test of the benchmark runner on a tiny database: it starts the server, runs a
few scenarios with their floors and writes a report with ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from buildbot_rest import demo
from buildbot_rest.db import Database
from buildbot_rest.db.database import make_engine


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bench') / 'tiny.sqlite'}"
    db = Database(url, pool_size=1)
    db.prepare_sync()
    db.engine.dispose()
    engine = make_engine(url, pool_size=1)
    try:
        demo.populate(engine, builds=20, seed=1, big_log_bytes=64 * 1024)
    finally:
        engine.dispose()
    return url


def test_runner_reports_ratios(tiny_db: str, tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    code = run.main(["--db", tiny_db, "--server", "script", "--iterations", "2",
                     "--load-seconds", "0.3", "--server-log", str(tmp_path / "server.log"),
                     "--scenarios", "builds paged", "COUNT builds", "PAGE builds", "load 8",
                     "big log raw", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    results = {r["name"]: r for r in report["results"]}
    assert {"builds paged", "COUNT builds", "load 8 clients", "big log raw"} <= set(results)
    paged = results["builds paged"]
    assert paged["ok"], paged["error"]
    assert paged["ratio"] is not None and paged["ratio"] > 0
    assert paged["floor_median_ms"] > 0 and paged["items"] == 20
    assert results["COUNT builds"]["total"] == 20
    assert results["PAGE builds"]["total"] == 20  # rows of the page query (limit 50)
    assert results["PAGE builds"]["median_ms"] > 0
    assert results["load 8 clients"]["errors"] == 0
    assert report["idle_rss_mb"] > 0
    assert any(p["plan"] for p in report["plans"])
    text = out.with_suffix(".txt").read_text()
    assert "ratio" in text.splitlines()[3] and "builds paged" in text


def test_failing_scenario_is_reported_not_raised(tiny_db: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    broken = run.Scenario("missing endpoint", "api", "/no_such_collection")
    monkeypatch.setattr(run, "select", lambda patterns: [broken])
    report_path = tmp_path / "r.json"
    assert run.main(["--db", tiny_db, "--server", "script", "--iterations", "1",
                     "--no-plans", "--server-log", str(tmp_path / "server.log"),
                     "--out", str(report_path)]) == 0
    (result,) = json.loads(report_path.read_text())["results"]
    assert not result["ok"] and "404" in result["error"]


def test_extra_indexes_are_measured_then_dropped(tiny_db: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    out = tmp_path / "idx.json"
    assert run.main(["--db", tiny_db, "--server", "script", "--iterations", "2",
                     "--server-log", str(tmp_path / "server.log"), "--extra-indexes",
                     "--scenarios", "results=2", "started_at (", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    measured = ["builds results=2 (not indexed)", "builds -started_at (not indexed)",
                "COUNT builds results=2"]
    assert names == measured + [name + " +index" for name in measured]
    assert all(r["ok"] and (r["ratio"] or r["kind"] == "count") for r in report["results"])
    assert report["extra_indexes"]["added"] == ["bbrest_builds_results",
                                                "bbrest_builds_started_at"]
    with_indexes = " ".join(" ".join(p["plan"]) for p in report["plans_with_indexes"])
    assert "bbrest_builds_results" in with_indexes
    assert "bbrest_builds_started_at" in with_indexes
    assert "bbrest_" not in " ".join(" ".join(p["plan"]) for p in report["plans"])
    # the database is left as it was
    engine = make_engine(tiny_db, pool_size=1)
    try:
        with engine.connect() as conn:
            assert not [i for i in sa.inspect(conn).get_indexes("builds")
                        if i["name"].startswith("bbrest_")]
    finally:
        engine.dispose()
    assert "with the extra indexes" in out.with_suffix(".txt").read_text()


def test_load_again_with_worker_processes(tiny_db: str, tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    assert run.main(["--db", tiny_db, "--server", "plugin", "--iterations", "2",
                     "--load-seconds", "0.5", "--server-log", str(tmp_path / "server.log"),
                     "--no-plans", "--workers", "2", "--scenarios", "load 1 ", "load 8",
                     "--out", str(out)]) == 0
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"load 1 clients", "load 8 clients", "load 1 clients (2 workers)",
                            "load 8 clients (2 workers)"}
    assert all(r["ok"] and r["errors"] == 0 and r["rps"] > 0 for r in results.values())
    assert results["load 8 clients (2 workers)"]["speedup_vs_1"] > 0
    assert "worker 1 started" in (tmp_path / "server.workers.log").read_text()
