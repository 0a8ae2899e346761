"""Buildsets and source stamps over HTTP, checked against the demo rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server
from tests.www.test_paths import assert_not_found

ss, p, bs, bss = s.sourcestamps, s.patches, s.buildsets, s.buildset_sourcestamps


def expected_sourcestamps(api) -> dict[int, dict]:
    """Every source stamp as upstream shapes it, by ssid."""
    rows = api.rows(sa.select(ss, p.c.id.label("pid"), p.c.patchlevel, p.c.subdir,
                              p.c.patch_author, p.c.patch_comment)
                    .select_from(ss.outerjoin(p, p.c.id == ss.c.patchid)))
    out = {}
    for r in rows:
        patch = None
        if r.pid is not None:
            patch = {"patchid": r.pid, "body": None, "level": r.patchlevel,
                     "subdir": r.subdir, "author": r.patch_author,
                     "comment": r.patch_comment}
        out[r.id] = {"ssid": r.id, "revision": r.revision, "branch": r.branch,
                     "repository": r.repository, "project": r.project,
                     "codebase": r.codebase, "patch": patch, "created_at": r.created_at}
    return out


def expected_buildsets(api) -> list[dict]:
    """Every buildset as upstream shapes it, its source stamps by ssid (compatibility #31)."""
    stamps = expected_sourcestamps(api)
    links = api.rows(sa.select(bss.c.buildsetid, bss.c.sourcestampid)
                     .order_by(bss.c.sourcestampid))
    out = []
    for r in api.rows(sa.select(bs).order_by(bs.c.id)):
        out.append({
            "bsid": r.id, "external_idstring": r.external_idstring, "reason": r.reason,
            "rebuilt_buildid": r.rebuilt_buildid, "submitted_at": r.submitted_at,
            "complete": bool(r.complete), "complete_at": r.complete_at, "results": r.results,
            "sourcestamps": [stamps[ssid] for bsid, ssid in links if bsid == r.id],
            "parent_buildid": r.parent_buildid,
            "parent_relationship": r.parent_relationship,
        })
    return out


@pytest_twisted.ensureDeferred
async def test_buildsets_collection(api):
    want = expected_buildsets(api)
    r = await api.get("buildsets")
    assert r.code == 200
    assert r.json == {"buildsets": want, "meta": {"total": len(want)}}
    # incomplete buildsets say -1, as stored
    assert any(b["results"] == -1 and not b["complete"] for b in want)
    assert any(len(b["sourcestamps"]) > 1 for b in want)
    assert any(st["patch"] for b in want for st in b["sourcestamps"])
    # some buildsets recorded their stamps in descending ssid order
    recorded = api.rows(sa.select(bss.c.buildsetid, bss.c.sourcestampid).order_by(bss.c.id))
    assert any(a[0] == b[0] and a[1] > b[1] for a, b in itertools.pairwise(recorded))


@pytest_twisted.ensureDeferred
async def test_buildset_single_and_404(api):
    want = expected_buildsets(api)
    r = await api.get(f"buildsets/{want[1]['bsid']}")
    assert (r.code, r.json) == (200, {"buildsets": [want[1]], "meta": {}})
    assert_not_found(await api.get("buildsets/99999"), {"bsid": 99999})
    r = await api.get("buildsets/x1")
    assert (r.code, r.json) == (404, {"error": "Invalid path: buildsets/x1"})
    first = next(b for b in want if b["bsid"] == 1)
    r = await api.get("buildset/1")  # singular alias
    assert (r.code, r.json) == (200, {"buildsets": [first], "meta": {}})


@pytest_twisted.ensureDeferred
async def test_buildsets_filters_order_paging(api):
    want = expected_buildsets(api)
    r = await api.get("buildsets?complete=false")
    sel = [b for b in want if not b["complete"]]
    assert sel and r.json == {"buildsets": sel, "meta": {"total": len(sel)}}
    r = await api.get("buildsets?results=-1&field=bsid&field=results")
    assert r.json["buildsets"] == [{"bsid": b["bsid"], "results": -1}
                                  for b in want if b["results"] == -1]
    ordered = sorted(want, key=lambda b: (-b["submitted_at"], b["bsid"]))
    r = await api.get("buildsets?order=-submitted_at&limit=3&offset=2")
    assert r.json["buildsets"] == ordered[2:5]
    assert r.json["meta"]["total"] == len(want)
    r = await api.get("buildsets?external_idstring__isnull=false&order=-bsid")
    sel = [b for b in reversed(want) if b["external_idstring"] is not None]
    assert r.json["buildsets"] == sel and r.json["meta"]["total"] == len(sel)
    r = await api.get("buildsets?reason__contains=try&reason__contains=Nightly")
    sel = [b for b in want if "try" in b["reason"] or "Nightly" in b["reason"]]
    assert len(sel) > 1 and r.json == {"buildsets": sel, "meta": {"total": len(sel)}}
    # a null parent matches no comparison (the demo buildsets have none: nothing matches)
    r = await api.get("buildsets?parent_buildid__ne=1")
    sel = [b for b in want if b["parent_buildid"] not in (None, 1)]
    assert r.json == {"buildsets": sel, "meta": {"total": len(sel)}}


@pytest_twisted.ensureDeferred
async def test_buildsets_bad_queries(api):
    for q, error in [
            ("sourcestamps=1", "invalid filter value for sourcestamps"),
            ("complete=maybe", "invalid filter value for complete"),
            ("bsid__gt=x", "invalid filter value for bsid__gt"),
            ("bsid__foo=1", "unrecognized query parameter 'bsid__foo': no such operator 'foo'"),
            ("limit=-1", "invalid limit: must not be negative"),
            ("order=nothing", "no such field 'nothing'"),
            ("field=bsid&order=reason", "cannot order on un-selected fields")]:
        r = await api.get("buildsets?" + q)
        assert (r.code, r.json) == (400, {"error": error}), q
    r = await api.get("buildsets/1?bsid=1")
    assert (r.code, r.json) == (400, {"error": "this is not a collection"})


@pytest_twisted.ensureDeferred
async def test_sourcestamps(api):
    stamps = expected_sourcestamps(api)
    r = await api.get("sourcestamps")
    assert r.json == {"sourcestamps": [stamps[k] for k in sorted(stamps)],
                      "meta": {"total": len(stamps)}}
    patched = min(k for k, v in stamps.items() if v["patch"])
    r = await api.get(f"sourcestamps/{patched}")
    assert r.json == {"sourcestamps": [stamps[patched]], "meta": {}}
    assert r.json["sourcestamps"][0]["patch"]["body"] is None
    assert_not_found(await api.get("sourcestamps/99999"), {"ssid": 99999})
    r = await api.get("sourcestamps?branch=main&revision__isnull=true&order=-created_at"
                      "&limit=2")
    sel = sorted((v for v in stamps.values() if v["branch"] == "main" and not v["revision"]),
                 key=lambda v: (-v["created_at"], v["ssid"]))
    assert r.json["sourcestamps"] == sel[:2] and r.json["meta"]["total"] == len(sel)
    r = await api.get("sourcestamps?patch=1")
    assert (r.code, r.json) == (400, {"error": "invalid filter value for patch"})


@pytest_twisted.ensureDeferred
async def test_buildset_sourcestamps(api):
    want = {b["bsid"]: b for b in expected_buildsets(api)}
    multi = next(k for k, v in want.items() if len(v["sourcestamps"]) > 1)
    r = await api.get(f"buildsets/{multi}/sourcestamps")
    stamps = sorted(want[multi]["sourcestamps"], key=lambda x: x["ssid"])
    assert r.json == {"sourcestamps": stamps, "meta": {"total": len(stamps)}}
    path = f"buildsets/{multi}/sourcestamps?order=-ssid&limit=1"
    r = await api.get(path)
    assert r.json == {"sourcestamps": stamps[-1:], "meta": {
        "total": len(stamps), "links": {"next": f"http://testserver/api/v2/{path}&offset=1"}}}
    assert r.header("link") == f'<http://testserver/api/v2/{path}&offset=1>; rel="next"'
    assert_not_found(await api.get("buildsets/99999/sourcestamps"), {"buildsetid": 99999})
    r = await api.get("buildsets/abc/sourcestamps")  # ids are numbers (COMPAT #23)
    assert (r.code, r.json) == (404, {"error": "Invalid path: buildsets/abc/sourcestamps"})


# -- source stamps recorded out of order --------------------------------------------------

@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def reversed_stamps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[Api, int]]:
    """A demo server with one more buildset, newest of all, whose three source stamps
    were recorded in descending ssid order (upstream lists them by ssid)."""
    yield from own_server(request, tmp_path_factory, "reversed-stamps", _add_reversed)


def _add_reversed(api: Api) -> int:
    ssids = [r[0] for r in api.rows(sa.select(ss.c.id).order_by(ss.c.id.desc()).limit(3))]
    bsid = api.rows(sa.select(sa.func.max(bs.c.id) + 1))[0][0]
    link = api.rows(sa.select(sa.func.max(bss.c.id) + 1))[0][0]
    with api.db.engine.begin() as conn:
        conn.execute(bs.insert().values(id=bsid, reason="three stamps", submitted_at=1800000000,
                                        complete=0, results=-1))
        for i, ssid in enumerate(ssids):
            conn.execute(bss.insert().values(id=link + i, buildsetid=bsid, sourcestampid=ssid))
    return bsid


@pytest_twisted.ensureDeferred
async def test_embedded_sourcestamps_by_ssid(reversed_stamps):
    api, bsid = reversed_stamps
    stamps = expected_sourcestamps(api)
    recorded = [r[0] for r in api.rows(sa.select(bss.c.sourcestampid)
                                       .where(bss.c.buildsetid == bsid).order_by(bss.c.id))]
    assert len(recorded) == 3 and recorded == sorted(recorded, reverse=True)
    ascending = [stamps[i] for i in sorted(recorded)]
    want = {b["bsid"]: b for b in expected_buildsets(api)}
    assert want[bsid]["sourcestamps"] == ascending
    r = await api.get("buildsets?limit=20&order=-bsid")
    assert r.code == 200
    assert r.json["buildsets"][0] == want[bsid]
    assert r.json["buildsets"] == [want[k] for k in sorted(want, reverse=True)[:20]]
    for path in (f"buildsets/{bsid}", f"buildset/{bsid}"):
        r = await api.get(path)
        assert (r.code, r.json) == (200, {"buildsets": [want[bsid]], "meta": {}})
    r = await api.get(f"buildsets?bsid={bsid}&field=bsid&field=sourcestamps")
    assert r.json["buildsets"] == [{"bsid": bsid, "sourcestamps": ascending}]
    r = await api.get(f"buildsets/{bsid}/sourcestamps")
    assert r.json == {"sourcestamps": ascending, "meta": {"total": 3}}
    # the one source stamp a change embeds is its own
    ch = s.changes
    changeid, ssid = api.rows(sa.select(ch.c.changeid, ch.c.sourcestampid)
                              .order_by(ch.c.changeid.desc()).limit(1))[0]
    r = await api.get(f"changes/{changeid}")
    assert r.json["changes"][0]["sourcestamp"] == stamps[ssid]
