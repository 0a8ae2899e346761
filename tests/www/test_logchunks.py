"""Log text over HTTP: ``/contents`` line ranges and the ``/raw`` downloads."""

from __future__ import annotations

import gc
import gzip
import hashlib
from collections.abc import Iterator
from urllib.parse import quote

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
from tests.www.test_paths import MISSING


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
    """The eight ways to name a log (``/contents`` and ``/raw`` take them all; upstream
    lacks the two by builder name, compatibility #28)."""
    lg, st, b, bl = s.logs, s.steps, s.builds, s.builders
    slug, stepid, buildid, step_number, step_name, number, builderid, builder = api.rows(
        sa.select(lg.c.slug, st.c.id, b.c.id, st.c.number, st.c.name, b.c.number,
                  b.c.builderid, bl.c.name)
        .join_from(lg, st, st.c.id == lg.c.stepid).join(b, b.c.id == st.c.buildid)
        .join(bl, bl.c.id == b.c.builderid)
        .where(lg.c.id == logid))[0]
    builds = [f"builds/{buildid}", f"builders/{builderid}/builds/{number}",
              f"builders/{quote(builder)}/builds/{number}"]
    return [f"logs/{logid}", f"steps/{stepid}/logs/{slug}",
            *(f"{build}/steps/{step}/logs/{slug}" for build in builds
              for step in (quote(step_name), step_number))]


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
async def test_contents_empty_ranges(api):
    # an empty range of an existing log is one empty chunk (upstream: 404, compatibility #30)
    logid = find_log(api, min_chunks=2)
    n = len(log_lines(api, logid))
    lg = s.logs
    assert api.rows(sa.select(lg.c.num_lines).where(lg.c.id == logid))[0][0] == n
    for offset, query in ((0, "limit=0"), (n, f"offset={n}"), (n + 10, f"offset={n + 10}"),
                          (3, "offset=3&limit=0"), (n, f"offset={n}&limit=0"),
                          (n, f"offset={n}&limit=5"), (n - 1, f"offset={n - 1}&limit=0")):
        for path in log_paths(api, logid):
            r = await api.get(f"{path}/contents?{query}")
            assert (r.code, r.json) == (200, {"logchunks": [
                {"logid": logid, "firstline": offset, "content": ""}], "meta": {}}), query
    r = await api.get(f"logs/{logid}/contents?limit=0&field=firstline")
    assert r.json["logchunks"] == [{"firstline": 0}]
    # a log that does not exist stays missing, whatever the range
    for path in (f"logs/{MISSING}/contents?limit=0", f"logs/{MISSING}/contents?offset=5",
                 f"{log_paths(api, logid)[1].rpartition('/')[0]}/no-such-log/contents?limit=0",
                 f"builds/{MISSING}/steps/0/logs/stdio/contents?limit=0"):
        r = await api.get(path)
        assert r.code == 404 and r.json["error"].startswith("not found"), path


@pytest_twisted.ensureDeferred
async def test_contents_huge_ranges(api):
    # offset + limit beyond 64 bits: the lines that exist, never an SQL error
    logid = find_log(api, min_chunks=2)
    lines = log_lines(api, logid)
    big = 2**63 - 807  # offset + limit exceeds the widest integer column
    for path in log_paths(api, logid):
        for offset, query in ((big, f"offset={big}&limit={big}"),
                              (0, f"offset=0&limit={2**63 - 1}"),
                              (2, f"offset=2&limit={big}"),
                              (2**63 - 1, f"offset={2**63 - 1}&limit={2**63 - 1}"),
                              (big, f"offset={big}")):
            r = await api.get(f"{path}/contents?{query}")
            assert (r.code, r.json) == (200, {"logchunks": [
                {"logid": logid, "firstline": offset,
                 "content": text(lines[offset:])}], "meta": {}}), (path, query)
    for query in (f"offset={2**63}", f"limit={2**64}", f"offset=1&limit={2**70}"):
        r = await api.get(f"logs/{logid}/contents?{query}")
        assert r.code == 400 and "error" in r.json, query


@pytest_twisted.ensureDeferred
async def test_contents_bad_ranges(api):
    logid = find_log(api)
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
    step = log_paths(api, logid)[-1].rpartition("/logs/")[0]
    builder = step.split("/")[1]
    for path in ("logchunks", "logs/99999/contents", "steps/99999/logs/stdio/contents",
                 "builds/1/steps/999/logs/stdio/contents", "logs/1/rawx",
                 f"{step}/logs/no-such-log/contents", f"{step}/logs/no-such-log/raw",
                 f"builders/{builder}/builds/{MISSING}/steps/0/logs/stdio/contents",
                 f"builders/{builder}/builds/{MISSING}/steps/0/logs/stdio/raw_inline",
                 "builders/no-such-builder/builds/1/steps/0/logs/stdio/raw"):
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
    """A server over a database with a big stdio log (slug ``big-stdio``), two purged
    logs (1 and 2) and a log with no lines yet (slug ``empty``), on SQLite."""
    path = tmp_path_factory.mktemp("logchunks") / "big.sqlite"
    db = Database(f"sqlite:///{path}", pool_size=4)
    db.prepare_sync()
    demo.populate(db.engine, builds=2, seed=1, big_log_bytes=BIG, big_log_codec=logchunks.LZ4)
    lg, lc = s.logs, s.logchunks
    with db.engine.begin() as conn:
        # log 1 purged as upstream purges (its chunks deleted); log 2 caught half-way
        conn.execute(lg.update().where(lg.c.id.in_([1, 2])).values(type="d"))
        conn.execute(lc.delete().where(lc.c.logid == 1))
        conn.execute(lg.insert().values(
            id=sa.select(sa.func.max(lg.c.id) + 1).scalar_subquery(), name="empty",
            slug="empty", stepid=sa.select(sa.func.min(s.steps.c.id)).scalar_subquery(),
            complete=0, num_lines=0, type="s"))
    yield from serve_database(db)


@pytest_twisted.ensureDeferred
async def test_purged_logs_are_empty(own_api):
    for logid in (1, 2):
        r = await own_api.get(f"logs/{logid}/contents")
        assert r.json["logchunks"] == [{"logid": logid, "firstline": 0, "content": ""}]
        r = await own_api.get(f"logs/{logid}/raw")
        assert (r.code, r.body) == (200, b"")
        assert r.header("content-type") == "text/plain; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_a_log_without_lines(own_api):
    lg = s.logs
    logid = own_api.rows(sa.select(lg.c.id).where(lg.c.slug == "empty"))[0][0]
    for query, first in (("", 0), ("?offset=3", 3), ("?limit=0", 0), ("?offset=2&limit=4", 2)):
        for path in log_paths(own_api, logid):
            r = await own_api.get(f"{path}/contents{query}")
            assert (r.code, r.json) == (200, {"logchunks": [
                {"logid": logid, "firstline": first, "content": ""}], "meta": {}}), path
    builder, number, worker, _, _ = header_of(own_api, logid)
    r = await own_api.get(f"logs/{logid}/raw")
    assert (r.code, r.body) == (200, f"Builder: {builder}\nBuild number: {number}\n"
                                     f"Worker name: {worker}\n".encode())


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
