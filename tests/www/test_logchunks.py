"""Log text over HTTP: ``/contents`` line ranges and the ``/raw`` downloads."""

from __future__ import annotations

import gc
import gzip
import hashlib
from collections.abc import Iterator

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import reactor
from twisted.web.client import Agent

from buildbot_rest import demo
from buildbot_rest.db import Database, logchunks
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, serve_database


def log_lines(api, logid):
    """Every stored line of a log (bytes, with their stream prefix)."""
    lc = s.logchunks
    lines: list[bytes] = []
    for content, code in api.rows(sa.select(lc.c.content, lc.c.compressed)
                                  .where(lc.c.logid == logid).order_by(lc.c.first_line)):
        lines += logchunks.decompress(code, content).split(b"\n")
    return lines


def text(lines):
    return b"".join(line + b"\n" for line in lines).decode()


def find_log(api, *, type_="s", codec=None, min_chunks=1):
    lg, lc = s.logs, s.logchunks
    stmt = (sa.select(lg.c.id).join_from(lg, lc, lc.c.logid == lg.c.id)
            .where(lg.c.type == type_).group_by(lg.c.id)
            .having(sa.func.count() >= min_chunks).order_by(lg.c.id).limit(1))
    if codec is not None:
        stmt = stmt.where(lc.c.compressed == codec)
    return api.rows(stmt)[0][0]


def log_paths(api, logid):
    """The six ways to name a log (``/contents`` and ``/raw`` take them all)."""
    lg, st, b = s.logs, s.steps, s.builds
    slug, stepid, buildid, step_number, step_name, number, builderid = api.rows(
        sa.select(lg.c.slug, st.c.id, b.c.id, st.c.number, st.c.name, b.c.number,
                  b.c.builderid)
        .join_from(lg, st, st.c.id == lg.c.stepid).join(b, b.c.id == st.c.buildid)
        .where(lg.c.id == logid))[0]
    return [f"logs/{logid}", f"steps/{stepid}/logs/{slug}",
            f"builds/{buildid}/steps/{step_name}/logs/{slug}",
            f"builds/{buildid}/steps/{step_number}/logs/{slug}",
            f"builders/{builderid}/builds/{number}/steps/{step_name}/logs/{slug}",
            f"builders/{builderid}/builds/{number}/steps/{step_number}/logs/{slug}"]


@pytest_twisted.ensureDeferred
async def test_contents_of_every_codec(api):
    for codec in range(6):
        logid = find_log(api, codec=codec)
        lines = log_lines(api, logid)
        r = await api.get(f"logs/{logid}/contents")
        assert r.code == 200
        assert r.json == {"logchunks": [{"logid": logid, "firstline": 0,
                                         "content": text(lines)}], "meta": {}}
        # stdio lines keep their stream prefix here
        assert all(line[:1] in b"oeh" for line in lines)


@pytest_twisted.ensureDeferred
async def test_contents_ranges_across_chunks(api):
    logid = find_log(api, min_chunks=2)
    lines = log_lines(api, logid)
    n = len(lines)
    for offset, limit in [(0, 1), (3, 5), (n // 2 - 2, 4), (n - 1, 1), (n - 3, 10), (1, None),
                          (n - 1, None), (n + 5, 3)]:
        query = f"offset={offset}" + ("" if limit is None else f"&limit={limit}")
        r = await api.get(f"logs/{logid}/contents?{query}")
        end = None if limit is None else offset + limit
        assert r.code == 200, query
        assert r.json["logchunks"] == [{"logid": logid, "firstline": offset,
                                        "content": text(lines[offset:end])}], query
    r = await api.get(f"logs/{logid}/contents?limit=2&field=content")
    assert r.json["logchunks"] == [{"content": text(lines[:2])}]


@pytest_twisted.ensureDeferred
async def test_contents_bad_ranges(api):
    logid = find_log(api)
    n = len(log_lines(api, logid))
    for query in ("limit=0", f"offset={n}", f"offset={n + 10}", "offset=3&limit=0"):
        r = await api.get(f"logs/{logid}/contents?{query}")
        assert r.code == 404, query
        assert "not found" in r.json["error"]
    for query in ("offset=-1", "limit=-2", "offset=x", "content=a", "logid=1", "foo=1"):
        r = await api.get(f"logs/{logid}/contents?{query}")
        assert r.code == 400, query


@pytest_twisted.ensureDeferred
async def test_contents_every_form_and_missing(api):
    logid = find_log(api, type_="t")
    expected = text(log_lines(api, logid))
    for path in log_paths(api, logid):
        r = await api.get(f"{path}/contents")
        assert r.json["logchunks"][0]["content"] == expected, path
        assert r.json["logchunks"][0]["logid"] == logid
    builder = api.rows(sa.select(s.builders.c.name).limit(1))[0][0]
    for path in ("logchunks", "logs/99999/contents", "steps/99999/logs/stdio/contents",
                 "builds/1/steps/999/logs/stdio/contents", "logs/1/rawx",
                 f"builders/{builder}/builds/1/steps/0/logs/stdio/contents",
                 f"builders/{builder}/builds/1/steps/0/logs/stdio/raw"):
        r = await api.get(path)
        assert r.code == 404, path
        assert "error" in r.json
    r = await api.get("")
    assert "logchunks" in [x["name"] for x in r.json["rootlinks"]]


def header_of(api, logid):
    lg, st, b, bl, w = s.logs, s.steps, s.builds, s.builders, s.workers
    return api.rows(sa.select(bl.c.name, b.c.number, w.c.name, st.c.name, lg.c.slug)
                    .join_from(lg, st, st.c.id == lg.c.stepid).join(b, b.c.id == st.c.buildid)
                    .join(bl, bl.c.id == b.c.builderid).join(w, w.c.id == b.c.workerid)
                    .where(lg.c.id == logid))[0]


@pytest_twisted.ensureDeferred
async def test_raw_stdio(api):
    logid = find_log(api, min_chunks=2)
    builder, number, worker, step, slug = header_of(api, logid)
    lines = log_lines(api, logid)
    body = (f"Builder: {builder}\nBuild number: {number}\nWorker name: {worker}\n".encode()
            + b"".join(line[1:] + b"\n" for line in lines))
    for path in log_paths(api, logid):
        r = await api.get(f"{path}/raw")
        assert r.code == 200, path
        assert r.body == body, path
        assert r.header("content-type") == "text/plain; charset=utf-8"
        name = f"{builder}_build_{number}_step_{step}_log_{slug}"
        assert r.header("content-disposition") == f'attachment; filename="{name}"'
        r = await api.get(f"{path}/raw_inline")
        assert r.code == 200 and r.body == body, path
        assert r.header("content-disposition") is None
        assert r.header("content-type") == "text/plain; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_raw_of_text_and_html_logs(api):
    for type_, mime in (("t", "text/plain"), ("h", "text/html")):
        logid = find_log(api, type_=type_)
        r = await api.get(f"logs/{logid}/raw")
        assert r.code == 200
        assert r.body == text(log_lines(api, logid)).encode()
        assert r.header("content-type") == f"{mime}; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_raw_query_and_errors(api):
    logid = find_log(api)
    full = await api.get(f"logs/{logid}/raw")
    r = await api.get(f"logs/{logid}/raw?limit=1&offset=2")
    assert r.body == full.body
    r = await api.get(f"logs/{logid}/raw?content=x")
    assert (r.code, r.json) == (400, {"error": "this is not a collection"})
    r = await api.get(f"logs/{logid}/raw_inline?foo=1")
    assert r.code == 400
    r = await api.get("logs/99999/raw")
    assert r.code == 404
    assert r.header("content-type") == "application/json; charset=utf-8"
    r = await api.request("HEAD", f"api/v2/logs/{logid}/raw")
    assert r.code == 200 and r.body == b""
    assert r.header("content-type") == "text/plain; charset=utf-8"
    identity = await api.request("GET", f"api/v2/logs/{logid}/raw", raw=True)
    assert identity.header("content-encoding") is None and identity.body == full.body
    zipped = await api.request("GET", f"api/v2/logs/{logid}/raw", raw=True,
                               headers={"Accept-Encoding": "gzip"})
    assert zipped.header("content-encoding") == "gzip"
    assert gzip.decompress(zipped.body) == identity.body


# -- a server of our own: a purged log, and a big log streamed with flat memory -----------

#: the size of the big log (it is streamed with memory far below this)
BIG = 48 * 2**20


@pytest.fixture(scope="module")
def own_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server over a database with a big stdio log (slug ``big-stdio``, logid
    ``BIG_LOGID``) and a purged log, on SQLite."""
    path = tmp_path_factory.mktemp("logchunks") / "big.sqlite"
    db = Database(f"sqlite:///{path}", pool_size=4)
    db.prepare_sync()
    demo.populate(db.engine, builds=2, seed=1, big_log_bytes=BIG, big_log_codec=logchunks.LZ4)
    lg, lc = s.logs, s.logchunks
    with db.engine.begin() as conn:
        # log 1 purged as upstream purges (its chunks deleted); log 2 caught half-way
        conn.execute(lg.update().where(lg.c.id.in_([1, 2])).values(type="d"))
        conn.execute(lc.delete().where(lc.c.logid == 1))
    yield from serve_database(db)


@pytest_twisted.ensureDeferred
async def test_purged_logs_are_empty(own_api):
    for logid in (1, 2):
        r = await own_api.get(f"logs/{logid}/contents")
        assert r.json["logchunks"] == [{"logid": logid, "firstline": 0, "content": ""}]
        r = await own_api.get(f"logs/{logid}/raw")
        assert (r.code, r.body) == (200, b"")
        assert r.header("content-type") == "text/plain; charset=utf-8"


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _expected_digest(api, logid: int, header: bytes) -> tuple[str, int]:
    """The digest and size of the raw download, computed chunk by chunk."""
    lc = s.logchunks
    digest = hashlib.sha256(header)
    size = len(header)
    with api.db.engine.connect() as conn:
        rows = conn.execute(sa.select(lc.c.content, lc.c.compressed)
                            .where(lc.c.logid == logid).order_by(lc.c.first_line))
        for content, code in rows:
            piece = b"".join(line[1:] + b"\n"
                             for line in logchunks.decompress(code, content).split(b"\n"))
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


@pytest_twisted.ensureDeferred
async def test_big_log_streams_with_flat_memory(own_api):
    lg = s.logs
    logid, num_lines = own_api.rows(sa.select(lg.c.id, lg.c.num_lines)
                                    .where(lg.c.slug == "big-stdio"))[0]
    builder, number, worker, _, _ = header_of(own_api, logid)
    header = f"Builder: {builder}\nBuild number: {number}\nWorker name: {worker}\n".encode()
    want_digest, want_size = _expected_digest(own_api, logid, header)
    assert want_size == len(header) + BIG - num_lines

    # warm up (thread pool, connections, allocator), then measure one whole download
    r = await own_api.get(f"logs/{logid}/contents?offset=5&limit=2")
    assert r.code == 200
    gc.collect()
    baseline = peak = _rss()
    digest = hashlib.sha256()
    received = 0

    def take(data: bytes) -> None:
        nonlocal peak, received
        digest.update(data)
        received += len(data)
        peak = max(peak, _rss())

    # (a bare Agent: treq would keep the whole body, and ask for gzip)
    url = own_api.root + f"api/v2/logs/{logid}/raw"
    resp = await Agent(reactor).request(b"GET", url.encode())
    assert resp.code == 200
    await treq.collect(resp, take)
    assert (received, digest.hexdigest()) == (want_size, want_digest)
    # The server and this client share the process: neither holds the log.
    assert peak - baseline < BIG // 4, f"RSS grew by {(peak - baseline) >> 20} MiB"
