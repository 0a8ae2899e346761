"""Schedulers and change sources, with their masters embedded."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s

BASE = "http://testserver/api/v2/"


def master_of(api: Any, masterid: int | None) -> dict[str, Any] | None:
    if masterid is None:
        return None
    m = api.rows(sa.select(s.masters).where(s.masters.c.id == masterid))[0]
    return {"masterid": m.id, "name": m.name, "active": bool(m.active),
            "last_active": m.last_active, "link": f"{BASE}masters/{m.id}"}


def expected_schedulers(api: Any, masterid: int | None = None) -> list[dict[str, Any]]:
    sch, sm = s.schedulers, s.scheduler_masters
    rows = api.rows(sa.select(sch.c.id, sch.c.name, sch.c.enabled, sm.c.masterid)
                    .select_from(sch.outerjoin(sm, sm.c.schedulerid == sch.c.id))
                    .order_by(sch.c.id))
    return [{"schedulerid": r.id, "name": r.name, "enabled": bool(r.enabled),
             "master": master_of(api, r.masterid)}
            for r in rows if masterid is None or r.masterid == masterid]


def expected_changesources(api: Any, masterid: int | None = None) -> list[dict[str, Any]]:
    cs, csm = s.changesources, s.changesource_masters
    rows = api.rows(sa.select(cs.c.id, cs.c.name, csm.c.masterid)
                    .select_from(cs.outerjoin(csm, csm.c.changesourceid == cs.c.id))
                    .order_by(cs.c.id))
    return [{"changesourceid": r.id, "name": r.name, "master": master_of(api, r.masterid)}
            for r in rows if masterid is None or r.masterid == masterid]


# -- schedulers -----------------------------------------------------------------------------

@pytest.mark.parametrize("path,masterid", [
    ("schedulers", None), ("scheduler", None), ("masters/1/schedulers", 1),
    ("masters/2/schedulers", 2),
])
@pytest_twisted.ensureDeferred
async def test_schedulers_collection(api, path, masterid):
    r = await api.get(path)
    assert r.code == 200
    expected = expected_schedulers(api, masterid)
    assert expected
    assert r.json == {"schedulers": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_schedulers_demo_shape(api):
    # the demo has a disabled scheduler without a master
    r = await api.get("schedulers?master__isnull=true")
    assert r.code == 400  # an embedded entity is not filterable
    everything = expected_schedulers(api)
    assert any(x["master"] is None and not x["enabled"] for x in everything)


@pytest_twisted.ensureDeferred
async def test_scheduler_single(api):
    for sch in expected_schedulers(api):
        r = await api.get(f"schedulers/{sch['schedulerid']}")
        assert (r.code, r.json) == (200, {"schedulers": [sch], "meta": {}})
        if sch["master"] is not None:
            masterid = sch["master"]["masterid"]
            r = await api.get(f"masters/{masterid}/schedulers/{sch['schedulerid']}")
            assert (r.code, r.json) == (200, {"schedulers": [sch], "meta": {}})
            other = 3 - masterid
            r = await api.get(f"masters/{other}/schedulers/{sch['schedulerid']}")
            assert r.code == 404
        else:
            r = await api.get(f"masters/1/schedulers/{sch['schedulerid']}")
            assert r.code == 404


@pytest.mark.parametrize("path", [
    "schedulers/999", "masters/1/schedulers/999", "masters/99/schedulers/1",
    "masters/99/schedulers", "schedulers/x", "schedulers/-1",
])
@pytest_twisted.ensureDeferred
async def test_scheduler_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest.mark.parametrize("query,predicate", [
    ("enabled=false", lambda x: not x["enabled"]),
    ("enabled=true", lambda x: x["enabled"]),
    ("enabled__ne=true", lambda x: not x["enabled"]),
    ("name=all&name=try", lambda x: x["name"] in ("all", "try")),
    ("name__contains=ly", lambda x: "ly" in x["name"]),
    ("schedulerid__ge=3", lambda x: x["schedulerid"] >= 3),
])
@pytest_twisted.ensureDeferred
async def test_schedulers_filters(api, query, predicate):
    r = await api.get("schedulers?" + query)
    assert r.code == 200
    expected = [x for x in expected_schedulers(api) if predicate(x)]
    assert expected
    assert r.json == {"schedulers": expected, "meta": {"total": len(expected)}}


@pytest_twisted.ensureDeferred
async def test_schedulers_order_and_page(api):
    expected = expected_schedulers(api)
    r = await api.get("schedulers?order=-name&limit=2&offset=1")
    by_name = sorted(expected, key=lambda x: x["name"], reverse=True)
    assert r.json["schedulers"] == by_name[1:3]
    assert r.json["meta"]["total"] == len(expected)
    r = await api.get("schedulers?field=name&field=master&order=name")
    assert r.json["schedulers"] == [{"name": x["name"], "master": x["master"]}
                                    for x in sorted(expected, key=lambda x: x["name"])]
    # an embedded entity has no order (COMPAT 29)
    r = await api.get("schedulers?order=master")
    assert (r.code, r.json) == (400, {"error": "invalid order master: 'master' is a JSON "
                                      "object, which has no order"})


@pytest.mark.parametrize("query", [
    "enabled=maybe", "master=1", "schedulerid=x", "order=nosuch", "nosuch=1",
])
@pytest_twisted.ensureDeferred
async def test_schedulers_bad_query(api, query):
    r = await api.get("schedulers?" + query)
    assert r.code == 400
    assert "error" in r.json


# -- change sources -------------------------------------------------------------------------

@pytest.mark.parametrize("path,masterid", [
    ("changesources", None), ("changesource", None), ("masters/1/changesources", 1),
    ("masters/2/changesources", 2),
])
@pytest_twisted.ensureDeferred
async def test_changesources_collection(api, path, masterid):
    r = await api.get(path)
    assert r.code == 200
    expected = expected_changesources(api, masterid)
    assert expected
    assert r.json == {"changesources": expected, "meta": {"total": len(expected)}}
    if masterid is None:
        assert any(x["master"] is None for x in expected)


@pytest_twisted.ensureDeferred
async def test_changesource_single(api):
    for cs in expected_changesources(api):
        r = await api.get(f"changesources/{cs['changesourceid']}")
        assert (r.code, r.json) == (200, {"changesources": [cs], "meta": {}})
        for masterid in (1, 2):
            r = await api.get(f"masters/{masterid}/changesources/{cs['changesourceid']}")
            if cs["master"] is not None and cs["master"]["masterid"] == masterid:
                assert (r.code, r.json) == (200, {"changesources": [cs], "meta": {}})
            else:
                assert r.code == 404


@pytest.mark.parametrize("path", [
    "changesources/999", "masters/1/changesources/999", "masters/99/changesources/1",
    "masters/99/changesources",
])
@pytest_twisted.ensureDeferred
async def test_changesource_missing(api, path):
    r = await api.get(path)
    assert r.code == 404
    assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_changesources_filters_order(api):
    expected = expected_changesources(api)
    r = await api.get("changesources?name__contains=gizmo&order=-changesourceid")
    want = [x for x in reversed(expected) if "gizmo" in x["name"]]
    assert want
    assert r.json == {"changesources": want, "meta": {"total": len(want)}}
    r = await api.get("changesources?limit=1&offset=2&field=changesourceid")
    assert r.json["changesources"] == [{"changesourceid": expected[2]["changesourceid"]}]
    assert r.json["meta"]["total"] == len(expected)
    r = await api.get("changesources?master=1")
    assert r.code == 400
    r = await api.get("changesources/1?name=x")
    assert r.code == 400
