"""The edges of the HTTP layer (issue 9): every answer below ``/api`` is JSON whatever the
path, pagination links never point at the page they come with, and every answer carries
the headers that keep a browser from running what the API serves."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import pytest_twisted
import sqlalchemy as sa
from treq.testing import StubTreq
from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from buildbot_rest.db import schema as s
from buildbot_rest.www import WebApp
from buildbot_rest.www.frontend import StaticUi, find_ui
from buildbot_rest.www.headers import DOWNLOAD_POLICY, SERVER
from buildbot_rest.www.rest import page_offsets
from buildbot_rest.www.site import ApiSite, Mounted
from tests.www.conftest import Api, Reply, Stub, own_server
from tests.www.test_build_data import build_with_data
from tests.www.test_logchunks import find_log
from tests.www.test_paths import assert_not_found

JSON_TYPE = "application/json; charset=utf-8"


def assert_common_headers(r: Reply, what: object = None) -> None:
    """The headers of every answer: ``nosniff``, and a ``Server`` without a version."""
    assert r.headers.getRawHeaders("x-content-type-options") == ["nosniff"], what
    assert r.headers.getRawHeaders("server") == [SERVER.decode()], what


async def get_and_head(api: Api, path: str) -> tuple[Reply, Reply]:
    """GET and HEAD of ``path`` (below the root, sent byte for byte as written)."""
    got = await api.request("GET", path, raw=True)
    head = await api.request("HEAD", path, raw=True)
    for r in (got, head):
        assert_common_headers(r, path)
    assert head.code == got.code, path
    assert head.body == b"", path
    assert head.header("content-type") == got.header("content-type"), path
    assert head.header("content-length") == str(len(got.body)), path
    return got, head


# -- every answer below /api is JSON ------------------------------------------------------

#: a segment longer than any name, far below Twisted's 16 KiB limit of a request head
LONG = "x" * 8000


def api_level_errors() -> list[tuple[str, int, str]]:
    """Paths below ``/api`` but outside ``/api/v2``: (path as sent, status, error)."""
    not_utf8 = "path is not UTF-8: "
    invalid = "Invalid path: "
    paths = [("api/", 404, invalid), ("api/v3", 404, invalid),
             ("api/v3/builders", 404, invalid), ("api//v2", 404, invalid),
             ("api//v2/builders", 404, invalid), ("api/V2", 404, invalid),
             ("api/v2%2Fbuilders", 404, invalid), ("api%2Fv2/builders", 404, invalid),
             ("api/..", 404, invalid), ("api/../api/v2", 404, invalid),
             ("api/%0A", 404, invalid), ("api/v2%00", 404, invalid),
             ("api/%20v2", 404, invalid), ("api/" + LONG, 404, invalid),
             ("api/%FF", 400, not_utf8), ("api/%C3%28/builders", 400, not_utf8),
             ("api/v3/%FF", 400, not_utf8), ("api//%ED%A0%80", 400, not_utf8)]
    return [(path, status, prefix + "/" + path) for path, status, prefix in paths]


@pytest_twisted.ensureDeferred
async def test_api_level_paths_are_json(api):
    for path, status, error in api_level_errors():
        got, _ = await get_and_head(api, path)
        assert (got.code, got.json) == (status, {"error": error}), path
        assert got.header("content-type") == JSON_TYPE, path
    for path in ("api", "api?x=1"):
        got, _ = await get_and_head(api, path)
        assert (got.code, got.json) == (200, {"api_versions": {
            "v2": "http://testserver/api/v2"}}), path
        assert got.header("content-type") == "application/json"  # upstream's


@pytest_twisted.ensureDeferred
async def test_v2_paths_are_json(api):
    # (path below /api/v2 and /api/latest, status, error)
    cases = [
        ("builders/%FF", 400, None), ("%FF/builds", 400, None),
        ("builders/1/builds/%E2%82", 400, None),
        # empty segments are not merged: "//builders" is not "/builders" (as upstream)
        ("/builders", 404, "Invalid path: /builders"),
        ("builders//1", 404, "Invalid path: builders//1"),
        ("builders/1//builds", 404, "Invalid path: builders/1//builds"),
        ("builds//", 404, "Invalid path: builds//"),
        ("/", 404, "Invalid path: /"),
        ("builds%0A", 404, "Invalid path: builds\n"),
        ("builds/%00", 404, "Invalid path: builds/\x00"),
        ("builds/1%09", 404, "Invalid path: builds/1\t"),
        ("builds%2F1", 404, "Invalid path: builds/1"),
        ("../v2/builders", 404, "Invalid path: ../v2/builders"),
        ("builds/..", 404, "Invalid path: builds/.."),
        (".", 404, "Invalid path: ."),
        (LONG, 404, f"Invalid path: {LONG}"),
    ]
    for version in ("v2", "latest"):
        for below, status, error in cases:
            path = f"api/{version}/{below}"
            got, _ = await get_and_head(api, path)
            assert got.code == status, path
            assert got.header("content-type") == JSON_TYPE, path
            if error is None:
                error = "path is not UTF-8: /" + path
            assert got.json == {"error": error}, path
        # a segment a name pattern takes: the entity is not found, whatever the bytes
        for name in ("1\n", "a/b", LONG, "\x7f", ".."):
            encoded = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in name)
            got, _ = await get_and_head(api, f"api/{version}/builders/{encoded}")
            assert_not_found(got, {"buildername": name})


@pytest_twisted.ensureDeferred
async def test_any_method_below_api(api):
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = await api.request(method, "api/v3", raw=True)
        assert (r.code, r.json) == (404, {"error": "Invalid path: /api/v3"}), method
        r = await api.request(method, "api/%FF/builders", raw=True)
        assert (r.code, r.json) == (400, {
            "error": "path is not UTF-8: /api/%FF/builders"}), method
        if method == "POST":
            # a JSON-RPC call: its checks run in upstream's order, the content type first
            r = await api.request(method, "api/v2/builders/%FF", raw=True)
            assert (r.code, r.json) == (400, {"jsonrpc": "2.0", "error": {
                "code": -32600, "message": "Invalid content-type (use application/json)"}})
        else:
            # (below /api/v2 the method is refused before the path is read)
            r = await api.request(method, "api/v2/builders/%FF", raw=True)
            assert (r.code, r.json) == (400, {"error": "invalid HTTP method"}), method
            r = await api.request(method, "api/v2/builds", raw=True)
            assert (r.code, r.json) == (400, {"error": "invalid HTTP method"}), method
        assert r.header("content-type") == JSON_TYPE
        # /api answers its versions to any method, as upstream
        r = await api.request(method, "api", raw=True)
        assert (r.code, r.json) == (200, {"api_versions": {
            "v2": "http://testserver/api/v2"}}), method
        assert_common_headers(r, method)


@pytest_twisted.ensureDeferred
async def test_mounted_elsewhere_names_the_path_as_sent(api_sqlite):
    """Embedded below ``/rest`` of a site of its own: the same JSON answers, naming the
    path the client sent."""
    root = Resource()
    root.putChild(b"rest", Mounted(WebApp(api_sqlite.connector).resource()))
    stub = Stub(api_sqlite.connector)
    stub.treq = StubTreq(root)
    r = await stub.get("/rest")
    assert (r.code, r.json) == (200, {"api_versions": {"v2": "http://testserver/api/v2"}})
    for path, status, error in (("/rest/v3", 404, "Invalid path: /rest/v3"),
                                ("/rest/", 404, "Invalid path: /rest/"),
                                ("/rest/v2/%FF", 400, "path is not UTF-8: /rest/v2/%FF"),
                                ("/rest/v2//builds", 404, "Invalid path: /builds")):
        r = await stub.get(path)
        assert (r.code, r.json) == (status, {"error": error}), path
        assert r.header("content-type") == JSON_TYPE
        assert_common_headers(r, path)
    r = await stub.get("/rest/v2/builds/1")
    assert r.code == 200 and r.json["builds"][0]["buildid"] == 1
    assert_common_headers(r)


# -- pagination links ---------------------------------------------------------------------

def test_page_offsets_never_name_the_page():
    """Over every small (limit, offset, total): no link names the page itself, ``prev``
    moves back, and following ``next`` from 0 covers [0, total) in order, once."""
    for total in range(0, 26):
        for limit in (None, *range(0, 13)):
            for offset in range(0, 2 * total + 8):
                links = page_offsets(limit, offset, total)
                assert offset not in links.values(), (limit, offset, total)
                assert set(links) <= {"next", "prev"}
                if limit == 0:
                    assert links == {}
                    continue
                if "next" in links:
                    assert links["next"] > offset and links["next"] < total
                if offset > 0:
                    assert links["prev"] < offset
                    if limit is not None and total > 0:  # prev of a page past the end:
                        assert links["prev"] < total   # a page with items
                else:
                    assert "prev" not in links
            if limit:
                seen, at, hops = [], 0, 0
                while True:
                    seen += range(at, min(at + limit, total))
                    hops += 1
                    nxt = page_offsets(limit, at, total).get("next")
                    if nxt is None:
                        break
                    at = nxt
                assert seen == list(range(total))
                assert hops == max(1, math.ceil(total / limit))


def parse_link_header(value: str | None) -> dict[str, str]:
    """RFC 8288 ``<url>; rel="name", ...`` as {rel: url} (our URLs hold no commas)."""
    if value is None:
        return {}
    links = {}
    for part in value.split(", "):
        url, _, rel = part.partition("; ")
        assert url.startswith("<") and url.endswith(">"), value
        assert rel.startswith('rel="') and rel.endswith('"'), value
        links[rel[5:-1]] = url[1:-1]
    return links


def page_of(url: str) -> tuple[str, list[tuple[str, str]], int | None, int]:
    """(path, other parameters, limit, offset) of a page's URL."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    limit = [int(v) for k, v in params if k == "limit"]
    offset = [int(v) for k, v in params if k == "offset"]
    others = sorted((k, v) for k, v in params if k not in ("limit", "offset"))
    return parts.path, others, (limit[0] if limit else None), (offset[0] if offset else 0)


def build_ids(api: Api, below: int) -> list[int]:
    return [r[0] for r in api.rows(sa.select(s.builds.c.id).where(s.builds.c.id < below)
                                   .order_by(s.builds.c.id))]


def totals(api: Api) -> list[int]:
    """Bounds ``buildid__lt`` that leave 0, 1, 3 and all the builds."""
    every = build_ids(api, 2**31)
    assert len(every) > 3
    return [every[0], every[1], every[3], every[-1] + 1]


def local(api: Api, url: str) -> str:
    """A link (named with the test's base_url) as a path below the listening server."""
    assert url.startswith("http://testserver/"), url
    return url[len("http://testserver/"):]


@pytest_twisted.ensureDeferred
async def test_no_link_points_at_its_page(api):
    for below in totals(api):
        ids = build_ids(api, below)
        total = len(ids)
        limits = sorted({0, 1, 2, 3, 7, max(total - 1, 0), total, total + 1})
        offsets = sorted({0, 1, 2, 3, max(total - 1, 0), total, total + 1, 2 * total + 5})
        for limit in (None, *limits):
            for offset in (None, *offsets):
                query = [("field", "buildid"), ("buildid__lt", str(below))]
                if limit is not None:
                    query.append(("limit", str(limit)))
                if offset is not None:
                    query.append(("offset", str(offset)))
                path = "api/v2/builds?" + "&".join(f"{k}={v}" for k, v in query)
                r = await api.request("GET", path, raw=True)
                assert r.code == 200, path
                start = offset or 0
                end = total if limit is None else start + limit
                assert r.json["builds"] == [{"buildid": i} for i in ids[start:end]], path
                meta = r.json["meta"]
                assert meta["total"] == total, path
                if limit is None and offset is None:
                    assert "links" not in meta and r.header("link") is None, path
                    continue
                links = meta["links"]
                assert parse_link_header(r.header("link")) == links, path
                here = page_of("http://testserver/" + path)
                for rel, url in links.items():
                    there = page_of(url)
                    assert url != "http://testserver/" + path, (path, rel)
                    assert there[:3] == here[:3], (path, rel)  # only the offset moves
                    assert there[3] != here[3], (path, rel)
                    assert (rel == "next") == (there[3] > here[3]), (path, rel)
                if limit == 0:
                    assert links == {}, path
                if start == 0:
                    assert "prev" not in links, path
                if limit is not None and start >= total:
                    assert "next" not in links, path
                if "prev" in links and limit and total:
                    # a page past the end leads back to items
                    prev = await api.request("GET", local(api, links["prev"]), raw=True)
                    assert prev.code == 200 and prev.json["builds"], (path, links["prev"])


@pytest_twisted.ensureDeferred
async def test_following_next_visits_every_item_once(api):
    for below in totals(api):
        ids = build_ids(api, below)
        for limit in (1, 2, 3, 7, len(ids) or 1, len(ids) + 1, 100):
            for first in (f"limit={limit}", f"limit={limit}&offset=0"):
                path = f"api/v2/builds?field=buildid&buildid__lt={below}&{first}"
                seen: list[int] = []
                pages: list[str] = []
                while path is not None:
                    assert path not in pages, f"{path} visited twice"
                    assert len(pages) <= len(ids) + 1, "next never ends"
                    pages.append(path)
                    r = await api.request("GET", path, raw=True)
                    assert r.code == 200, path
                    seen += [b["buildid"] for b in r.json["builds"]]
                    nxt = r.json["meta"]["links"].get("next")
                    path = local(api, nxt) if nxt is not None else None
                assert seen == ids, (below, first)
                assert len(pages) == max(1, math.ceil(len(ids) / limit)), (below, first)
                # and back: prev from the last page reaches the first, each page once
                back: list[str] = []
                r = await api.request("GET", pages[-1], raw=True)
                while "prev" in r.json["meta"]["links"]:
                    back.append(local(api, r.json["meta"]["links"]["prev"]))
                    assert len(back) < len(pages), "prev never ends"
                    r = await api.request("GET", back[-1], raw=True)
                assert [page_of(p)[3] for p in back] == [page_of(p)[3]
                                                         for p in pages[-2::-1]]


@pytest_twisted.ensureDeferred
async def test_links_of_the_root_and_of_head(api):
    every = (await api.request("GET", "api/v2", raw=True)).json["rootlinks"]
    assert len(every) > 4
    r = await api.request("GET", "api/v2?limit=2", raw=True)
    assert r.json["rootlinks"] == every[:2]
    following = "http://testserver/api/v2?limit=2&offset=2"
    assert r.json["meta"]["links"] == {"next": following}
    assert r.header("link") == f'<{following}>; rel="next"'
    r = await api.request("GET", local(api, following), raw=True)
    assert r.code == 200
    assert r.json["rootlinks"] == every[2:4]
    assert r.json["meta"]["links"] == {
        "next": "http://testserver/api/v2?limit=2&offset=4",
        "prev": "http://testserver/api/v2?limit=2&offset=0"}
    head = await api.request("HEAD", "api/v2/builds?limit=0&offset=3", raw=True)
    got = await api.request("GET", "api/v2/builds?limit=0&offset=3", raw=True)
    assert got.json["meta"]["links"] == {} and got.json["builds"] == []
    assert head.header("link") is None and got.header("link") is None
    head = await api.request("HEAD", "api/v2/builds?limit=2&offset=1", raw=True)
    got = await api.request("GET", "api/v2/builds?limit=2&offset=1", raw=True)
    assert head.header("link") == got.header("link")
    assert parse_link_header(got.header("link")) == got.json["meta"]["links"]
    assert set(got.json["meta"]["links"]) == {"next", "prev"}


# -- the headers of every answer ----------------------------------------------------------

@pytest.fixture
def stream_above_10(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpaged collections of more than 10 items are streamed (the demo data is small)."""
    from buildbot_rest.data import reads
    monkeypatch.setattr(reads, "STREAM_BATCH", 10)


@pytest_twisted.ensureDeferred
async def test_every_kind_of_answer_has_the_headers(api, stream_above_10):
    logid = find_log(api)
    buildid, _ = build_with_data(api)
    name = api.rows(sa.select(s.build_data.c.name)
                    .where(s.build_data.c.buildid == buildid).limit(1))[0][0]
    kinds = {
        "versions": ("api", 200),
        "root": ("api/v2", 200),
        "single": ("api/v2/builds/1", 200),
        "page": ("api/v2/builds?limit=2&offset=1", 200),
        "streamed": ("api/v2/builds", 200),
        "latest": ("api/latest/masters", 200),
        "raw": (f"api/v2/logs/{logid}/raw", 200),
        "raw_inline": (f"api/v2/logs/{logid}/raw_inline", 200),
        "build data value": (f"api/v2/builds/{buildid}/data/{name}/value", 200),
        "bad query": ("api/v2/builds?foo=1", 400),
        "not UTF-8": ("api/v2/builds/%FF", 400),
        "not found": ("api/v2/builds/999999", 404),
        "invalid path": ("api/v2/nosuch", 404),
        "outside v2": ("api/v3", 404),
        "outside /api": ("nosuch", 404),
        "the web UI, or how to get it": ("", 200 if isinstance(find_ui(), StaticUi) else 404),
        "the UI's configuration": ("config", 200),
    }
    for kind, (path, status) in kinds.items():
        for accept_encoding in (None, "gzip"):
            headers = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
            for method in ("GET", "HEAD"):
                r = await api.request(method, path, raw=True, headers=headers)
                assert r.code == status, (kind, method)
                assert_common_headers(r, (kind, method, accept_encoding))
                assert not any(b"TwistedWeb" in value for _, values
                               in r.headers.getAllRawHeaders() for value in values), kind
                download = kind in ("raw", "raw_inline", "build data value")
                policy = r.headers.getRawHeaders("content-security-policy")
                assert policy == ([DOWNLOAD_POLICY.decode()] if download else None), kind
    streamed = await api.request("GET", "api/v2/builds", raw=True)
    assert streamed.length is None  # (it is streamed, and still has them)


def _add_scripted_log(api: Api) -> dict[str, Any]:
    """An HTML log whose text runs a script, as a build could write it."""
    html = b"<html><body><script>document.title = document.cookie</script></body></html>"
    with api.db.engine.begin() as conn:
        stepid = conn.execute(sa.text("SELECT min(id) FROM steps")).scalar()
        logid = int(conn.execute(sa.text("SELECT max(id) FROM logs")).scalar()) + 1
        conn.execute(sa.text(
            "INSERT INTO logs (id, name, slug, stepid, complete, num_lines, type) "
            "VALUES (:id, 'evil.html', 'evil-html', :step, 1, 1, 'h')"),
            {"id": logid, "step": stepid})
        conn.execute(sa.text(
            "INSERT INTO logchunks (logid, first_line, last_line, content, compressed) "
            "VALUES (:log, 0, 0, :content, 0)"), {"log": logid, "content": html})
    return {"logid": logid, "html": html}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def scripted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Api, dict[str, Any]]]:
    yield from own_server(request, tmp_path_factory, "scripted", _add_scripted_log)


@pytest_twisted.ensureDeferred
async def test_html_log_is_sandboxed(scripted):
    api, log = scripted
    for kind in ("raw_inline", "raw"):
        for method in ("GET", "HEAD"):
            for coding in (None, "gzip"):
                headers = {"Accept-Encoding": coding} if coding else {}
                r = await api.request(method, f"api/v2/logs/{log['logid']}/{kind}",
                                      raw=True, headers=headers)
                what = (kind, method, coding)
                assert r.code == 200, what
                assert r.header("content-type") == "text/html; charset=utf-8", what
                assert r.headers.getRawHeaders("content-security-policy") == [
                    DOWNLOAD_POLICY.decode()], what
                assert_common_headers(r, what)
                assert (r.header("content-disposition") is None) == (kind == "raw_inline")
                if method == "GET" and coding is None:
                    assert r.body == log["html"] + b"\n", what  # served as written
    # a JSON answer is not a download: no policy
    r = await api.request("GET", f"api/v2/logs/{log['logid']}", raw=True)
    assert r.code == 200 and r.json["logs"][0]["type"] == "h"
    assert r.header("content-security-policy") is None


# -- the standalone site: answers Twisted writes without a resource -----------------------

class _RawClient(Protocol):
    """Sends bytes as they are and keeps every byte of the answer until the close."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = bytearray()
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(bytes(self.data))


async def _exchange(port: int, request: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    client = _RawClient(request)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoints.connectProtocol(endpoint, client)
    answer = await client.closed.addTimeout(10, reactor)
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), []).append(value.strip())
    return status, headers, body


@pytest_twisted.ensureDeferred
async def test_standalone_site_headers(api_sqlite):
    site = ApiSite(WebApp(api_sqlite.connector).resource(), "off", None, reactor)
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    number = port.getHost().port
    try:
        def request(line: str) -> bytes:
            return f"{line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()

        # (request line, status line, the keys of its JSON body)
        for line, status, keys in (
                ("OPTIONS * HTTP/1.1", "HTTP/1.1 200 OK", None),
                ("GET * HTTP/1.1", "HTTP/1.1 405 Method Not Allowed", None),
                ("GET /api/v2/builds/1 HTTP/1.1", "HTTP/1.1 200 OK", ["builds", "meta"]),
                ("GET /api/v2/builds/%FF HTTP/1.1", "HTTP/1.1 400 Bad Request", ["error"]),
                ("GET /api/v9 HTTP/1.1", "HTTP/1.1 404 Not Found", ["error"]),
                ("HEAD /api/v9 HTTP/1.1", "HTTP/1.1 404 Not Found", None),
                ("GET /elsewhere HTTP/1.1", "HTTP/1.1 404 Not Found", None)):
            got, headers, body = await _exchange(number, request(line))
            assert got == status, line
            assert headers["server"] == [SERVER.decode()], line
            assert headers["x-content-type-options"] == ["nosniff"], line
            if keys is not None:
                assert headers["content-type"] == [JSON_TYPE], line
                assert sorted(json.loads(body)) == keys, line
        # What the HTTP channel refuses before any request exists carries the same
        # headers and a JSON error (tests/www/test_http_edges.py has every refusal).
        padding = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(17))
        for raw, status in (
                (b"NONSENSE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
                (request(f"GET /api/v2/builds HTTP/1.1\r\n{padding.rstrip()}"),
                 "HTTP/1.1 431 Request Header Fields Too Large"),
                (request("GET /api/v2/builders/" + "y" * 17000 + " HTTP/1.1"),
                 "HTTP/1.1 414 URI Too Long")):
            got, headers, body = await _exchange(number, raw)
            assert got == status
            assert headers["server"] == [SERVER.decode()]
            assert headers["x-content-type-options"] == ["nosniff"]
            assert headers["content-type"] == [JSON_TYPE]
            assert sorted(json.loads(body)) == ["error"]
    finally:
        await port.stopListening()
