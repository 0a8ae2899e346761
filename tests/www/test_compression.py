"""Compressed streamed answers: an unpaged collection too long for one batch (more than
2000 rows) and a raw log are streamed (chunked, no Content-Length); asked for br, zstd
or gzip, each is one compressed stream that decompresses to the identity answer, byte
for byte. The identity answers are checked against the rows the test wrote.

The requests go through a bare Agent (treq would add its own ``Accept-Encoding: gzip``
and decode it), and each body is decompressed as an HTTP client does: one stream, to its
end, with nothing after it."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import brotli
import pytest
import pytest_twisted
import sqlalchemy as sa
import zstandard

from tests.www.conftest import Api, Reply, own_server

#: more rows than the server reads in one batch (2000), so that they are streamed
ROWS = 2345
#: the lines of the text log, in chunks of this many lines
LOG_LINES, CHUNK_LINES = 3000, 1000


def _gunzip(body: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member, as HTTP clients read it
    out = d.decompress(body)
    assert d.eof and not d.unused_data, "not exactly one gzip stream"
    return out


def _unbrotli(body: bytes) -> bytes:
    d = brotli.Decompressor()
    out = d.process(body)
    assert d.is_finished(), "the brotli stream is not finished"
    return out


def _unzstd(body: bytes) -> bytes:
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(body)
    assert d.eof and not d.unused_data, "not exactly one zstd frame"
    return out


DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "br": _unbrotli, "zstd": _unzstd, "gzip": _gunzip,
}


def _log_text() -> bytes:
    return b"".join(f"line {i:05d}: \u00e9t\u00e9 {hashlib.sha1(str(i).encode()).hexdigest()}"
                    .encode() + b"\n" for i in range(LOG_LINES))


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Api, dict[str, Any]]]:
    """A demo server of its own with :data:`ROWS` more masters and source stamps, and a
    text log of :data:`LOG_LINES` lines in several chunks. Yields it and the log's id."""
    yield from own_server(request, tmp_path_factory, "compression", _fill)


def _fill(api: Api) -> dict[str, Any]:
    def sha1(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    with api.db.engine.begin() as conn:
        def next_id(table: str) -> int:
            return int(conn.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar()) + 1

        first = next_id("masters")
        conn.execute(sa.text(
            "INSERT INTO masters (id, name, name_hash, active, last_active) "
            "VALUES (:id, :name, :hash, :active, :last)"),
            [{"id": first + i, "name": f"stream-{i:05d}.example.org:/srv/m",
              "hash": sha1(f"stream-{i:05d}"), "active": i % 2, "last": 1700000000 + i}
             for i in range(ROWS)])
        first = next_id("sourcestamps")
        conn.execute(sa.text(
            "INSERT INTO sourcestamps (id, ss_hash, branch, revision, repository, codebase, "
            "project, created_at) VALUES (:id, :hash, 'main', :rev, 'https://r.example/x', "
            "'', 'x', :at)"),
            [{"id": first + i, "hash": sha1(f"ss-{i}"), "rev": sha1(f"rev-{i}"),
              "at": 1700000000 + i} for i in range(ROWS)])
        stepid = conn.execute(sa.text("SELECT min(id) FROM steps")).scalar()
        logid = next_id("logs")
        conn.execute(sa.text(
            "INSERT INTO logs (id, name, slug, stepid, complete, num_lines, type) "
            "VALUES (:id, 'big text', 'big-text', :step, 1, :n, 't')"),
            {"id": logid, "step": stepid, "n": LOG_LINES})
        lines = _log_text().split(b"\n")[:-1]
        conn.execute(sa.text(
            "INSERT INTO logchunks (logid, first_line, last_line, content, compressed) "
            "VALUES (:log, :first, :last, :content, 0)"),
            [{"log": logid, "first": n, "last": n + CHUNK_LINES - 1,
              "content": b"\n".join(lines[n:n + CHUNK_LINES])}
             for n in range(0, LOG_LINES, CHUNK_LINES)])
    return {"logid": logid}


async def _get(api: Api, path: str, coding: str | None) -> Reply:
    headers = {"Accept-Encoding": coding} if coding else {}
    r = await api.request("GET", "api/v2/" + path, raw=True, headers=headers)
    assert r.code == 200, (path, coding, r.body[:200])
    return r


async def _assert_compressed_like_identity(api: Api, path: str, identity: Reply) -> None:
    for coding, decode in DECODERS.items():
        r = await _get(api, path, coding)
        assert r.header("content-encoding") == coding
        assert r.header("content-type") == identity.header("content-type")
        assert r.length is None, f"{path} {coding}: not streamed"
        assert len(r.body) < len(identity.body) // 2, coding
        assert decode(r.body) == identity.body, f"{path}: {coding} decompresses otherwise"


@pytest.mark.parametrize(("path", "key", "table"), [
    ("masters", "masterid", "masters"),  # the total after the items ("masters" < "meta")
    ("sourcestamps", "ssid", "sourcestamps"),  # the total first
])
@pytest_twisted.ensureDeferred
async def test_streamed_collection(big, path, key, table):
    api, _ = big
    identity = await _get(api, path, None)
    assert identity.header("content-encoding") is None
    assert identity.length is None  # streamed, chunked
    doc = json.loads(identity.body)
    want = [r[0] for r in api.rows(sa.text(f"SELECT id FROM {table} ORDER BY id"))]
    assert len(want) > ROWS
    assert [item[key] for item in doc[path]] == want
    assert doc["meta"] == {"total": len(want)}
    await _assert_compressed_like_identity(api, path, identity)


@pytest_twisted.ensureDeferred
async def test_streamed_raw_log(big):
    api, made = big
    path = f"logs/{made['logid']}/raw"
    identity = await _get(api, path, None)
    assert identity.header("content-encoding") is None
    assert identity.length is None
    assert identity.header("content-type") == "text/plain; charset=utf-8"
    assert identity.body == _log_text()
    await _assert_compressed_like_identity(api, path, identity)


@pytest_twisted.ensureDeferred
async def test_whole_answers_compressed_like_identity(big):
    # (the counterpart: a short answer is compressed at once, with its length)
    api, _ = big
    for path in ("masters?limit=50", "builds/1", f"logs/{big[1]['logid']}/contents?limit=5"):
        identity = await _get(api, path, None)
        assert identity.length == len(identity.body)
        for coding, decode in DECODERS.items():
            r = await _get(api, path, coding)
            assert r.header("content-encoding") == coding
            assert r.length == len(r.body)
            assert decode(r.body) == identity.body, (path, coding)
