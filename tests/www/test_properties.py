"""Properties of builds, buildsets and changes, as dicts and as ``_properties`` lists."""

from __future__ import annotations

import json

import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s

bp, bsp, cp = s.build_properties, s.buildset_properties, s.change_properties


def build_props(api, buildid: int) -> dict:
    return {r.name: [json.loads(r.value), r.source]
            for r in api.rows(sa.select(bp).where(bp.c.buildid == buildid))}


def sourced_props(api, table, owner, ownerid: int) -> dict:
    return {r.property_name: json.loads(r.property_value)
            for r in api.rows(sa.select(table).where(owner == ownerid))}


def as_list(props: dict) -> list[dict]:
    """The ``_properties`` rows upstream makes of a dict (in the rows' natural order):
    value JSON-encoded again."""
    return [{"name": k, "source": v[1], "value": json.dumps(v[0])} for k, v in props.items()]


@pytest_twisted.ensureDeferred
async def test_build_properties(api):
    b = api.rows(sa.select(s.builds).order_by(s.builds.c.id.desc()).limit(1))[0]
    want = build_props(api, b.id)
    assert want
    for path in (f"builds/{b.id}/properties",
                 f"builders/{b.builderid}/builds/{b.number}/properties"):
        r = await api.get(path)
        assert (r.code, r.json) == (200, {"properties": [want], "meta": {}})
        r = await api.get(path + "?limit=1&offset=0&property=x")
        assert r.json == {"properties": [want], "meta": {}}
    # a missing build is 404 (upstream answers {})
    for path in ("builds/99999/properties", f"builders/{b.builderid}/builds/99999/properties",
                 "builders/99999/builds/1/properties"):
        r = await api.get(path)
        assert r.code == 404 and "error" in r.json


@pytest_twisted.ensureDeferred
async def test_buildset_properties(api):
    want = sourced_props(api, bsp, bsp.c.buildsetid, 1)
    assert want
    r = await api.get("buildsets/1/properties")
    assert (r.code, r.json) == (200, {"properties": [want], "meta": {}})
    r = await api.get("buildsets/99999/properties")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_properties_bad_queries(api):
    # upstream crashes on these (no fields to check against); they are client errors
    for q in ("name=x", "order=name", "field=name", "limit=x", "foo__eq=1"):
        for path in ("builds/1/properties", "buildsets/1/properties"):
            r = await api.get(f"{path}?{q}")
            assert r.code == 400, (path, q)
            assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_property_lists(api):
    cases = [
        ("builds/1/property_list", as_list(build_props(api, 1))),
        ("buildsets/1/properties_list", as_list(sourced_props(api, bsp, bsp.c.buildsetid, 1))),
        ("changes/3/properties_list", as_list(sourced_props(api, cp, cp.c.changeid, 3))),
    ]
    for path, want in cases:
        assert len(want) > 1, path
        r = await api.get(path)
        assert (r.code, r.json) == (200, {"_properties": want,
                                          "meta": {"total": len(want)}}), path
        # value is a JSON string of the value (double encoded)
        assert all(isinstance(x["value"], str) for x in r.json["_properties"])
        for order in ("-name", "source", "-source"):
            key = order.lstrip("-")
            ordered = sorted(want, key=lambda x: x[key], reverse=order.startswith("-"))
            r = await api.get(f"{path}?order={order}&limit=2&offset=1")
            assert r.json["_properties"] == ordered[1:3], (path, order)
            assert r.json["meta"]["total"] == len(want)
        # JSON text has no order (compatibility #29); it filters as text
        r = await api.get(f"{path}?order=value")
        assert (r.code, r.json) == (400, {"error": "invalid order value: 'value' is a JSON "
                                          "object, which has no order"})
        first = want[0]
        for field in ("name", "source", "value"):
            r = await api.get(f"{path}?{field}={json_quote(first[field])}")
            sel = [x for x in want if x[field] == first[field]]
            assert r.json == {"_properties": sel, "meta": {"total": len(sel)}}, (path, field)
        r = await api.get(f"{path}?value__contains=%22&field=name&field=value")
        sel = [{"name": x["name"], "value": x["value"]} for x in want if '"' in x["value"]]
        assert r.json["_properties"] == sel
        r = await api.get(f"{path}?source__ne={json_quote(first['source'])}")
        assert r.json["_properties"] == [x for x in want if x["source"] != first["source"]]


def json_quote(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


@pytest_twisted.ensureDeferred
async def test_property_lists_missing_parent_and_bad_queries(api):
    for path in ("builds/99999/property_list", "buildsets/99999/properties_list",
                 "changes/99999/properties_list"):
        r = await api.get(path)
        assert r.code == 404, path
    for q in ("nosuch=1", "name__like=x", "order=nosuch", "value__lt=1&value__lt=2"):
        r = await api.get(f"builds/1/property_list?{q}")
        assert r.code == 400, q


@pytest_twisted.ensureDeferred
async def test_application_spec_types(api):
    r = await api.get("application.spec")
    by_path = {e["path"]: e for e in r.json["specs"]}
    assert by_path["builds/n:buildid/properties"]["type"] == "sourcedproperties"
    assert by_path["builds/n:buildid/properties"]["plural"] == "properties"
    assert by_path["builds/n:buildid/properties"]["type_spec"] == {"name": "sourcedproperties"}
    lst = by_path["changes/n:changeid/properties_list"]
    assert (lst["type"], lst["plural"]) == ("_property", "_properties")
    assert [f["type"] for f in lst["type_spec"]["fields"]] == ["string", "string", "jsonobject"]
    assert by_path["buildsets/:buildsetid/sourcestamps"]["type"] == "sourcestamp"
    change = by_path["changes"]["type_spec"]["fields"]
    assert [f["name"] for f in change][:3] == ["changeid", "parent_changeids", "author"]
    assert change[-1]["type"] == "sourcestamp"
