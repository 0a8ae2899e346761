"""``/auth/tokens`` (buildbot_rest.www.tokens): a logged-in user lists, makes and revokes
their own bearer tokens, and those tokens work on every channel (REST, JSON-RPC, /config,
/sse, /ws) within their scope and roles; over a listening port, on SQLite and
PostgreSQL, with a real login (``[auth] backend = "users"``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bcrypt
import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.auth.service import AuthService
from buildbot_rest.auth.tokens import parse_token
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.db import Database
from buildbot_rest.mq import SimpleMQ
from buildbot_rest.www import WebApp
from tests.www.conftest import Api, Reply

PASSWORD = "correct horse battery staple"
BASE_URL = "http://testserver/"


def auth_config() -> dict[str, Any]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    return {
        "backend": "users",
        "users": {
            "alice": {"password": hashed, "email": "alice@example.org",
                      "groups": ["admins", "devs"]},
            "bob": {"password": hashed, "email": "bob@example.org", "groups": ["devs"]},
        },
        "roles": [{"from": "groups"}],
        "login_failures": 1000,
    }


AUTHZ = {"allow": [{"match": "any_control", "role": "admins"}]}


@dataclass
class Server:
    api: Api
    auth: AuthService
    db: Database
    cookies: dict[str, str]

    async def login(self, user: str) -> str:
        """A session cookie of ``user`` (``name=value``), logging in once."""
        if user not in self.cookies:
            basic = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
            reply = await self.api.request("GET", "auth/login", raw=True,
                                           headers={"Authorization": f"Basic {basic}"})
            [cookie] = [c for c in reply.headers.getRawHeaders("set-cookie")
                        if c.startswith("TWISTED_SESSION=")]
            self.cookies[user] = cookie.split(";")[0]
        return self.cookies[user]

    async def as_user(self, user: str) -> dict[str, str]:
        return {"Cookie": await self.login(user)}

    async def tokens(self, path: str = "", *, method: str = "GET",
                     headers: dict[str, str] | None = None) -> Reply:
        return await self.api.request(method, "auth/tokens" + path, headers=headers)

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   path: str = "", headers: dict[str, str] | None = None,
                   content_type: str = "application/json") -> Reply:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 7,
                           "params": params if params is not None else {}}).encode()
        return await self.api.request("POST", "auth/tokens" + path, data=body,
                                      headers={"Content-Type": content_type,
                                               **(headers or {})})

    async def make(self, user: str, **params: Any) -> dict[str, Any]:
        """A token made by ``user`` through the API: the result of ``create``."""
        reply = await self.call("create", params, headers=await self.as_user(user))
        assert reply.code == 200, reply.body
        result: dict[str, Any] = reply.json["result"]
        return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tokens-api') / 'demo.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    db = Database(url, pool_size=4)
    db.prepare_sync(create=True)
    demo.populate(db.engine, builds=3, seed=1)
    with db.engine.connect() as conn:
        names = list(conn.execute(sa.text("select name from builders")).scalars())
    config = Config(db_url=url, base_url=BASE_URL, auth=auth_config(), authz=AUTHZ,
                    forceschedulers=[{"name": "force", "builder_names": names}])
    auth = AuthService(config, db)
    auth.prepare_sync()
    db.start()
    connector = DataConnector(db, base_url=BASE_URL, config=config, mq=SimpleMQ())
    web = WebApp(connector, auth=auth)
    port = pytest_twisted.blockon(
        endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(web.resource())))
    try:
        yield Server(Api(f"http://127.0.0.1:{port.getHost().port}/", db, connector), auth,
                     db, {})
    finally:
        pytest_twisted.blockon(port.stopListening())
        if web.live is not None:
            pytest_twisted.blockon(web.live.stopService())
        db.stop()


# -- who may use it ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_anonymous_callers_are_401(server: Server) -> None:
    reply = await server.tokens()
    assert reply.code == 401
    assert reply.header("www-authenticate") == 'Bearer realm="buildbot"'
    assert reply.json == {"error": "log in, or send a bearer token, to manage your tokens"}
    reply = await server.call("create")
    assert reply.code == 401
    assert reply.json == {"jsonrpc": "2.0", "error": {
        "code": -32600,
        "message": "log in, or send a bearer token, to manage your tokens"}}


@pytest_twisted.ensureDeferred
async def test_a_bad_token_is_401_invalid_token(server: Server) -> None:
    for method in ("GET", "POST"):
        reply = await server.api.request(method, "auth/tokens",
                                         headers=bearer("bbrest_1_nope"))
        assert reply.code == 401, method
        assert 'error="invalid_token"' in (reply.header("www-authenticate") or "")


# -- making, listing, revoking -----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_make_list_and_revoke_own_tokens(server: Server) -> None:
    made = await server.make("alice", scope="control", expires="1d",
                             description="nightly", roles=["admins"])
    parsed = parse_token(made["token"])
    assert parsed is not None and parsed[0] == made["id"]
    assert made["scope"] == "control" and made["roles"] == ["admins"]
    assert made["expires_at"] - made["created_at"] == 86400
    assert made["username"] == "alice" and made["user"]["email"] == "alice@example.org"
    assert made["description"] == "nightly" and made["revoked_at"] is None

    default = await server.make("alice")
    assert default["scope"] == "read" and default["roles"] is None
    assert default["expires_at"] - default["created_at"] == 90 * 86400
    never = await server.make("alice", expires=None)
    assert never["expires_at"] is None
    bobs = await server.make("bob", expires=3600)

    reply = await server.tokens(headers=await server.as_user("alice"))
    assert reply.code == 200
    assert reply.header("cache-control") == "no-store"
    listed = reply.json
    ids = [t["id"] for t in listed["tokens"]]
    assert {made["id"], default["id"], never["id"]} <= set(ids)
    assert bobs["id"] not in ids
    assert listed["meta"] == {"total": len(ids)}
    assert made["token"] not in reply.body.decode()
    assert all("token" not in t and "digest" not in t for t in listed["tokens"])
    assert {t["username"] for t in listed["tokens"]} == {"alice"}

    one = await server.tokens(f"/{made['id']}", headers=await server.as_user("alice"))
    assert one.code == 200
    assert one.json["tokens"][0]["id"] == made["id"]

    # bob's token is none of alice's business: as if it did not exist
    for reply in (await server.tokens(f"/{bobs['id']}", headers=await server.as_user("alice")),
                  await server.call("revoke", path=f"/{bobs['id']}",
                                    headers=await server.as_user("alice"))):
        assert reply.code == 404
    assert (await server.api.get("builders", headers=bearer(bobs["token"]))).code == 200

    reply = await server.call("revoke", path=f"/{made['id']}",
                              headers=await server.as_user("alice"))
    assert reply.code == 200
    assert reply.json["id"] == 7
    assert reply.json["result"]["revoked_at"] is not None
    assert "token" not in reply.json["result"]
    refused = await server.api.get("builders", headers=bearer(made["token"]))
    assert refused.code == 401
    assert "was revoked" in refused.json["error"]


@pytest_twisted.ensureDeferred
async def test_a_token_may_list_and_revoke_but_not_make(server: Server) -> None:
    made = await server.make("alice", scope="read")
    other = await server.make("alice")
    reply = await server.tokens(headers=bearer(made["token"]))
    assert reply.code == 200
    assert made["id"] in [t["id"] for t in reply.json["tokens"]]
    reply = await server.call("create", headers=bearer(made["token"]))
    assert reply.code == 403
    assert reply.json["error"] == {
        "code": -32600,
        "message": "a bearer token cannot make tokens: log in (a session) to make one"}
    reply = await server.call("revoke", path=f"/{other['id']}",
                              headers=bearer(made["token"]))
    assert reply.code == 200
    reply = await server.call("revoke", path=f"/{made['id']}", headers=bearer(made["token"]))
    assert reply.code == 200  # revoking itself: the next request is refused
    assert (await server.tokens(headers=bearer(made["token"]))).code == 401


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("params", "status", "message"), [
    ({"scope": "write"}, 400, "scope: must be \"read\" or \"control\""),
    ({"expires": "1y"}, 400, "expires: invalid lifetime"),
    ({"expires": 0}, 400, "expires: invalid lifetime"),
    ({"expires": True}, 400, "expires: seconds"),
    ({"expires": [1]}, 400, "expires: seconds"),
    ({"description": 5}, 400, "description: must be a string"),
    ({"description": "x" * 1001}, 400, "description: at most 1000"),
    ({"roles": "admins"}, 400, "roles: must be a list"),
    ({"roles": [""]}, 400, "roles: must be a list"),
    ({"owner": "x"}, 400, "owner: unknown parameter"),
    ({"roles": ["admins", "root"]}, 403, "not yours: root"),
])
async def test_create_params_are_checked(server: Server, params: dict[str, Any],
                                         status: int, message: str) -> None:
    user = "alice"
    before = len((await server.tokens(headers=await server.as_user(user))).json["tokens"])
    reply = await server.call("create", params, headers=await server.as_user(user))
    assert reply.code == status
    assert reply.json["id"] == 7
    assert reply.json["error"]["code"] == (-32602 if status == 400 else -32600)
    assert message in reply.json["error"]["message"]
    after = len((await server.tokens(headers=await server.as_user(user))).json["tokens"])
    assert after == before


@pytest_twisted.ensureDeferred
async def test_bob_may_not_give_himself_admins(server: Server) -> None:
    reply = await server.call("create", {"roles": ["admins"]},
                              headers=await server.as_user("bob"))
    assert reply.code == 403
    made = await server.make("bob", roles=["devs"], scope="control")
    # a control token of bob's still cannot do what bob may not
    reply = await server.api.rpc("forceschedulers/force", "force",
                                 {"builderid": 1, "reason": "tokens"},
                                 headers=bearer(made["token"]))
    assert reply.code == 403


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("revoke", "", 501, -32601),          # revoke names a token
    ("create", "/1", 501, -32601),        # create names none
    ("Create", "", 501, -32601),          # method names are case-sensitive
    ("delete", "/1", 501, -32601),
])
async def test_methods_in_their_place(server: Server, method: str, path: str, status: int,
                                      code: int) -> None:
    reply = await server.call(method, path=path, headers=await server.as_user("alice"))
    assert (reply.code, reply.json["error"]["code"]) == (status, code)


@pytest_twisted.ensureDeferred
async def test_revoke_takes_no_params(server: Server) -> None:
    made = await server.make("alice")
    reply = await server.call("revoke", {"now": True}, path=f"/{made['id']}",
                              headers=await server.as_user("alice"))
    assert (reply.code, reply.json["error"]["code"]) == (400, -32602)
    assert (await server.api.get("builders", headers=bearer(made["token"]))).code == 200


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("path", "status"), [
    ("/abc", 404), ("/0", 404), ("/99999999999", 404), ("/1/x", 404), ("/%FF", 400),
    ("/-1", 404), ("/%D9%A1", 404), ("/", 200), ("/424242", 404),
])
async def test_paths(server: Server, path: str, status: int) -> None:
    reply = await server.tokens(path, headers=await server.as_user("alice"))
    assert reply.code == status
    assert "error" in reply.json or "tokens" in reply.json


@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(server: Server) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        reply = await server.tokens(method=method, headers=await server.as_user("alice"))
        assert reply.code == 405, method
        assert reply.header("allow") == "GET, HEAD, POST"
        assert "error" in reply.json
    head = await server.tokens(method="HEAD", headers=await server.as_user("alice"))
    assert head.code == 200 and head.body == b""


# -- the tokens at work --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_token_on_rest_jsonrpc_and_config(server: Server) -> None:
    control = await server.make("alice", scope="control", roles=["admins"])
    read = await server.make("alice", scope="read")
    for made in (control, read):
        reply = await server.api.get("builders", headers=bearer(made["token"]))
        assert reply.code == 200 and reply.json["builders"]
        config = await server.api.get("/config", headers=bearer(made["token"]))
        assert config.json["user"]["username"] == "alice"
    reply = await server.api.rpc("forceschedulers/force", "force",
                                 {"builderid": 1, "reason": "tokens"},
                                 headers=bearer(control["token"]))
    assert reply.code == 200, reply.body
    reply = await server.api.rpc("forceschedulers/force", "force",
                                 {"builderid": 1, "reason": "tokens"},
                                 headers=bearer(read["token"]))
    assert reply.code == 403
    assert "scope" in reply.json["error"]["message"]
    # last use recorded
    assert server.auth.tokens is not None
    await server.auth.tokens.settle()
    listed = await server.tokens(f"/{control['id']}", headers=await server.as_user("alice"))
    assert listed.json["tokens"][0]["last_used_at"] is not None


@pytest_twisted.ensureDeferred
async def test_csrf_needs_json_and_an_allowed_origin(server: Server) -> None:
    alice = await server.as_user("alice")
    before = len((await server.tokens(headers=alice)).json["tokens"])
    reply = await server.call("create", headers=alice, content_type="text/plain")
    assert reply.code == 400
    assert reply.json["error"]["message"] == "Invalid content-type (use application/json)"
    reply = await server.call("create", headers={**alice, "Origin": "https://evil.example"})
    assert (reply.code, reply.json) == (400, {"error": {"message": "invalid origin"}})
    reply = await server.call("create", headers={**alice, "Origin": "http://testserver"})
    assert reply.code == 200
    assert len((await server.tokens(headers=alice)).json["tokens"]) == before + 1


@pytest_twisted.ensureDeferred
async def test_a_tokens_roles_follow_the_configuration(server: Server) -> None:
    """A token made at /auth/tokens keeps the user, not the groups of the session that
    made it: once the configuration takes alice out of "admins", her tokens are no
    admins either (their roles are computed at each use, or limited to hers)."""
    made = await server.make("alice", scope="control")
    chosen = await server.make("alice", scope="control", roles=["admins"])
    reply = await server.api.request("GET", "config", headers=bearer(made["token"]))
    assert "groups" not in reply.json["user"]
    caller = await server.auth.caller(_request(made["token"]))
    assert caller.roles == {"admins", "devs"}
    assert (await server.auth.caller(_request(chosen["token"]))).roles == {"admins"}
    table = auth_config()
    table["users"]["alice"]["groups"] = ["devs"]
    changed = AuthService(Config(db_url=server.db.url, auth=table, authz=AUTHZ), server.db)
    caller = await changed.caller(_request(made["token"]))
    assert caller.user["username"] == "alice"
    assert caller.roles == {"devs"}
    # roles chosen at creation hold only while the user has them
    assert (await changed.caller(_request(chosen["token"]))).roles == frozenset()
    # (a token made by the command line with --role is the administrator's grant)
    assert changed.tokens is not None
    granted, _ = await changed.tokens.create({"username": "alice"}, roles=["admins"])
    assert (await changed.caller(_request(granted))).roles == {"admins"}


def _request(token: str) -> Any:
    from twisted.web.test.requesthelper import DummyRequest
    request = DummyRequest([b"api", b"v2", b"builders"])
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    return request
