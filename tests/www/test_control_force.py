"""The ``force`` action of force schedulers (and of their ``schedulers`` rows) over
HTTP: the rows it writes, exactly as upstream writes them, its events, and every error,
on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.config import Config
from buildbot_rest.data.resources.forceschedulers import sync_scheduler_rows
from buildbot_rest.db import hashes
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server

FORM = "Force Build Form"

FORCESCHEDULERS: list[dict[str, Any]] = [
    {"name": "force", "label": "Force", "button_name": "Go",
     "builder_names": ["linux-py311", "macos-py311", "docs-windows-py311"],
     "reason": {"default": "force build", "required": True, "regex": "^[a-z ]+$",
                "maxsize": 30},
     "username": {"need_email": False},
     "priority": {"label": "Priority"},
     "codebases": [{"codebase": "", "revision": {"regex": "^[0-9a-f]*$"}},
                   {"codebase": "lib", "project": "libproj", "repository": False}],
     "parameters": [
         {"kind": "int", "name": "jobs", "default": 2},
         {"kind": "boolean", "name": "clean"},
         {"kind": "choice", "name": "target", "choices": ["debug", "release"],
          "default": "debug"},
         {"kind": "choice", "name": "os", "choices": ["a", "b", "c"], "multiple": True,
          "default": ["a"]},
         {"kind": "string", "name": "note", "maxsize": 5},
         {"kind": "text", "name": "notes"},
     ]},
    {"name": "simple", "builder_names": ["linux-py311"]},
    {"name": "ghosts", "builder_names": ["linux-py311", "ghost"]},
    {"name": "nobuilders", "builder_names": []},
]


def _fill(api: Api) -> dict[str, int]:
    with api.db.engine.begin() as conn:
        return sync_scheduler_rows(conn, api.connector.config.forceschedulers)


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, int]]]:
    config = Config(forceschedulers=FORCESCHEDULERS)
    yield from own_server(request, tmp_path_factory, "force", _fill, config=config,
                          writable=True)


def _builderid(api: Api, name: str) -> int:
    return int(api.rows(sa.select(s.builders.c.id).where(s.builders.c.name == name))[0][0])


def _count(api: Api, table: sa.Table) -> int:
    return int(api.rows(sa.select(sa.func.count()).select_from(table))[0][0])


def _props(api: Api, bsid: int) -> dict[str, str]:
    p = s.buildset_properties
    return dict(api.rows(sa.select(p.c.property_name, p.c.property_value)
                         .where(p.c.buildsetid == bsid)))


def _stamps(api: Api, bsid: int) -> list[dict[str, Any]]:
    ss, bss = s.sourcestamps, s.buildset_sourcestamps
    rows = api.rows(sa.select(ss).join(bss, bss.c.sourcestampid == ss.c.id)
                    .where(bss.c.buildsetid == bsid).order_by(ss.c.codebase))
    return [dict(r._mapping) for r in rows]


def _requests(api: Api, bsid: int) -> list[dict[str, Any]]:
    br = s.buildrequests
    rows = api.rows(sa.select(br).where(br.c.buildsetid == bsid).order_by(br.c.id))
    return [dict(r._mapping) for r in rows]


def _snapshot(api: Api) -> tuple[int, ...]:
    return tuple(_count(api, t) for t in (s.buildsets, s.buildrequests, s.sourcestamps,
                                          s.buildset_properties, s.buildset_sourcestamps))


# -- the effect ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_force_writes_what_upstream_writes(server: Any) -> None:
    api, _ = server
    events = api.record(None, None, None)
    reply = await api.rpc("forceschedulers/force", "force", {
        "reason": "nightly check", "username": "bob", "priority": 5,
        "branch": "dev", "revision": "abc123", "lib_branch": "v2", "lib_revision": "",
        "jobs": "4", "clean": True, "target": "release", "os": ["b", "c"],
        "note": "hi", "notes": "long\ntext",
        "builderNames": ["macos-py311", "linux-py311", "unknown"]})
    assert reply.code == 200, reply.body
    bsid, brids = reply.json["result"]
    linux, macos = _builderid(api, "linux-py311"), _builderid(api, "macos-py311")
    assert sorted(brids) == sorted([str(linux), str(macos)])

    bs = api.rows(sa.select(s.buildsets).where(s.buildsets.c.id == bsid))[0]._mapping
    assert bs["reason"] == "A build was forced by 'bob': nightly check"
    assert (bs["results"], bs["complete"], bs["complete_at"]) == (-1, 0, None)
    assert bs["external_idstring"] is None and bs["rebuilt_buildid"] is None
    assert isinstance(bs["submitted_at"], int)

    # upstream stores json.dumps([value, source]) for each property
    expected = {
        "jobs": 4, "clean": True, "target": "release", "os": ["b", "c"], "note": "hi",
        "notes": "long\ntext", "reason": "nightly check", "owner": "bob"}
    want = {k: json.dumps([v, FORM]) for k, v in expected.items()}
    want["scheduler"] = json.dumps(["force", "Scheduler"])
    assert _props(api, bsid) == want

    stamps = _stamps(api, bsid)
    assert [(x["codebase"], x["branch"], x["revision"], x["repository"], x["project"],
             x["patchid"]) for x in stamps] == [
        ("", "dev", "abc123", "", "", None), ("lib", "v2", "", "", "libproj", None)]
    for x in stamps:
        assert x["ss_hash"] == hashes.ss_hash(x["branch"], x["revision"], x["repository"],
                                              x["project"], x["codebase"], None)

    requests = _requests(api, bsid)
    assert {r["builderid"]: r["id"] for r in requests} == {int(k): v for k, v in brids.items()}
    for r in requests:
        assert (r["priority"], r["results"], r["complete"], r["waited_for"]) == (5, -1, 0, 0)
        assert r["submitted_at"] == bs["submitted_at"]

    keys = [k for k, _ in events]
    assert keys[0] == ("buildsets", str(bsid), "new")
    assert events[0][1]["scheduler"] == "force"
    assert events[0][1]["reason"] == bs["reason"]
    new_requests = [k for k in keys if k[0] == "buildrequests"]
    assert len(new_requests) == 2 and all(k[-1] == "new" for k in new_requests)
    for k, message in events[1:]:
        if k[0] == "buildrequests":
            got = (await api.get(f"buildrequests/{message['buildrequestid']}")).json
            assert message == got["buildrequests"][0]
    # and the answer reads back through the API
    got = (await api.get(f"buildsets/{bsid}/properties")).json["properties"][0]
    assert got["owner"] == ["bob", FORM]


@pytest_twisted.ensureDeferred
async def test_defaults_of_an_empty_form(server: Any) -> None:
    api, _ = server
    reply = await api.rpc("forceschedulers/simple", "force", {})
    assert reply.code == 200, reply.body
    bsid, brids = reply.json["result"]
    assert list(brids) == [str(_builderid(api, "linux-py311"))]
    # the injected owner is "anonymous": the (empty) username field gives the owner
    assert _props(api, bsid) == {
        "reason": json.dumps(["force build", FORM]), "owner": json.dumps(["", FORM]),
        "scheduler": json.dumps(["simple", "Scheduler"])}
    assert api.rows(sa.select(s.buildsets.c.reason).where(s.buildsets.c.id == bsid))[0][0] \
        == "A build was forced by '': force build"
    [stamp] = _stamps(api, bsid)
    assert (stamp["codebase"], stamp["branch"], stamp["revision"], stamp["repository"],
            stamp["project"]) == ("", "", "", "", "")
    assert [r["priority"] for r in _requests(api, bsid)] == [0]


@pytest_twisted.ensureDeferred
async def test_the_web_uis_builderid_as_a_string(server: Any) -> None:
    # upstream's UI sends the builder's id as a string (ui-client.md, force dialog)
    api, _ = server
    builderid = _builderid(api, "docs-windows-py311")
    reply = await api.rpc("forceschedulers/force", "force", {
        "reason": "ui", "builderid": str(builderid)})
    assert reply.code == 200, reply.body
    assert list(reply.json["result"][1]) == [str(builderid)]


@pytest_twisted.ensureDeferred
async def test_defaults_of_declared_fields(server: Any) -> None:
    api, _ = server
    # (reason is required: upstream then ignores its default)
    reply = await api.rpc("forceschedulers/force", "force", {
        "reason": "ok", "builderid": _builderid(api, "docs-windows-py311")})
    assert reply.code == 200, reply.body
    bsid, brids = reply.json["result"]
    assert list(brids) == [str(_builderid(api, "docs-windows-py311"))]
    props = {k: json.loads(v) for k, v in _props(api, bsid).items()}
    assert props == {
        "jobs": [2, FORM], "clean": [False, FORM], "target": ["debug", FORM],
        "os": [["a"], FORM], "note": ["", FORM], "notes": ["", FORM],
        "reason": ["ok", FORM], "owner": ["", FORM], "scheduler": ["force", "Scheduler"]}


@pytest_twisted.ensureDeferred
async def test_the_seed_documents_example_on_the_schedulers_row(server: Any) -> None:
    api, ids = server
    schedulerid = ids["simple"]
    listed = (await api.get("schedulers?name=simple")).json["schedulers"]
    assert [(x["schedulerid"], x["master"]) for x in listed] == [(schedulerid, None)]
    for path in (f"scheduler/{schedulerid}", f"schedulers/{schedulerid}"):
        reply = await api.rpc(path, "force", {"revision": "abcd", "branch": "dev"})
        assert reply.code == 200, reply.body
        result = reply.json["result"]
        assert set(result) == {"buildsetid", "buildrequestids"}
        assert list(result["buildrequestids"]) == [str(_builderid(api, "linux-py311"))]
        [stamp] = _stamps(api, result["buildsetid"])
        assert (stamp["codebase"], stamp["branch"], stamp["revision"]) == ("", "dev", "abcd")


def test_scheduler_rows_are_found_by_name(server: Any) -> None:
    api, ids = server
    sch = s.schedulers
    rows = api.rows(sa.select(sch.c.id, sch.c.name, sch.c.name_hash, sch.c.enabled)
                    .where(sch.c.name.in_([f["name"] for f in FORCESCHEDULERS])))
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == sorted(
        (ids[n], n, hashes.name_hash(n), 1) for n in ids)
    with api.db.engine.begin() as conn:  # a second start finds the same rows
        assert sync_scheduler_rows(conn, api.connector.config.forceschedulers) == ids
    # the demo's own "force" row (run by a master) is found, and left as it is; the
    # rows created here have no master: this server runs no scheduler
    sm = s.scheduler_masters
    assert [r[0] for r in api.rows(sa.select(sm.c.schedulerid).where(
        sm.c.schedulerid.in_(list(ids.values()))))] == [ids["force"]]


@pytest_twisted.ensureDeferred
async def test_get_serves_the_form_without_what_only_forcing_uses(server: Any) -> None:
    api, _ = server
    [entity] = (await api.get("forceschedulers/force")).json["forceschedulers"]
    assert (entity["label"], entity["button_name"]) == ("Force", "Go")

    def keys(fields: list[dict[str, Any]]) -> set[str]:
        found: set[str] = set()
        for f in fields:
            found |= set(f) | keys(f.get("fields", []))
        return found

    assert not [k for k in keys(entity["all_fields"]) if k.startswith("_")]
    reason = entity["all_fields"][0]["fields"][1]
    assert (reason["fullName"], reason["regex"], reason["required"]) == ("reason", None, True)
    assert [f["fullName"] for f in entity["all_fields"][2]["fields"]] == [
        "lib_branch", "lib_project", "lib_revision"]


def test_the_service_records_the_rows_at_start(tmp_path: Any) -> None:
    from buildbot_rest.service import RestService

    config = Config(db_url=f"sqlite:///{tmp_path / 'state.sqlite'}", create=True, port=None,
                    forceschedulers=[{"name": "one"}, {"name": "two", "all_fields": []}])
    service = RestService(config)
    service.prepare()
    assert service.db is not None
    with service.db.engine.connect() as conn:
        rows = conn.execute(sa.select(s.schedulers.c.name, s.schedulers.c.name_hash,
                                      s.schedulers.c.enabled)).all()
    service.db.engine.dispose()
    assert sorted(tuple(r) for r in rows) == [
        ("one", hashes.name_hash("one"), 1), ("two", hashes.name_hash("two"), 1)]


# -- errors ----------------------------------------------------------------------------------

async def _refused(api: Api, path: str, method: str, params: dict[str, Any],
                   code: int = 400) -> Any:
    before = _snapshot(api)
    reply = await api.rpc(path, method, params)
    assert reply.code == code, reply.body
    assert _snapshot(api) == before
    return reply.json["error"]


@pytest_twisted.ensureDeferred
async def test_field_errors_are_upstreams_object(server: Any) -> None:
    api, _ = server
    error = await _refused(api, "forceschedulers/force", "force", {
        "reason": "BAD!", "jobs": "x", "target": "other", "note": "toolong",
        "revision": "xyz", "lib_branch": 5, "priority": "high"})
    assert error == {"code": -32602, "message": {
        "reason": "reason:'BAD!' does not match pattern '^[a-z ]+$'",
        "priority": "invalid literal for int() with base 10: 'high'",
        "revision": "revision:'xyz' does not match pattern '^[0-9a-f]*$'",
        "lib_branch": "'Branch:' must be a string, not a number",
        "jobs": "invalid literal for int() with base 10: 'x'",
        "target": "'other' does not belong to list of available choices "
                  "'['debug', 'release']'",
        "note": "note: is too large 7 > 5",
    }}
    error = await _refused(api, "forceschedulers/force", "force", {"reason": "  "})
    assert error["message"] == {"reason": "'reason' needs to be specified"}
    error = await _refused(api, "forceschedulers/force", "force",
                           {"reason": "ok", "priority": 2**40})
    assert error["message"] == {"priority": "Priority: is out of range"}
    error = await _refused(api, "forceschedulers/simple", "force", {"username": "bob"})
    assert error["message"] == {"username": "username: please fill in email address in "
                                            "the form 'User <email@email.com>'"}
    # an owner from the session wins over the username field (not checked then)
    reply = await api.rpc("forceschedulers/simple", "force", {"reason": "ok"})
    assert reply.code == 200


@pytest_twisted.ensureDeferred
async def test_builder_errors(server: Any) -> None:
    api, _ = server
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("force", {"builderNames": ["nope"]},
         {"builderNames": "builderNames not specified or not supported"}),
        ("force", {"builderNames": "linux-py311"},
         {"builderNames": "must be a list of builder names"}),
        ("force", {"builderid": "1x"}, {"builderid": "must be an integer, not a string"}),
        ("force", {"builderid": " 1"}, {"builderid": "must be an integer, not a string"}),
        ("force", {"builderid": "-1"}, {"builderid": "must be an integer, not a string"}),
        ("force", {"builderid": 999999}, {"builderid": "no builder with builderid 999999"}),
        ("force", {"builderid": _builderid(api, "freebsd-py311")},
         {"builderid": "builder 'freebsd-py311' is not one of force scheduler 'force''s "
                       "builders"}),
        ("ghosts", {}, {"builderNames": "no builder named 'ghost' in the database"}),
        ("nobuilders", {}, {"builderNames": "builderNames not specified or not supported"}),
    ]
    for name, params, errors in cases:
        error = await _refused(api, f"forceschedulers/{name}", "force",
                               {"reason": "ok", **params})
        assert error["code"] == -32602
        for key, text in errors.items():
            assert key in error["message"] and text in error["message"], (name, error)


@pytest_twisted.ensureDeferred
async def test_missing_and_unknown(server: Any) -> None:
    api, ids = server
    error = await _refused(api, "forceschedulers/nosuch", "force", {}, 404)
    assert error["code"] == -32600
    error = await _refused(api, "forceschedulers/force", "Force", {}, 501)
    assert error == {"code": -32601, "message": "action: Force is not supported"}
    error = await _refused(api, "forceschedulers", "force", {}, 501)
    assert error["code"] == -32601
    error = await _refused(api, "schedulers/999999", "force", {}, 404)
    assert error["code"] == -32600
    other = api.rows(sa.select(sa.func.min(s.schedulers.c.id)).where(
        s.schedulers.c.name.notin_(list(ids))))[0][0]
    error = await _refused(api, f"schedulers/{other}", "force", {})
    assert error["code"] == -32602
    assert "is not a force scheduler of this server's configuration" in error["message"]


@pytest_twisted.ensureDeferred
async def test_enabled_is_the_scheduler_rows(
        server: tuple[Api, dict[str, int]]) -> None:
    # as upstream's master reads it: enable on the schedulers row shows in GET
    api, ids = server
    name = "simple"
    schedulerid = ids[name]
    try:
        for enabled in (False, True):
            reply = await api.rpc(f"schedulers/{schedulerid}", "enable",
                                     {"enabled": enabled})
            assert reply.code == 200
            one = (await api.get(f"forceschedulers/{name}")).json["forceschedulers"][0]
            every = (await api.get("forceschedulers")).json["forceschedulers"]
            assert one["enabled"] is enabled
            assert [e["enabled"] for e in every if e["name"] == name] == [enabled]
    finally:
        await api.rpc(f"schedulers/{schedulerid}", "enable", {"enabled": True})


@pytest.mark.parametrize(("params", "field"), [
    ({"username": "u" * 300}, "username"),
    ({"username": "a\u0000b <a@b.c>"}, "username"),
    ({"reason": "r" * 300}, "reason"),
])
@pytest_twisted.ensureDeferred
async def test_the_field_that_spoils_the_buildsets_reason_is_named(
        server: Any, params: dict[str, Any], field: str) -> None:
    api, _ = server
    before = _count(api, s.buildsets)
    reply = await api.rpc("forceschedulers/simple", "force", params)
    assert reply.code == 400
    assert reply.json["error"]["code"] == -32602
    assert list(reply.json["error"]["message"]) == [field]
    assert _count(api, s.buildsets) == before
