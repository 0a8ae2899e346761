"""The security suite of authorization: one test per hole of upstream's (protocol.md 7.2,
COMPAT 7, 8, 9, 20), each showing it closed over a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_twisted

from tests.www.conftest import Api
from tests.www.test_authz_http import (
    BACKENDS,
    RULES,
    SECRET,
    database,
    roles,
    secret_build,
    serve,
)


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from serve(database(request, tmp_path_factory, "holes"), RULES)


@pytest.fixture(scope="module", params=BACKENDS)
def closed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Reads for "users", control for "admins"."""
    yield from serve(database(request, tmp_path_factory, "closed"), {"allow": [
        {"match": "any_control", "role": "admins"},
        {"match": "any", "role": "users"}]})


#: (path, action) of every action of every endpoint, on entities of the demo data
ACTIONS = [("builds/1", "stop"), ("builds/1", "rebuild"), ("buildrequests/1", "cancel"),
           ("buildrequests/1", "set_priority"), ("workers/1", "stop"), ("workers/1", "kill"),
           ("workers/1", "pause"), ("workers/1", "unpause"), ("schedulers/1", "enable"),
           ("schedulers/1", "force"), ("forceschedulers/force-all", "force")]


def _variants(action: str) -> list[str]:
    return sorted({action.capitalize(), action.upper(), action[:-1] + action[-1].upper(),
                   action.title().replace("_", "")} - {action})


@pytest_twisted.ensureDeferred
async def test_case_variants_of_every_action_are_not_run(server: Api) -> None:
    """Upstream dispatches ``Stop`` to ``stop`` but its matcher only knows ``stop``: an
    anonymous ``Stop`` stopped the build. Here every variant is an unknown method (501),
    and nothing is published."""
    seen = server.record(None, None, None, None)
    for path, action in ACTIONS:
        for variant in _variants(action):
            reply = await server.rpc(path, variant, {"enabled": False, "priority": 1})
            assert reply.code == 501, (path, variant, reply.body)
            assert reply.json["error"]["code"] == -32601
        # the action itself is refused to anonymous callers
        reply = await server.rpc(path, action, {"enabled": False, "priority": 1})
        assert reply.code == 403, (path, action, reply.body)
    assert seen == []


@pytest_twisted.ensureDeferred
async def test_case_variants_under_any_control(closed: Api) -> None:
    for path, action in ACTIONS:
        for variant in _variants(action):
            reply = await closed.rpc(path, variant, headers=roles("users", "admins"))
            assert reply.code == 501, (path, variant)


@pytest_twisted.ensureDeferred
async def test_head_is_a_read(closed: Api) -> None:
    """Upstream's any_control matched HEAD: an anonymous HEAD was 403 where GET was
    200 (COMPAT 7)."""
    for method in ("GET", "HEAD"):
        assert (await closed.request(method, "api/v2/masters",
                                     headers=roles("users"))).code == 200
        assert (await closed.request(method, "api/v2/masters")).code == 403


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404_under_a_deny_all_rule(closed: Api) -> None:
    """Upstream authorized before resolving: a catch-all rule turned 404 into 403
    (COMPAT 9)."""
    assert (await closed.get("nosuchthing")).code == 404
    assert (await closed.get("builds/1/nosuch")).code == 404
    assert (await closed.rpc("nosuchthing", "stop")).code == 404


@pytest_twisted.ensureDeferred
async def test_every_path_to_a_protected_builds_logs(server: Api) -> None:
    """Upstream's view matcher never matched; and a rule on builds must cover logs,
    steps and contents however they are reached."""
    b = secret_build(server)
    forms = [f"builds/{b['buildid']}", f"builders/{b['builderid']}/builds/{b['number']}",
             f"builders/{SECRET}/builds/{b['number']}"]
    steps = [f"steps/{b['stepid']}"] + [f"{f}/steps/{b['step_name']}" for f in forms]
    logs = [f"logs/{b['logid']}"] + [f"{st}/logs/{b['slug']}" for st in steps]
    paths = [*forms, *(f"{f}/{x}" for f in forms
                       for x in ("steps", "changes", "properties", "property_list", "data",
                                 "test_result_sets", "triggered_builds")),
             *steps, *(f"{st}/logs" for st in steps), *logs,
             *(f"{lg}/{x}" for lg in logs for x in ("contents", "raw", "raw_inline")),
             f"buildrequests/{b['buildrequestid']}",
             f"buildrequests/{b['buildrequestid']}/builds"]
    for path in paths:
        assert (await server.get(path, headers=roles("dev"))).code == 403, path
        assert (await server.get(path)).code == 403, path
        allowed = await server.get(path, headers=roles("secret"))
        assert allowed.code == 200, (path, allowed.body[:200])


@pytest_twisted.ensureDeferred
async def test_collections_are_filtered(server: Api) -> None:
    b = secret_build(server)
    for path in ("builds", "buildrequests", "builds?field=number", "builds?limit=1000"):
        items = (await server.get(path)).json
        key = path.split("?")[0]
        assert items[key], path
        full = (await server.get(f"{key}?field=buildid" if key == "builds" else key,
                                 headers=roles("secret"))).json
        assert items["meta"]["total"] < full["meta"]["total"]
    hidden = await server.get(f"builds?builderid={b['builderid']}")
    assert hidden.json["builds"] == [] and hidden.json["meta"]["total"] == 0


@pytest_twisted.ensureDeferred
async def test_control_roles(server: Api) -> None:
    seen = server.record("control", None, None, None)
    assert (await server.rpc("builds/1", "stop", headers=roles("dev"))).code == 403
    assert seen == []
    # (build 1 is the secret builder's: acting on it needs its view role too)
    reply = await server.rpc("builds/1", "stop", {"reason": "test"},
                             headers=roles("admins", "secret"))
    assert reply.code == 200
    assert (await server.rpc("builds/99999", "stop")).code == 404  # (nothing to protect)


@pytest.fixture(scope="module", params=BACKENDS)
def release(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Forcing the secret builder needs "admins"; the other builder is free."""
    yield from serve(database(request, tmp_path_factory, "release"), {"allow": [
        {"match": "force", "builder": SECRET, "role": "admins"}]})


@pytest_twisted.ensureDeferred
async def test_force_rules_by_builder_take_the_ui_form_and_bad_ids(release: Api) -> None:
    """The web UI's force form sends ``builderid`` as a string of digits: the rule is
    decided for that builder (a string did count as every builder of the scheduler, so
    the UI could not force a free builder). A number beyond the database's integers is
    the action's 400 (it was a 500 when a builder rule was configured)."""
    ids = {b["name"]: b["builderid"]
           for b in (await release.get("builders")).json["builders"]}
    free = next(i for name, i in ids.items() if name == "macos-py311")
    for builderid in (free, str(free)):
        reply = await release.rpc("forceschedulers/force-all", "force",
                                  {"builderid": builderid})
        assert reply.code == 200, reply.body
    for builderid in (ids[SECRET], str(ids[SECRET])):
        reply = await release.rpc("forceschedulers/force-all", "force",
                                  {"builderid": builderid})
        assert reply.code == 403, reply.body
        assert reply.json["error"]["message"] == "you need to have role 'admins'"
        reply = await release.rpc("forceschedulers/force-all", "force",
                                  {"builderid": builderid}, headers=roles("admins"))
        assert reply.code == 200, reply.body
    for huge in (10**20, -(10**20)):
        for path in ("forceschedulers/force-all", "schedulers/1"):
            reply = await release.rpc(path, "force", {"builderid": huge},
                                      headers=roles("admins"))
            assert reply.code in (400, 404), reply.body
            reply = await release.rpc(path, "force", {"builderid": huge})
            assert reply.code in (400, 403, 404), reply.body


@pytest_twisted.ensureDeferred
async def test_no_action_on_what_one_may_not_see(server: Api) -> None:
    """An admin who may not read the secret builder's data may not act on its builds
    and requests either (a rebuild both confirmed the build and made a readable
    buildset of it), nor force it; with the view role too, the same calls run."""
    b = secret_build(server)
    calls = [(f"builds/{b['buildid']}", "rebuild", {}),
             (f"buildrequests/{b['buildrequestid']}", "set_priority", {"priority": 3}),
             ("forceschedulers/force-all", "force", {"builderid": b["builderid"]})]
    seen = server.record(None, None, None)
    for path, method, params in calls:
        reply = await server.rpc(path, method, params, headers=roles("admins"))
        assert reply.code == 403, (path, reply.body)
        assert reply.json["error"]["message"] == "you need to have role 'secret'"
    assert seen == []
    for path, method, params in calls:  # (a finished build's request is complete: 409)
        reply = await server.rpc(path, method, params, headers=roles("admins", "secret"))
        assert reply.code in (200, 409), (path, reply.body)


@pytest_twisted.ensureDeferred
async def test_missing_things_under_a_hidden_builder_are_refused_alike(server: Api) -> None:
    """Under a hidden builder, a build number, step or log that does not exist is
    refused as one that does (a 404 beside the 403s listed its builds' numbers, steps
    and logs); with the role, the usual 404."""
    b = secret_build(server)
    missing = [f"builders/{b['builderid']}/builds/99999",
               f"builders/{SECRET}/builds/99999",
               f"builds/{b['buildid']}/steps/no-such-step",
               f"builds/{b['buildid']}/steps/9999",
               f"builds/{b['buildid']}/steps/{b['step_name']}/logs/no-such-log",
               f"steps/{b['stepid']}/logs/no-such-log",
               f"buildrequests/{b['buildrequestid']}/builds"]
    for path in missing:
        refused = await server.get(path, headers=roles("dev"))
        assert refused.code == 403, (path, refused.body)
        assert refused.json["error"] == "you need to have role 'secret'"
        seen = await server.get(path, headers=roles("secret"))
        assert seen.code in (200, 404), (path, seen.body)
    # and a builder that does not exist is a 404 for everyone
    assert (await server.get("builders/99999/builds/1", headers=roles("dev"))).code == 404
