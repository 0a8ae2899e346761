"""Build data over HTTP: listings without values, one entry, and the raw value."""

from __future__ import annotations

import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s


def data_rows(api, buildid):
    bd = s.build_data
    return api.rows(sa.select(bd).where(bd.c.buildid == buildid).order_by(bd.c.name))


def build_with_data(api, at_least=2):
    bd = s.build_data
    buildid = api.rows(sa.select(bd.c.buildid).group_by(bd.c.buildid)
                       .having(sa.func.count() >= at_least).order_by(bd.c.buildid))[0][0]
    b, bl = s.builds, s.builders
    number, builderid, name = api.rows(
        sa.select(b.c.number, bl.c.id, bl.c.name).join_from(b, bl, bl.c.id == b.c.builderid)
        .where(b.c.id == buildid))[0]
    return buildid, [f"builds/{buildid}", f"builders/{builderid}/builds/{number}",
                     f"builders/{name}/builds/{number}"]


def item(row):
    return {"buildid": row.buildid, "name": row.name, "length": row.length, "value": None,
            "source": row.source}


@pytest_twisted.ensureDeferred
async def test_listing_every_form(api):
    buildid, forms = build_with_data(api)
    expected = [item(r) for r in data_rows(api, buildid)]
    assert len(expected) >= 2
    for path in forms:
        r = await api.get(f"{path}/data")
        assert (r.code, r.json) == (200, {"build_data": expected,
                                          "meta": {"total": len(expected)}}), path


@pytest_twisted.ensureDeferred
async def test_listing_empty_and_missing(api):
    bd = s.build_data
    buildid = api.rows(sa.select(s.builds.c.id).where(
        s.builds.c.id.not_in(sa.select(bd.c.buildid))).limit(1))[0][0]
    r = await api.get(f"builds/{buildid}/data")
    assert (r.code, r.json) == (200, {"build_data": [], "meta": {"total": 0}})
    for path in ("builds/99999/data", "builders/99999/builds/1/data",
                 "builders/nosuch/builds/1/data", "builders/1/builds/99999/data",
                 "builds/99999/data/coverage", "builds/99999/data/coverage/value"):
        r = await api.get(path)
        assert r.code == 404, path
        assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_listing_query(api):
    buildid, _ = build_with_data(api)
    rows = data_rows(api, buildid)
    r = await api.get(f"builds/{buildid}/data?order=-length&field=name&field=length")
    want = sorted(rows, key=lambda x: -x.length)
    assert r.json["build_data"] == [{"name": x.name, "length": x.length} for x in want]
    r = await api.get(f"builds/{buildid}/data?name={rows[0].name}")
    assert r.json["build_data"] == [item(rows[0])]
    r = await api.get(f"builds/{buildid}/data?order=value&limit=1")
    assert (r.code, r.json) == (400, {"error": "invalid order value: 'value' is bytes, "
                                      "which has no order"})
    r = await api.get(f"builds/{buildid}/data?value=x")
    assert r.code == 400


@pytest_twisted.ensureDeferred
async def test_single_and_value(api):
    buildid, forms = build_with_data(api)
    for row in data_rows(api, buildid):
        for path in forms:
            r = await api.get(f"{path}/data/{row.name}")
            assert (r.code, r.json) == (200, {"build_data": [item(row)], "meta": {}}), path
            r = await api.get(f"{path}/data/{row.name}/value")
            assert r.code == 200
            assert r.body == bytes(row.value)
            assert r.header("content-type") == "application/octet-stream; charset=utf-8"
            assert r.header("content-disposition") == f'attachment; filename="{row.name}"'
    for path in (f"builds/{buildid}/data/nosuch", f"builds/{buildid}/data/nosuch/value"):
        r = await api.get(path)
        assert r.code == 404, path
    # any name is a name (COMPAT 27): one that is not stored is not found
    for name in ("1abc", "no%20such"):
        r = await api.get(f"builds/{buildid}/data/{name}")
        assert r.code == 404 and r.json["error"].startswith("not found"), name
