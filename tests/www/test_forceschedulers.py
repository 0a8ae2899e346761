"""Force schedulers, served from the server's configuration."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.resources.forceschedulers import configured
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, Stub

REASON = {"name": "reason", "fullName": "reason", "label": "reason", "type": "text",
          "default": "force build", "required": False, "hide": False, "maxsize": None,
          "multiple": False, "regex": None, "tablabel": "reason", "size": 20}

FORCESCHEDULERS = [
    {"name": "force", "button_name": "Force Build", "label": "Force a build",
     "builder_names": ["linux-py311", "macos-py311"], "enabled": True,
     "all_fields": [REASON, {"name": "", "type": "nested", "fields": [REASON]}]},
    {"name": "docs", "button_name": "Docs", "label": "Rebuild the docs",
     "builder_names": ["docs-windows-py311"], "enabled": False, "all_fields": []},
    {"name": "a-linux", "button_name": "Go", "label": "Linux only",
     "builder_names": ["linux-py311"], "enabled": True, "all_fields": [REASON]},
]


@pytest.fixture
def fs_api(api: Api) -> Stub:
    """An in-memory client of a web app over the demo database, configured with
    ``FORCESCHEDULERS`` (``rows`` reads that database)."""
    config = SimpleNamespace(forceschedulers=FORCESCHEDULERS)
    stub = Stub(DataConnector(api.db, config=config, base_url="http://testserver/"))
    stub.rows = api.rows  # type: ignore[attr-defined]
    return stub


def builder_id(api: Any, name: str) -> int:
    return api.rows(sa.select(s.builders.c.id).where(s.builders.c.name == name))[0][0]


def names(reply: Any) -> list[str]:
    return [x["name"] for x in reply.json["forceschedulers"]]


@pytest_twisted.ensureDeferred
async def test_collection_in_configuration_order(fs_api):
    r = await fs_api.get("forceschedulers")
    assert r.code == 200
    assert r.json == {"forceschedulers": FORCESCHEDULERS, "meta": {"total": 3}}
    r = await fs_api.get("forcescheduler")
    assert names(r) == ["force", "docs", "a-linux"]


@pytest_twisted.ensureDeferred
async def test_collection_query(fs_api):
    assert names(await fs_api.get("forceschedulers?order=name")) == ["a-linux", "docs", "force"]
    assert names(await fs_api.get("forceschedulers?order=-enabled&order=label")) == [
        "force", "a-linux", "docs"]
    assert names(await fs_api.get("forceschedulers?enabled=false")) == ["docs"]
    assert names(await fs_api.get(
        "forceschedulers?builder_names__contains=linux-py311")) == ["force", "a-linux"]
    # a list equals a value when it holds it (COMPAT 26)
    assert names(await fs_api.get("forceschedulers?builder_names=linux-py311")) == [
        "force", "a-linux"]
    assert names(await fs_api.get("forceschedulers?builder_names__ne=linux-py311")) == [
        "docs"]
    assert names(await fs_api.get("forceschedulers?label__contains=a%20b")) == ["force"]
    r = await fs_api.get("forceschedulers?field=name&field=enabled&name__ne=docs")
    assert r.json["forceschedulers"] == [{"name": "force", "enabled": True},
                                         {"name": "a-linux", "enabled": True}]
    r = await fs_api.get("forceschedulers?limit=1&offset=1")
    assert names(r) == ["docs"]
    assert r.json["meta"]["total"] == 3
    assert set(r.json["meta"]["links"]) == {"next", "prev"}
    # a list of objects has no order (COMPAT 29)
    r = await fs_api.get("forceschedulers?order=all_fields")
    assert (r.code, r.json) == (400, {"error": "invalid order all_fields: 'all_fields' is "
                                      "a list, which has no order"})


@pytest_twisted.ensureDeferred
async def test_collection_bad_input_is_400(fs_api):
    for query in ("all_fields=x", "builder_names__contains=a%00", "enabled=maybe",
                  "order=nosuch", "field=name&order=label", "name__gt=a&name__gt=b"):
        r = await fs_api.get(f"forceschedulers?{query}")
        assert r.code == 400, query
        assert "error" in r.json


@pytest_twisted.ensureDeferred
async def test_single(fs_api):
    r = await fs_api.get("forceschedulers/docs")
    assert (r.code, r.json) == (200, {"forceschedulers": [FORCESCHEDULERS[1]], "meta": {}})
    r = await fs_api.get("forceschedulers/force?field=button_name")
    assert r.json == {"forceschedulers": [{"button_name": "Force Build"}], "meta": {}}
    r = await fs_api.get("forceschedulers/nosuch")
    assert r.code == 404
    assert r.json["error"].startswith("not found")
    r = await fs_api.get("forceschedulers/1abc")
    assert r.code == 404 and r.json["error"].startswith("not found")
    r = await fs_api.get("forceschedulers/force?enabled=true")
    assert (r.code, r.json) == (400, {"error": "this is not a collection"})


@pytest_twisted.ensureDeferred
async def test_of_a_builder(fs_api):
    r = await fs_api.get(f"builders/{builder_id(fs_api, 'linux-py311')}/forceschedulers")
    assert r.code == 200
    assert r.json == {"forceschedulers": [FORCESCHEDULERS[0], FORCESCHEDULERS[2]],
                      "meta": {"total": 2}}
    r = await fs_api.get(f"builders/{builder_id(fs_api, 'docs-windows-py311')}"
                         "/forceschedulers?enabled=true")
    assert r.json == {"forceschedulers": [], "meta": {"total": 0}}
    r = await fs_api.get(f"builders/{builder_id(fs_api, 'linux-py312')}/forceschedulers")
    assert r.json == {"forceschedulers": [], "meta": {"total": 0}}


@pytest_twisted.ensureDeferred
async def test_of_a_missing_builder_is_404(fs_api):
    # upstream: 500 for a missing builder, and the id is untyped (COMPAT #4, #12, #23)
    r = await fs_api.get("builders/999999/forceschedulers")
    assert r.code == 404
    assert r.json["error"].startswith("not found")
    for path in ("builders/linux-py311/forceschedulers", "builders/+1/forceschedulers"):
        r = await fs_api.get(path)
        assert (r.code, r.json) == (404, {"error": f"Invalid path: {path}"})


@pytest_twisted.ensureDeferred
async def test_root_link(fs_api):
    r = await fs_api.get("")
    assert "forceschedulers" in [x["name"] for x in r.json["rootlinks"]]


@pytest_twisted.ensureDeferred
async def test_without_configuration(api):
    r = await api.get("forceschedulers")
    assert (r.code, r.json) == (200, {"forceschedulers": [], "meta": {"total": 0}})
    r = await api.get("forceschedulers/force")
    assert r.code == 404
    r = await api.get(f"builders/{builder_id(api, 'linux-py311')}/forceschedulers")
    assert (r.code, r.json) == (200, {"forceschedulers": [], "meta": {"total": 0}})
    r = await api.get("builders/999999/forceschedulers")
    assert r.code == 404


def test_configured_without_attribute_or_config():
    assert configured(SimpleNamespace(config=None)) == []
    assert configured(SimpleNamespace(config=object())) == []
    assert configured(SimpleNamespace(config=SimpleNamespace(forceschedulers=None))) == []


def test_entity_defaults_come_from_the_configuration():
    # (with the raw all_fields form: a declared table gets upstream's default fields)
    config = Config(forceschedulers=[{"name": "f", "all_fields": []},
                                     {"name": "g", "label": "", "button_name": "",
                                      "all_fields": []}])
    entities = configured(SimpleNamespace(config=config))
    assert entities == [
        {"name": "f", "button_name": "f", "label": "f", "builder_names": [],
         "enabled": True, "all_fields": []},
        {"name": "g", "button_name": "g", "label": "", "builder_names": [],
         "enabled": True, "all_fields": []},
    ]
    # serving an entity never changes the configuration
    entities[0]["label"] = "changed"
    assert configured(SimpleNamespace(config=config))[0]["label"] == "f"
