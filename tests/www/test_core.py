"""The HTTP basics: /api, the root, errors, compact and pretty JSON, paging links."""

from __future__ import annotations

import json

import brotli
import zstandard

import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s


@pytest_twisted.ensureDeferred
async def test_api_versions(api):
    r = await api.request("GET", "api")
    assert r.code == 200
    assert r.json == {"api_versions": {"v2": "http://testserver/api/v2"}}


@pytest_twisted.ensureDeferred
async def test_root_links(api):
    r = await api.get("")
    assert r.code == 200
    names = [x["name"] for x in r.json["rootlinks"]]
    assert names[:2] == ["builders", "builds"]
    assert r.json["meta"]["total"] == len(names)


@pytest_twisted.ensureDeferred
async def test_trailing_slash_is_invalid_path(api):
    r = await api.get("builds/")
    assert (r.code, r.json) == (404, {"error": "Invalid path: builds/"})
    r = await api.request("GET", "api/v2/")
    assert (r.code, r.json) == (404, {"error": "Invalid path: "})


@pytest_twisted.ensureDeferred
async def test_unknown_parameter(api):
    r = await api.get("builds?foo=1")
    assert r.code == 400
    assert r.json == {"error": "unrecognized query parameter 'foo'"}
    assert r.header("content-type") == "application/json; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_builds_page_total_and_links(api):
    total = api.rows(sa.select(sa.func.count()).select_from(s.builds))[0][0]
    r = await api.get("builds?order=-buildid&limit=5")
    assert r.code == 200
    ids = [b["buildid"] for b in r.json["builds"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5
    assert r.json["meta"]["total"] == total
    assert r.json["meta"]["links"]["next"].endswith("limit=5&offset=5")
    assert 'rel="next"' in r.header("link")


@pytest_twisted.ensureDeferred
async def test_streamed_collection_equals_whole_document(api):
    streamed = await api.get("builds")
    paged = await api.get(f"builds?limit=100000")
    assert streamed.json["builds"] == paged.json["builds"]
    assert streamed.json["meta"]["total"] == len(streamed.json["builds"])
    pretty = await api.get("builds", headers={"Accept": "text/html"})
    assert json.loads(pretty.body) == streamed.json
    assert pretty.body == json.dumps(streamed.json, sort_keys=True, indent=2,
                                     separators=(", ", ": ")).encode()


@pytest_twisted.ensureDeferred
async def test_compression_honours_q_values(api):
    # (treq itself decodes gzip, so brotli and zstd are checked by their headers)
    r = await api.get("builds?limit=3", headers={"Accept-Encoding": "gzip;q=0.5, br"})
    assert r.header("content-encoding") == "br"
    assert json.loads(brotli.decompress(r.body))["meta"]["total"] > 0
    r = await api.get("builds?limit=3", headers={"Accept-Encoding": "br;q=0.1, zstd;q=0.9"})
    assert r.header("content-encoding") == "zstd"
    body = zstandard.ZstdDecompressor().decompressobj().decompress(r.body)
    assert json.loads(body)["meta"]["total"] > 0
    r = await api.get("builds?limit=3", headers={"Accept-Encoding": "br;q=0, zstd;q=0, gzip;q=0"})
    assert r.header("content-encoding") is None
    assert r.json["builds"]
