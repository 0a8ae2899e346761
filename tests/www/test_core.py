"""The HTTP basics: /api, the root, errors, compact and pretty JSON, paging links."""

from __future__ import annotations

import gzip
import json

import brotli
import pytest
import pytest_twisted
import sqlalchemy as sa
import zstandard

from buildbot_rest.db import schema as s
from tests.www.test_paths import (
    assert_not_found,
    expected_builds,
    expected_masters,
)
from tests.www.test_steps_logs import expected_steps


@pytest_twisted.ensureDeferred
async def test_api_versions(api):
    r = await api.request("GET", "api")
    assert r.code == 200
    assert r.json == {"api_versions": {"v2": "http://testserver/api/v2"}}


@pytest_twisted.ensureDeferred
async def test_root_links(api):
    r = await api.get("")
    assert r.code == 200
    names = ["builders", "builds", "buildrequests", "codebases", "workers", "logchunks",
             "buildsets", "changes", "changesources", "masters", "sourcestamps", "schedulers",
             "forceschedulers", "projects"]
    assert r.json == {"rootlinks": [{"name": n} for n in names], "meta": {"total": len(names)}}


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
    following = "http://testserver/api/v2/builds?order=-buildid&limit=5&offset=5"
    assert r.json == {"builds": expected_builds(api)[::-1][:5],
                      "meta": {"total": total, "links": {"next": following}}}
    assert r.header("link") == f'<{following}>; rel="next"'


@pytest.fixture
def stream_above_10(monkeypatch):
    """Unpaged collections are streamed in batches of 10 items, and those of 10 items or
    more are streamed (the demo data is small)."""
    from buildbot_rest.data import reads
    monkeypatch.setattr(reads, "STREAM_BATCH", 10)


@pytest_twisted.ensureDeferred
async def test_small_unpaged_collections_are_answered_whole(api, stream_above_10):
    # 30 builds: streamed (chunked, no length); 1 master and 5 steps: one body with a length
    streamed = await api.request("GET", "api/v2/builds", raw=True)
    assert streamed.length is None
    for path, plural, want in (("masters", "masters", expected_masters(api)),
                               ("builds/1/steps", "steps", expected_steps(api, 1))):
        whole = await api.request("GET", "api/v2/" + path, raw=True)
        assert whole.code == 200
        assert whole.length == len(whole.body), path
        assert 0 < len(want) <= 10
        assert json.loads(whole.body) == {plural: want, "meta": {"total": len(want)}}


@pytest_twisted.ensureDeferred
async def test_streamed_collection_equals_whole_document(api, stream_above_10):
    streamed = await api.get("builds")
    want = expected_builds(api)
    assert len(want) > 10
    assert streamed.json == {"builds": want, "meta": {"total": len(want)}}
    paged = await api.get("builds?limit=100000")
    assert paged.json["builds"] == want
    pretty = await api.get("builds", headers={"Accept": "text/html"})
    assert json.loads(pretty.body) == streamed.json
    assert pretty.body == json.dumps(streamed.json, sort_keys=True, indent=2,
                                     separators=(", ", ": ")).encode()


@pytest_twisted.ensureDeferred
async def test_compression_honours_q_values(api):
    # treq adds its own "Accept-Encoding: gzip" line and decodes gzip, which hid the
    # q-values under test: send exactly these headers with a plain Agent.
    def get(accept_encoding):
        headers = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
        return api.request("GET", "api/v2/builds?limit=3", raw=True, headers=headers)

    identity = await get(None)
    assert identity.header("content-encoding") is None
    assert identity.json == {"builds": expected_builds(api)[:3], "meta": {
        "total": len(expected_builds(api)),
        "links": {"next": "http://testserver/api/v2/builds?limit=3&offset=3"}}}
    r = await get("gzip;q=0.5, br")
    assert r.header("content-encoding") == "br"
    assert brotli.decompress(r.body) == identity.body
    assert r.length == len(r.body)  # a whole body is compressed at once, with its length
    r = await get("br;q=0.1, zstd;q=0.9")
    assert r.header("content-encoding") == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(r.body) == identity.body
    r = await get("br;q=0.1, zstd;q=0.2, gzip")
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == identity.body
    r = await get("br;q=0, zstd;q=0, gzip;q=0")
    assert r.header("content-encoding") is None
    assert r.body == identity.body


@pytest_twisted.ensureDeferred
async def test_compression_reads_every_accept_encoding_line(api):
    # treq sends ours and then its own "gzip" line: both count (RFC 9110 5.3)
    r = await api.get("builds?limit=3", headers={"Accept-Encoding": "br"})
    assert r.header("content-encoding") == "br"
    identity = await api.request("GET", "api/v2/builds?limit=3", raw=True)
    assert identity.header("content-encoding") is None
    assert brotli.decompress(r.body) == identity.body


# -- in memory, through treq.testing.StubTreq (the `stub` fixture) -------------------------

def pretty(value):
    return json.dumps(value, sort_keys=True, indent=2, separators=(", ", ": ")).encode()


# (Streamed collections never complete through StubTreq, see the report: the stub tests
# use paged or single resources; streamed ones are tested over a real port.)

@pytest_twisted.ensureDeferred
async def test_head_has_length_and_no_body(stub):
    for path in ("builds?limit=2", "builds/1", "masters?limit=5"):
        head = await stub.request("HEAD", path)
        assert (head.code, head.body) == (200, b""), path
        # (the length of what GET sends: test_head_says_what_get_says_under_every_coding)
        assert int(head.header("content-length") or 0) > 0, path
    r = await stub.request("HEAD", "builds/999999")
    assert (r.code, r.body) == (404, b"")


@pytest_twisted.ensureDeferred
async def test_head_of_streamed_collection(api, stream_above_10):
    for path in ("builds", "masters"):
        get = await api.request("GET", "api/v2/" + path, raw=True)
        head = await api.request("HEAD", "api/v2/" + path, raw=True)
        assert (head.code, head.body) == (200, b""), path
        assert head.header("content-length") == str(len(get.body)), path


@pytest_twisted.ensureDeferred
async def test_pretty_json_as_upstream(stub):
    for path in ("builds?limit=2", "masters?limit=9", "builds/1"):
        compact = await stub.get(path)
        r = await stub.get(path, headers={"Accept": "text/html"})
        assert r.code == 200
        assert r.body == pretty(compact.json)
        assert b", \n" in r.body  # upstream's trailing spaces
        assert r.header("content-type") == "application/json; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_errors_are_upstream_shaped_json(stub):
    for accept in ("application/json", "text/html"):
        r = await stub.get("builds?foo=1", headers={"Accept": accept})
        assert r.code == 400
        assert r.body == b'{"error": "unrecognized query parameter \'foo\'"}'
        assert r.header("content-type") == "application/json; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_unknown_method(stub):
    for method in ("PUT", "DELETE", "PATCH"):
        r = await stub.request(method, "builds")
        assert (r.code, r.json) == (400, {"error": "invalid HTTP method"}), method


@pytest_twisted.ensureDeferred
async def test_stub_paths(stub, api_sqlite):
    r = await stub.get("/api/v2/")
    assert (r.code, r.json) == (404, {"error": "Invalid path: "})
    r = await stub.get("/api")
    assert r.code == 200
    assert r.body == b'{"api_versions": {"v2": "http://testserver/api/v2"}}'
    r = await stub.get("/api/latest/masters?limit=1")
    masters = expected_masters(api_sqlite)  # (the stub's database)
    assert (r.code, r.json) == (200, {"masters": masters[:1], "meta": {
        "total": len(masters),
        "links": {"next": "http://testserver/api/v2/masters?limit=1&offset=1"}}})


@pytest_twisted.ensureDeferred
async def test_encoded_slash_stays_in_one_segment(stub):
    r = await stub.get("builders/a%2Fb/builds")
    assert r.code == 404
    assert "Invalid path" not in r.json["error"]
    assert "'a/b'" in r.json["error"]
    r = await stub.get("builders/a/b/builds")
    assert (r.code, r.json) == (404, {"error": "Invalid path: builders/a/b/builds"})


@pytest_twisted.ensureDeferred
async def test_odd_query_input_is_400_not_500(stub, api_sqlite):
    for query in ("buildid=99999999999999999999", "buildid__lt=-99999999999999999999",
                  "limit=99999999999999999999", "offset=99999999999999999999",
                  "state_string=a%00b", "property=a%00b", "number__contains=1",
                  "%ff=1", "order=", "field=", "order=-", "limit=-1", "offset=-2",
                  "buildid__lt=1&buildid__lt=2", "buildid__foo=1", "foo__eq=1",
                  "properties=1", "complete__isnull=yes&complete__isnull=no"):
        r = await stub.get("builds?" + query)
        assert r.code == 400, (query, r.body)
        assert r.header("content-type") == "application/json; charset=utf-8"
    r = await stub.get("builds?state_string=%ff%fe&limit=1")  # not UTF-8: named
    assert (r.code, r.json) == (400, {"error": "invalid value for state_string: not UTF-8"})
    builds = expected_builds(api_sqlite)
    r = await stub.get("builds?limit&offset=0")  # no "=": dropped
    assert (r.code, r.json) == (200, {"builds": builds,
                                      "meta": {"total": len(builds), "links": {}}})
    # a list has no order (COMPAT 29: upstream ignores such an order silently)
    for order in ("-tags", "masterids"):
        r = await stub.get(f"builders?order={order}&limit=100")
        assert (r.code, r.json) == (400, {"error": f"invalid order {order}: "
                                          f"{order.lstrip('-')!r} is a list, which has no "
                                          "order"})
    r = await stub.get("builds?field=properties&field=buildid&property=*&limit=2")
    props: dict[int, dict] = {}
    for buildid, name, value, source in api_sqlite.rows(sa.text(
            "SELECT buildid, name, value, source FROM build_properties")):
        props.setdefault(buildid, {})[name] = [json.loads(value), source]
    first = [b["buildid"] for b in builds[:2]]
    assert all(props[i] for i in first)
    assert (r.code, r.json["builds"]) == (200, [{"buildid": i, "properties": props[i]}
                                                for i in first])


@pytest_twisted.ensureDeferred
async def test_streamed_collection_with_total_first_and_missing_parent(api, monkeypatch):
    from buildbot_rest.data import reads
    monkeypatch.setattr(reads, "STREAM_BATCH", 2)
    # "steps" sorts after "meta": the total is counted before the rows are streamed
    streamed = await api.request("GET", "api/v2/builds/1/steps", raw=True)
    assert streamed.length is None
    want = expected_steps(api, 1)
    assert len(want) > 2
    assert json.loads(streamed.body) == {"steps": want, "meta": {"total": len(want)}}
    assert streamed.body.startswith(b'{"meta":{"total":')
    # the path is resolved in the stream's thread: a missing build is still a 404
    assert_not_found(await api.get("builds/999999/steps"), {"buildid": 999999})


@pytest_twisted.ensureDeferred
async def test_head_says_what_get_says_under_every_coding(api, stream_above_10):
    """HEAD's headers are GET's (RFC 9110 9.3.2), compressed or not: whole answers,
    streamed collections, downloads and errors."""
    for coding in ("gzip", "br", "identity"):
        for path in ("builds?limit=2", "builds/1", "builds", "masters", "logs/1/raw",
                     "logs/1/contents", "builds/999999", "builds?nosuch=1"):
            hdrs = {"Accept-Encoding": coding}
            get = await api.request("GET", "api/v2/" + path, headers=hdrs, raw=True)
            head = await api.request("HEAD", "api/v2/" + path, headers=hdrs, raw=True)
            assert (head.code, head.body) == (get.code, b""), (coding, path)
            for name in ("content-type", "content-encoding", "vary"):
                assert head.header(name) == get.header(name), (coding, path, name)
            # (Twisted's client takes GET's Content-Length into ``length``; None: chunked.
            # A streamed identity body is counted for HEAD; a coded one is not.)
            if get.length is not None:
                length: str | None = str(get.length)
            else:
                length = None if get.header("content-encoding") else str(len(get.body))
            assert head.header("content-length") == length, (coding, path)
