"""Workers: every path, lists restricted by the path's master or builder, filters."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s


def expected_workers(api: Any, masterid: int | None = None,
                     builderid: int | None = None) -> list[dict[str, Any]]:
    """Workers as upstream defines them: those configured on the master/builder of the
    path (all without one), with ``configured_on`` and ``connected_to`` cut down to it."""
    w, cw, bm, cn = s.workers, s.configured_workers, s.builder_masters, s.connected_workers
    configured: dict[int, list[dict[str, int]]] = {}
    for workerid, mid, bid in api.rows(
            sa.select(cw.c.workerid, bm.c.masterid, bm.c.builderid)
            .join_from(cw, bm, bm.c.id == cw.c.buildermasterid).order_by(cw.c.id)):
        if masterid is not None and mid != masterid:
            continue
        if builderid is not None and bid != builderid:
            continue
        configured.setdefault(workerid, []).append({"masterid": mid, "builderid": bid})
    connected: dict[int, list[dict[str, int]]] = {}
    for workerid, mid in api.rows(sa.select(cn.c.workerid, cn.c.masterid).order_by(cn.c.id)):
        if masterid is None or mid == masterid:
            connected.setdefault(workerid, []).append({"masterid": mid})
    restricted = masterid is not None or builderid is not None
    out = []
    for row in api.rows(sa.select(w).order_by(w.c.id)):
        if restricted and row.id not in configured:
            continue
        out.append({
            "workerid": row.id,
            "name": row.name,
            "connected_to": connected.get(row.id, []),
            "configured_on": configured.get(row.id, []),
            "workerinfo": json.loads(row.info),
            "paused": bool(row.paused),
            "pause_reason": row.pause_reason,
            "graceful": bool(row.graceful),
        })
    return out


@pytest_twisted.ensureDeferred
async def test_workers_collection(api):
    r = await api.get("workers")
    assert r.code == 200
    expected = expected_workers(api)
    assert r.json == {"workers": expected, "meta": {"total": len(expected)}}
    # the demo has workers that are paused and not, graceful and not
    assert {w["paused"] for w in expected} == {True, False}
    assert {w["graceful"] for w in expected} == {True, False}


@pytest_twisted.ensureDeferred
async def test_singular_alias(api):
    r = await api.get("worker")
    assert r.code == 200 and r.json["meta"]["total"] == len(expected_workers(api))


@pytest.mark.parametrize("path,masterid,builderid", [
    ("masters/1/workers", 1, None),
    ("masters/2/workers", 2, None),
    ("masters/1/builders/1/workers", 1, 1),
    ("masters/2/builders/1/workers", 2, 1),
    ("builders/1/workers", None, 1),
    ("builders/2/workers", None, 2),
])
@pytest_twisted.ensureDeferred
async def test_workers_under_master_or_builder(api, path, masterid, builderid):
    r = await api.get(path)
    assert r.code == 200
    expected = expected_workers(api, masterid, builderid)
    assert expected
    assert r.json == {"workers": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_workers_under_builder_not_on_master(api):
    # builder 2 is served by master 1 only
    bm = s.builder_masters
    assert [m for (m,) in api.rows(sa.select(bm.c.masterid).where(bm.c.builderid == 2))] == [1]
    r = await api.get("masters/2/builders/2/workers")
    assert (r.code, r.json) == (200, {"workers": [], "meta": {"total": 0}})


@pytest.mark.parametrize("path", [
    "masters/99/workers", "builders/999/workers", "masters/99/builders/1/workers",
    "masters/1/builders/999/workers",
])
@pytest_twisted.ensureDeferred
async def test_workers_missing_parent(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_worker_single_by_id_and_name(api):
    expected = expected_workers(api)
    for worker in expected[:3]:
        for key in (worker["workerid"], worker["name"]):
            r = await api.get(f"workers/{key}")
            assert (r.code, r.json) == (200, {"workers": [worker], "meta": {}})


@pytest_twisted.ensureDeferred
async def test_worker_single_under_master_and_builder(api):
    for masterid, builderid, prefix in [(1, None, "masters/1/"), (None, 1, "builders/1/"),
                                        (2, 1, "masters/2/builders/1/")]:
        for worker in expected_workers(api, masterid, builderid):
            for key in (worker["workerid"], worker["name"]):
                r = await api.get(f"{prefix}workers/{key}")
                assert (r.code, r.json) == (200, {"workers": [worker], "meta": {}})


@pytest_twisted.ensureDeferred
async def test_worker_single_not_on_that_builder(api):
    everywhere = {w["workerid"]: w for w in expected_workers(api)}
    on_builder = {w["workerid"] for w in expected_workers(api, builderid=1)}
    other = next(w for i, w in everywhere.items() if i not in on_builder)
    for key in (other["workerid"], other["name"]):
        r = await api.get(f"builders/1/workers/{key}")
        assert r.code == 404
        r = await api.get(f"masters/1/builders/1/workers/{key}")
        assert r.code == 404


@pytest.mark.parametrize("path", [
    "workers/999", "workers/no-such-worker", "masters/99/workers/1", "builders/999/workers/1",
    "masters/1/builders/999/workers/1", "masters/99/workers/linux-worker-01",
    "workers/1x", "workers/+1",
])
@pytest_twisted.ensureDeferred
async def test_worker_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest.mark.parametrize("query,predicate", [
    ("paused=true", lambda w: w["paused"]),
    ("paused=false", lambda w: not w["paused"]),
    ("paused__ne=true", lambda w: not w["paused"]),
    ("graceful=yes", lambda w: w["graceful"]),
    ("graceful=0", lambda w: not w["graceful"]),
    ("paused=true&graceful=false", lambda w: w["paused"] and not w["graceful"]),
    ("pause_reason__isnull=false", lambda w: w["pause_reason"] is not None),
    ("pause_reason=maintenance+window", lambda w: w["pause_reason"] == "maintenance window"),
    ("name__contains=linux", lambda w: "linux" in w["name"]),
    ("name__contains=LINUX", lambda w: False),
    ("workerid__gt=2&workerid__le=5", lambda w: 2 < w["workerid"] <= 5),
    ("workerid=1&workerid=3", lambda w: w["workerid"] in (1, 3)),
    ("workerid__notin=1&workerid__notin=2", lambda w: w["workerid"] not in (1, 2)),
])
@pytest_twisted.ensureDeferred
async def test_workers_filters(api, query, predicate):
    r = await api.get("workers?" + query)
    assert r.code == 200
    expected = [w for w in expected_workers(api) if predicate(w)]
    assert r.json == {"workers": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_workers_filter_under_master(api):
    r = await api.get("masters/1/workers?paused=false")
    expected = [w for w in expected_workers(api, 1) if not w["paused"]]
    assert r.json == {"workers": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_workers_order_limit_offset_fields(api):
    expected = expected_workers(api)
    r = await api.get("workers?order=-name&limit=2&offset=1")
    assert r.code == 200
    by_name = sorted(expected, key=lambda w: (w["name"], w["workerid"]), reverse=True)
    assert r.json["workers"] == by_name[1:3]
    assert r.json["meta"]["total"] == len(expected)
    r = await api.get("workers?order=paused&order=-workerid")
    ordered = sorted(sorted(expected, key=lambda w: -w["workerid"]), key=lambda w: w["paused"])
    assert [w["workerid"] for w in r.json["workers"]] == [w["workerid"] for w in ordered]
    r = await api.get("workers?field=name&field=paused&paused=true")
    assert r.json["workers"] == [{"name": w["name"], "paused": True}
                                 for w in expected if w["paused"]]
    # a list has no order (COMPAT 29)
    r = await api.get("workers?order=connected_to")
    assert (r.code, r.json) == (400, {"error": "invalid order connected_to: 'connected_to' "
                                      "is a list, which has no order"})


@pytest_twisted.ensureDeferred
async def test_worker_single_fields(api):
    r = await api.get("workers/1?field=name&field=configured_on")
    assert r.code == 200
    worker = expected_workers(api)[0]
    assert r.json["workers"] == [{"name": worker["name"],
                                  "configured_on": worker["configured_on"]}]


@pytest.mark.parametrize("query", [
    "paused=maybe", "workerid=one", "workerinfo=x", "connected_to=1", "configured_on=1",
    "nosuch=1", "name__like=x", "workerid__lt=1&workerid__lt=2", "order=nosuch",
    "field=name&paused=true", "limit=-1",
])
@pytest_twisted.ensureDeferred
async def test_workers_bad_query(api, query):
    r = await api.get("workers?" + query)
    assert r.code == 400
    assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_worker_single_rejects_filters(api):
    r = await api.get("workers/1?paused=true")
    assert r.code == 400
