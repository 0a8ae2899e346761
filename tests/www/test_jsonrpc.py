"""JSON-RPC over POST: upstream's checks in upstream's order (protocol.md 4.1), its
envelopes and codes (4.3), with COMPAT's fixes (no 500, 501 for unknown methods
everywhere, case-sensitive names, 404 for missing entities), on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    for api, _ in own_server(request, tmp_path_factory, "jsonrpc", lambda api: None,
                             writable=True):
        yield api


def _first_schedulerid(api: Api) -> int:
    return int(api.rows(sa.select(sa.func.min(s.schedulers.c.id)))[0][0])


async def _post(api: Api, path: str, body: bytes | str,
                content_type: str | None = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    reply = await api.request("POST", "api/v2/" + path, headers=headers,
                              data=body.encode() if isinstance(body, str) else body)
    return reply.code, reply.json


GOOD = '{"jsonrpc": "2.0", "method": "enable", "id": 7, "params": {"enabled": true}}'


@pytest.mark.parametrize(("content_type", "body", "code", "message"), [
    ("text/plain", GOOD, -32600, "Invalid content-type (use application/json)"),
    (None, GOOD, -32600, "Invalid content-type (use application/json)"),
    ("application/jsonx", GOOD, -32600, "Invalid content-type (use application/json)"),
    ("application/json", "{", -32700, None),
    ("application/json", b"\xff\xfe", -32700, None),
    ("application/json", "[" * 100000, -32700, None),
    ("application/json", "[]", -32600, "JSONRPC batch requests are not supported"),
    ("application/json", "3", -32600, "JSONRPC root object must be an object"),
    ("application/json", '{"method": "x", "id": 1, "params": {}}', -32600,
     "missing key 'jsonrpc'"),
    ("application/json", '{"jsonrpc": "2.0", "id": 1, "params": {}}', -32600,
     "missing key 'method'"),
    ("application/json", '{"jsonrpc": "2.0", "method": "x", "params": {}}', -32600,
     "missing key 'id'"),
    ("application/json", '{"jsonrpc": "2.0", "method": "x", "id": 1}', -32600,
     "missing key 'params'"),
    ("application/json", '{"jsonrpc": 2, "method": "x", "id": 1, "params": {}}', -32600,
     "'jsonrpc' must be a string"),
    ("application/json", '{"jsonrpc": "2.0", "method": 1, "id": 1, "params": {}}', -32600,
     "'method' must be a string"),
    ("application/json", '{"jsonrpc": "2.0", "method": "x", "id": 1.5, "params": {}}',
     -32600, "'id' must be a string, number, or null"),
    ("application/json", '{"jsonrpc": "2.0", "method": "x", "id": 1, "params": []}',
     -32600, "'params' must be an object"),
    ("application/json", '{"jsonrpc": "1.0", "method": "x", "id": 1, "params": {}}',
     -32600, "only JSONRPC 2.0 is supported"),
])
@pytest_twisted.ensureDeferred
async def test_malformed_calls_are_400_without_an_id(
        server: Api, content_type: str | None, body: str, code: int,
        message: str | None) -> None:
    status, doc = await _post(server, f"schedulers/{_first_schedulerid(server)}", body,
                              content_type)
    assert status == 400
    assert list(doc) == ["jsonrpc", "error"]
    assert doc["error"]["code"] == code
    if message is not None:
        assert doc["error"]["message"] == message
    else:
        assert doc["error"]["message"].startswith("JSON parse error: ")


@pytest_twisted.ensureDeferred
async def test_content_type_parameters_are_allowed(server: Api) -> None:
    status, doc = await _post(server, f"schedulers/{_first_schedulerid(server)}", GOOD,
                              "application/json; charset=utf-8")
    assert (status, doc) == (200, {"id": 7, "jsonrpc": "2.0", "result": None})


@pytest_twisted.ensureDeferred
async def test_success_is_compact_sorted_json(server: Api) -> None:
    reply = await server.request(
        "POST", f"api/v2/schedulers/{_first_schedulerid(server)}",
        headers={"Content-Type": "application/json"}, data=GOOD.encode())
    assert reply.code == 200
    assert reply.body == b'{"id":7,"jsonrpc":"2.0","result":null}'
    assert reply.header("content-type", ).startswith("application/json")


@pytest.mark.parametrize("call_id", ["abc", 0, None, True])
@pytest_twisted.ensureDeferred
async def test_every_id_kind_is_echoed(server: Api, call_id: Any) -> None:
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                             {"enabled": True}, call_id=call_id)
    assert reply.code == 200
    assert reply.json["id"] == call_id


@pytest.mark.parametrize("path", ["nosuch", "schedulers/1/nosuch", "builds/x/y/z/w"])
@pytest_twisted.ensureDeferred
async def test_an_unknown_path_is_404_with_the_id(server: Api, path: str) -> None:
    reply = await server.rpc(path, "enable", {"enabled": True}, call_id="q")
    assert reply.code == 404
    assert reply.json == {"jsonrpc": "2.0", "id": "q",
                          "error": {"code": -32600, "message": f"Invalid path: {path}"}}


@pytest.mark.parametrize("path", [
    "builders", "builds", "changes", "masters", "schedulers", "workers", "buildrequests",
    "builders/1", "changes/1", "masters/1", "sourcestamps/1", "buildsets",
    "application.spec", "builds/1/steps", "logs/1/raw",
])
@pytest_twisted.ensureDeferred
async def test_an_unknown_action_is_501_everywhere(server: Api, path: str) -> None:
    reply = await server.rpc(path, "frobnicate", {})
    assert reply.code == 501
    assert reply.json["error"] == {"code": -32601,
                                   "message": "action: frobnicate is not supported"}


@pytest.mark.parametrize("method", ["Enable", "ENABLE", "enable ", "action_enable",
                                    "_enable", ""])
@pytest_twisted.ensureDeferred
async def test_action_names_are_case_sensitive(server: Api, method: str) -> None:
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", method,
                             {"enabled": True})
    assert reply.code == 501
    assert reply.json["error"]["code"] == -32601


@pytest_twisted.ensureDeferred
async def test_a_missing_entity_is_404(server: Api) -> None:
    for path in ("schedulers/999999", "schedulers/99999999999999999999999",
                 "masters/999999/schedulers/1", "scheduler/999999"):
        reply = await server.rpc(path, "enable", {"enabled": True})
        assert reply.code == 404, path
        assert reply.json["error"]["code"] == -32600


@pytest.mark.parametrize(("params", "message"), [
    ({}, "invalid params: enabled: required"),
    ({"enabled": 1}, "invalid params: enabled: must be true or false, not a number"),
    ({"enabled": "true"}, "invalid params: enabled: must be true or false, not a string"),
    ({"enabled": None}, "invalid params: enabled: must be true or false, not null"),
])
@pytest_twisted.ensureDeferred
async def test_bad_params_are_400_naming_the_parameter(server: Api, params: dict[str, Any],
                                                       message: str) -> None:
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable", params)
    assert reply.code == 400
    assert reply.json["error"] == {"code": -32602, "message": message}


@pytest_twisted.ensureDeferred
async def test_enable_writes_and_publishes_the_scheduler(server: Api) -> None:
    schedulerid = _first_schedulerid(server)
    events = server.record("schedulers", None, None)
    for enabled in (False, True, False):
        reply = await server.rpc(f"scheduler/{schedulerid}", "enable", {"enabled": enabled})
        assert reply.json["result"] is None
        got = (await server.get(f"schedulers/{schedulerid}")).json["schedulers"][0]
        assert got["enabled"] is enabled
        assert events[-1] == (("schedulers", str(schedulerid), "updated"), got)
    assert len(events) == 3


@pytest_twisted.ensureDeferred
async def test_the_query_string_of_a_post_is_ignored(server: Api) -> None:
    reply = await server.request(
        "POST", f"api/v2/schedulers/{_first_schedulerid(server)}?field=x&limit=-1",
        headers={"Content-Type": "application/json"}, data=GOOD.encode())
    assert reply.code == 200


@pytest_twisted.ensureDeferred
async def test_owner_cannot_be_given_by_the_client(server: Api) -> None:
    # the reply of enable does not show it: the connector sees the injected owner
    seen: list[Any] = []
    endpoint, _ = server.connector.match(("schedulers", "1"))
    original = type(endpoint).action_enable

    async def spy(self: Any, ctx: Any, params: Any, kwargs: Any) -> None:
        seen.append(params["owner"])
        return await original(self, ctx, params, kwargs)

    type(endpoint).action_enable = spy  # type: ignore[method-assign]
    try:
        await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                         {"enabled": True, "owner": "mallory"})
    finally:
        type(endpoint).action_enable = original  # type: ignore[method-assign]
    assert seen == ["anonymous"]


def test_json_bodies_are_checked_before_anything_else() -> None:
    # (parse() alone: the order of checks of protocol.md 4.1)
    from buildbot_rest.www import jsonrpc
    with pytest.raises(jsonrpc.BadCall, match="missing key 'jsonrpc'"):
        jsonrpc.parse(b"application/json", json.dumps({"params": 1}).encode())


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://testserver", True),                # base_url's origin (upstream's default)
    ("HTTP://TESTSERVER", True),                # compared lowercased, as upstream
    ("http://elsewhere.example", False),
    ("http://testserver.example", False),
    ("https://testserver", False),              # another scheme is another origin
    ("http://testserver:8080", False),
    ("null", False),                            # a sandboxed or file: page
    ("", False),
    ("http://testserver/path", False),
])
@pytest_twisted.ensureDeferred
async def test_a_call_from_another_site_is_refused_before_anything_runs(
        server: Api, origin: str, allowed: bool) -> None:
    schedulerid = _first_schedulerid(server)
    events = server.record("schedulers", None, None)
    reply = await server.rpc(f"schedulers/{schedulerid}", "enable", {"enabled": True},
                             headers={"Origin": origin})
    if allowed:
        assert reply.code == 200
        assert len(events) == 1
    else:
        assert reply.code == 400
        assert reply.json == {"error": {"message": "invalid origin"}}
        assert events == []


@pytest_twisted.ensureDeferred
async def test_a_same_origin_call_passes_whatever_base_url_says(server: Api) -> None:
    # the browser reached the server as 127.0.0.1:<port>, not as base_url's host (COMPAT 35)
    own = server.root.rstrip("/")
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                             {"enabled": True}, headers={"Origin": own})
    assert reply.code == 200


@pytest.mark.parametrize(("path", "method", "params"), [
    ("schedulers/999999", "enable", {"enabled": "no"}),
    ("buildrequests/999999", "set_priority", {"priority": "x"}),
    ("builds/999999", "stop", {"reason": 1}),
    ("builders/999999/builds/1", "rebuild", {}),
    ("workers/999999", "pause", {"reason": 1}),
    ("forceschedulers/nosuch", "force", {"builderid": "x"}),
])
@pytest_twisted.ensureDeferred
async def test_a_missing_entity_is_404_before_bad_params(
        server: Api, path: str, method: str, params: dict[str, Any]) -> None:
    reply = await server.rpc(path, method, params)
    assert reply.code == 404, reply.json
    assert reply.json["error"]["code"] == -32600
    assert reply.json["error"]["message"].startswith("not found while getting from "
                                                     "endpoint for /")


@pytest.mark.parametrize(("host", "origin", "allowed"), [
    # a name of someone else's that resolves to the server (DNS rebinding) is refused
    ("attacker.example:8010", "http://attacker.example:8010", False),
    ("localhost:8010", "http://localhost:8010", True),
    ("[::1]:8010", "http://[::1]:8010", True),
    ("10.0.0.7", "http://10.0.0.7", True),
    ("testserver", "http://testserver", True),
])
@pytest_twisted.ensureDeferred
async def test_the_own_origin_counts_for_addresses_and_base_urls_name(
        server: Api, host: str, origin: str, allowed: bool) -> None:
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                             {"enabled": True}, headers={"Origin": origin, "Host": host})
    assert reply.code == (200 if allowed else 400), reply.json


@pytest_twisted.ensureDeferred
async def test_two_origin_headers_are_refused(server: Api) -> None:
    own = server.root.rstrip("/")
    for pair in ([own, "http://evil.example"], ["http://evil.example", own], [own, own]):
        reply = await server.request(
            "POST", f"api/v2/schedulers/{_first_schedulerid(server)}", raw_headers={
                "Origin": pair, "Content-Type": ["application/json"]},
            data=GOOD.encode())
        assert reply.code == 400, pair


@pytest.mark.parametrize("coding", ["gzip", "deflate, gzip", "br", "x-unknown"])
@pytest_twisted.ensureDeferred
async def test_a_coded_body_is_refused_not_run(server: Api, coding: str) -> None:
    events = server.record("schedulers", None, None)
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                             {"enabled": True}, headers={"Content-Encoding": coding})
    assert reply.code == 415
    assert reply.json["error"]["code"] == -32600
    assert "Content-Encoding" in reply.json["error"]["message"]
    assert events == []


@pytest_twisted.ensureDeferred
async def test_identity_coding_is_a_plain_body(server: Api) -> None:
    reply = await server.rpc(f"schedulers/{_first_schedulerid(server)}", "enable",
                             {"enabled": True}, headers={"Content-Encoding": "identity"})
    assert reply.code == 200
