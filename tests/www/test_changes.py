"""Changes over HTTP, checked against the demo rows; and the changes of a build."""

from __future__ import annotations

import json

import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.www.test_buildsets import expected_sourcestamps
from tests.www.test_paths import assert_not_found

ch, cf, cp = s.changes, s.change_files, s.change_properties


def expected_changes(api) -> dict[int, dict]:
    """Every change as upstream shapes it, by changeid."""
    stamps = expected_sourcestamps(api)
    files: dict[int, list] = {}
    for changeid, filename in api.rows(sa.select(cf.c.changeid, cf.c.filename)):
        files.setdefault(changeid, []).append(filename)
    props: dict[int, dict] = {}
    for changeid, name, value in api.rows(sa.select(cp.c.changeid, cp.c.property_name,
                                                    cp.c.property_value)):
        props.setdefault(changeid, {})[name] = json.loads(value)
    out = {}
    for r in api.rows(sa.select(ch)):
        out[r.changeid] = {
            "changeid": r.changeid,
            "parent_changeids": [r.parent_changeids] if r.parent_changeids else [],
            "author": r.author, "committer": r.committer,
            "files": files.get(r.changeid, []), "comments": r.comments,
            "revision": r.revision, "when_timestamp": r.when_timestamp, "branch": r.branch,
            "category": r.category, "revlink": r.revlink,
            "properties": props.get(r.changeid, {}), "repository": r.repository,
            "project": r.project, "codebase": r.codebase,
            "sourcestamp": stamps[r.sourcestampid],
        }
    return out


def changes_of_build(api, buildid: int) -> list[int]:
    """Upstream's getChangesForBuild, step by step over the rows."""
    b, br, bss, ss = s.builds, s.buildrequests, s.buildset_sourcestamps, s.sourcestamps

    def stamps(bid):
        return api.rows(sa.select(ss.c.id, ss.c.codebase, ss.c.repository, ss.c.branch)
                        .join_from(b, br, br.c.id == b.c.buildrequestid)
                        .join(bss, bss.c.buildsetid == br.c.buildsetid)
                        .join(ss, ss.c.id == bss.c.sourcestampid).where(b.c.id == bid))

    changes = {r.changeid: r for r in api.rows(sa.select(ch))}

    def latest(ssid):
        ids = [c for c, r in changes.items() if r.sourcestampid == ssid]
        return max(ids) if ids else None

    build = api.rows(sa.select(b).where(b.c.id == buildid))[0]
    mine = stamps(buildid)
    from_changes = {st.codebase: latest(st.id) for st in mine}
    wanted = {(st.repository, st.branch, st.codebase) for st in mine}
    prev = None
    for cand in api.rows(sa.select(b).where(b.c.builderid == build.builderid,
                                            b.c.number < build.number, b.c.results == 0)
                         .order_by(b.c.complete_at.desc(), b.c.id.desc())):
        if {(st.repository, st.branch, st.codebase) for st in stamps(cand.id)} == wanted:
            prev = cand.id
            break
    to_changes = {}
    if prev is not None:
        for st in stamps(prev):
            if latest(st.id) is not None:
                to_changes[st.codebase] = latest(st.id)
    out = []
    for cb, cid in from_changes.items():
        if cid is None or to_changes.get(cb) == cid:
            continue
        out.append(cid)
        while changes[cid].parent_changeids and changes[cid].parent_changeids != to_changes.get(cb):
            cid = changes[cid].parent_changeids
            out.append(cid)
    return out


@pytest_twisted.ensureDeferred
async def test_changes_newest_first_by_default(api):
    want = expected_changes(api)
    r = await api.get("changes")
    assert r.code == 200
    assert r.json == {"changes": [want[k] for k in sorted(want, reverse=True)],
                      "meta": {"total": len(want)}}
    assert any(c["parent_changeids"] for c in want.values())
    assert any(len(c["properties"]) > 1 for c in want.values())


@pytest_twisted.ensureDeferred
async def test_changes_order_is_honoured(api):
    want = expected_changes(api)
    r = await api.get("changes?order=changeid&limit=3")
    assert r.json["changes"] == [want[k] for k in sorted(want)[:3]]
    assert r.json["meta"]["total"] == len(want)
    r = await api.get("changes?order=-changeid&limit=3&offset=1")
    assert r.json["changes"] == [want[k] for k in sorted(want, reverse=True)[1:4]]
    link = "http://testserver/api/v2/changes?order=-changeid&limit=3&offset="
    assert r.json["meta"] == {"total": len(want),
                              "links": {"next": link + "4", "prev": link + "0"}}
    r = await api.get("changes?order=author&order=-when_timestamp&field=changeid"
                      "&field=author&field=when_timestamp")
    ordered = sorted(want.values(), key=lambda c: c["changeid"])
    ordered.sort(key=lambda c: -c["when_timestamp"])
    ordered.sort(key=lambda c: c["author"])
    assert r.json == {"changes": [{k: c[k] for k in ("changeid", "author", "when_timestamp")}
                                  for c in ordered], "meta": {"total": len(want)}}


@pytest_twisted.ensureDeferred
async def test_change_single_and_404(api):
    want = expected_changes(api)
    k = max(want)
    r = await api.get(f"changes/{k}")
    assert (r.code, r.json) == (200, {"changes": [want[k]], "meta": {}})
    assert_not_found(await api.get("changes/99999"), {"changeid": 99999})
    r = await api.get("change/1")  # singular alias
    assert (r.code, r.json) == (200, {"changes": [want[1]], "meta": {}})


@pytest_twisted.ensureDeferred
async def test_change_filters(api):
    want = expected_changes(api)
    newest = sorted(want, reverse=True)

    async def ids(query):
        r = await api.get("changes?" + query)
        assert r.code == 200, r.json
        assert r.json["meta"]["total"] == len(r.json["changes"])
        return [c["changeid"] for c in r.json["changes"]]

    assert await ids("branch=main") == [k for k in newest if want[k]["branch"] == "main"]
    assert await ids("category__isnull=false") == [
        k for k in newest if want[k]["category"] is not None]
    a_file = want[newest[0]]["files"][0]
    assert await ids(f"files__contains={a_file}") == [
        k for k in newest if a_file in want[k]["files"]]
    assert await ids("parent_changeids__contains=1") == [
        k for k in newest if 1 in want[k]["parent_changeids"]]
    assert await ids("comments__contains=FIX") == []  # case-sensitive substring
    assert await ids("when_timestamp__lt=1700001000&codebase=") == [
        k for k in newest if want[k]["when_timestamp"] < 1700001000 and not want[k]["codebase"]]
    # a Python-side filter still pages after filtering
    r = await api.get(f"changes?files__contains={a_file}&limit=1")
    with_file = [k for k in newest if a_file in want[k]["files"]]
    assert len(with_file) > 1
    assert r.json["changes"] == [want[with_file[0]]]
    assert r.json["meta"]["total"] == len(with_file)


@pytest_twisted.ensureDeferred
async def test_change_bad_queries(api):
    for q, error in [
            ("properties=1", "invalid filter value for properties"),
            ("sourcestamp=1", "invalid filter value for sourcestamp"),
            ("when_timestamp__gt=x", "invalid filter value for when_timestamp__gt"),
            ("changeid__lt=1&changeid__lt=2",
             "invalid filter changeid__lt: operator 'lt' takes one value"),
            ("author__like=x",
             "unrecognized query parameter 'author__like': no such operator 'like'"),
            ("field=files&order=author", "cannot order on un-selected fields")]:
        r = await api.get("changes?" + q)
        assert (r.code, r.json) == (400, {"error": error}), q


@pytest_twisted.ensureDeferred
async def test_sourcestamp_changes(api):
    want = expected_changes(api)
    by_ss: dict[int, int] = {}
    for k, c in want.items():
        by_ss[c["sourcestamp"]["ssid"]] = max(k, by_ss.get(c["sourcestamp"]["ssid"], 0))
    ssid, changeid = next(iter(sorted(by_ss.items())))
    r = await api.get(f"sourcestamps/{ssid}/changes")
    assert r.json == {"changes": [want[changeid]], "meta": {"total": 1}}
    no_change = set(expected_sourcestamps(api)) - set(by_ss)
    r = await api.get(f"sourcestamps/{min(no_change)}/changes")
    assert r.json == {"changes": [], "meta": {"total": 0}}
    assert_not_found(await api.get("sourcestamps/99999/changes"), {"ssid": 99999})


@pytest_twisted.ensureDeferred
async def test_build_changes(api):
    want = expected_changes(api)
    builds = api.rows(sa.select(s.builds.c.id, s.builds.c.builderid, s.builds.c.number)
                      .order_by(s.builds.c.id))
    seen_chain = seen_stop = False
    for build in builds:
        expect = sorted(changes_of_build(api, build.id), reverse=True)
        r = await api.get(f"builds/{build.id}/changes")
        assert r.code == 200
        assert r.json == {"changes": [want[k] for k in expect],
                          "meta": {"total": len(expect)}}, build.id
        seen_chain |= len(expect) > 1
        seen_stop |= 0 < len(expect) < len([k for k in want if k <= max(expect)])
    assert seen_chain and seen_stop
    build = builds[-1]
    expect = sorted(changes_of_build(api, build.id), reverse=True)
    r = await api.get(f"builders/{build.builderid}/builds/{build.number}/changes"
                      "?order=changeid&field=changeid")
    assert r.json["changes"] == [{"changeid": k} for k in sorted(expect)]
    assert_not_found(await api.get("builds/99999/changes"), {"buildid": 99999})
    assert_not_found(await api.get(f"builders/{build.builderid}/builds/99999/changes"),
                     {"builderid": build.builderid, "build_number": 99999})
