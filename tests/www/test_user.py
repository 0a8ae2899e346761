"""The web layer asks the auth layer who makes each request and hands it to the data
API's context: anonymous without auth, the auth's answer with it."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from treq.testing import StubTreq

from buildbot_rest.auth import AuthService
from buildbot_rest.config import Config
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.db import Database
from buildbot_rest.www import WebApp


class _WhoAmIEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = ("/whoami",)

    async def get(self, ctx: Any, spec: Any, kwargs: Any) -> Any:
        return {"user": dict(ctx.user)}


class _WhoAmI(ResourceType):
    name = "whoami"
    plural = "whoamis"
    fields = (Field("user", t.JsonObject()),)
    endpoints = (_WhoAmIEndpoint,)


async def _whoami(auth: Any, sqlite_url: str, headers: dict[str, list[str]]) -> Any:
    db = Database(sqlite_url)
    db.prepare_sync()
    connector = DataConnector(db, modules=())
    connector.register(_WhoAmI())
    client = StubTreq(WebApp(connector, auth=auth).resource())
    response = await client.get("http://x/api/v2/whoami", headers=headers)
    assert response.code == 200
    body = await response.json()
    db.stop()
    return body["whoamis"][0]["user"]


@pytest_twisted.ensureDeferred
async def test_without_auth_everyone_is_anonymous(sqlite_url: str) -> None:
    assert await _whoami(None, sqlite_url, {}) == {"anonymous": True}
    assert await _whoami(AuthService(), sqlite_url, {"X-Test-User": ["ann"]}) == {
        "anonymous": True}


@pytest_twisted.ensureDeferred
async def test_the_auth_layer_names_the_user(sqlite_url: str) -> None:
    """A trusted proxy's header names the user (the in-memory client comes from
    127.0.0.1); the data API's context gets the user info."""
    auth = AuthService(Config(auth={"backend": "remote_user",
                                    "trusted_proxies": ["127.0.0.1", "::1"]}))
    assert await _whoami(auth, sqlite_url, {"REMOTE_USER": ["ann@example"]}) == {
        "username": "ann", "realm": "example", "email": "ann"}
