"""Writing log chunks: the split of appended text, codecs, long lines, and compressLog."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from buildbot_rest.db import logchunks as lc
from buildbot_rest.db import logchunks_write as w
from buildbot_rest.db import schema as s

CODECS = sorted(w.COMPRESSION_METHODS.items(), key=lambda item: item[1])


@pytest.fixture
def conn() -> Iterator[sa.Connection]:
    engine = sa.create_engine("sqlite://")
    s.metadata.create_all(engine)
    with engine.connect() as c:
        c.execute(s.logs.insert().values(id=1, name="stdio", slug="stdio", stepid=1,
                                         complete=0, num_lines=0, type="s"))
        yield c


def chunk_rows(conn: sa.Connection, logid: int = 1) -> list[tuple[Any, ...]]:
    lch = s.logchunks
    return [tuple(r) for r in conn.execute(
        sa.select(lch.c.first_line, lch.c.last_line, lch.c.content, lch.c.compressed)
        .where(lch.c.logid == logid).order_by(lch.c.first_line))]


def noise(n: int, seed: int = 0) -> bytes:
    """``n`` bytes of printable text that does not compress."""
    import random
    rng = random.Random(seed)
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
                 for _ in range(n))


def test_compression_methods_are_upstreams() -> None:
    assert [name for name, _ in CODECS] == ["raw", "gz", "bz2", "lz4", "zstd", "br"]
    assert [code for _, code in CODECS] == list(range(6))
    assert w.compression_code(None) == lc.ZSTD  # upstream's default when zstd is installed
    with pytest.raises(ValueError, match=r"'zip'.*'raw', 'gz'"):
        w.compression_code("zip")


@pytest.mark.parametrize(("name", "code"), CODECS)
def test_every_codec_is_written_only_when_smaller(name: str, code: int) -> None:
    text = b"\n".join([b"some repeated log line"] * 50)
    content, compressed = w.pack(text, code)
    assert lc.decompress(compressed, content) == text
    assert compressed == code
    assert (len(content) < len(text)) == (code != lc.RAW)
    # two bytes never compress: stored raw
    assert w.pack(b"ab", code) == (b"ab", lc.RAW)


def test_split_keeps_whole_lines_within_64_kib() -> None:
    lines = [b"%05d" % i + b"x" * 94 for i in range(1500)]  # 100 bytes with the newline
    chunks = list(w.split(b"".join(line + b"\n" for line in lines), lc.RAW))
    assert [c.lines for c in chunks] == [655, 655, 190]
    assert [len(c.content) for c in chunks] == [65499, 65499, 18999]
    assert b"\n".join(c.content for c in chunks) == b"\n".join(lines)
    assert not any(c.truncated for c in chunks)


def test_split_fills_a_chunk_to_exactly_64_kib() -> None:
    exact = [b"a" * 65535]  # 65536 bytes with its newline: fits alone
    assert [(len(c.content), c.lines) for c in w.split(exact[0] + b"\n", lc.RAW)] == [
        (65535, 1)]
    two = b"a" * 32767 + b"\n" + b"b" * 32767 + b"\n" + b"c\n"
    assert [(len(c.content), c.lines) for c in w.split(two, lc.RAW)] == [
        (65535, 2), (1, 1)]


def test_a_long_line_gets_its_own_chunk_compressed_whole() -> None:
    text = b"before\n" + b"x" * 200_000 + b"\nafter\n"
    chunks = list(w.split(text, lc.ZSTD))
    assert [(c.lines, c.compressed, c.truncated) for c in chunks] == [
        (1, lc.RAW, False), (1, lc.ZSTD, False), (1, lc.RAW, False)]
    assert lc.decompress(lc.ZSTD, chunks[1].content) == b"x" * 200_000


@pytest.mark.parametrize(("name", "code"), CODECS)
def test_a_long_line_that_does_not_compress_is_truncated(name: str, code: int) -> None:
    long = noise(100_000)
    chunks = list(w.split(b"a\n" + long + b"\nb\n", code))
    assert [c.lines for c in chunks] == [1, 1, 1]
    cut = chunks[1]
    assert cut.truncated
    assert lc.decompress(cut.compressed, cut.content) == long[:65535]


def test_a_truncated_line_keeps_whole_utf8_characters() -> None:
    # 3-byte characters: 65535 bytes would end inside one
    long = "\u20ac".encode() + noise(65531) + "\u20ac\u20ac".encode() + noise(50000)
    (cut,) = w.split(long + b"\n", lc.RAW)
    assert cut.truncated
    assert cut.content == long[:65534]  # the cut character is dropped whole
    cut.content.decode("utf-8")


def test_split_needs_a_final_newline() -> None:
    with pytest.raises(ValueError, match="newline"):
        list(w.split(b"no newline", lc.RAW))


def test_empty_lines_and_carriage_returns_are_kept() -> None:
    chunks = list(w.split(b"\n\na\r\n\n", lc.RAW))
    assert [(c.content, c.lines) for c in chunks] == [(b"\n\na\r\n", 4)]


def test_append_inserts_chunks_after_the_logs_lines(conn: sa.Connection) -> None:
    done = w.append(conn, 1, b"one\ntwo\n", lc.GZ)
    assert done is not None
    assert (done.num_lines, done.last_line, done.truncated) == (0, 1, 0)
    done = w.append(conn, 1, b"x" * 70_000 + b"\nthree\n", lc.GZ)
    assert done is not None
    assert (done.num_lines, done.last_line) == (2, 3)
    rows = chunk_rows(conn)
    assert [(r[0], r[1], r[3]) for r in rows] == [(0, 1, lc.RAW), (2, 2, lc.GZ),
                                                   (3, 3, lc.RAW)]
    assert rows[0][2] == b"one\ntwo"
    assert zlib.decompress(rows[1][2]) == b"x" * 70_000
    assert conn.execute(sa.select(s.logs.c.num_lines)).scalar() == 4
    assert lc.read_lines(conn, 1, 0, 3) == "one\ntwo\n" + "x" * 70_000 + "\nthree\n"
    assert w.append(conn, 2, b"missing\n", lc.GZ) is None


@pytest.mark.parametrize(("name", "code"), CODECS)
def test_every_codec_reads_back(conn: sa.Connection, name: str, code: int) -> None:
    lines = [f"o{i} line with text \u00e9\u4e2d {'z' * (i % 40)}" for i in range(3000)]
    text = "".join(line + "\n" for line in lines)
    w.append(conn, 1, text.encode(), code)
    w.append(conn, 1, b"tail\n", code)
    assert {r[3] for r in chunk_rows(conn)} == ({code, lc.RAW} if code else {lc.RAW})
    assert lc.read_lines(conn, 1, 0, 3000) == text + "tail\n"
    assert lc.read_lines(conn, 1, 1234, 1235) == "".join(
        line + "\n" for line in lines[1234:1236])


def test_compress_log_merges_neighbouring_chunks(conn: sa.Connection) -> None:
    for i in range(30):
        w.append(conn, 1, f"line {i}\n".encode(), lc.RAW)
    before = lc.read_lines(conn, 1, 0, 29)
    stored = sum(len(r[2]) for r in chunk_rows(conn))
    saved = w.compress_log(conn, 1, lc.ZSTD)
    rows = chunk_rows(conn)
    assert [(r[0], r[1], r[3]) for r in rows] == [(0, 29, lc.ZSTD)]
    assert saved == stored - len(rows[0][2])
    assert lc.read_lines(conn, 1, 0, 29) == before
    # nothing left to merge: nothing written
    assert w.compress_log(conn, 1, lc.GZ) == 0
    assert chunk_rows(conn) == rows
    assert w.compress_log(conn, 2, lc.GZ) == 0


def test_compress_log_stays_within_the_size_and_line_limits(conn: sa.Connection) -> None:
    # 40 KB chunks: two never fit in 64 KiB
    big = noise(40_000)
    for _ in range(3):
        w.append(conn, 1, big + b"\n", lc.RAW)
    # then 1500 one-line chunks: groups span at most 1001 lines
    for i in range(1500):
        w.append(conn, 1, b"%d\n" % i, lc.RAW)
    before = lc.read_lines(conn, 1, 0, 1502)
    w.compress_log(conn, 1, lc.RAW)
    # the last big chunk takes small ones until its group spans 1001 lines
    assert [(r[0], r[1]) for r in chunk_rows(conn)] == [
        (0, 0), (1, 1), (2, 1002), (1003, 1502)]
    assert lc.read_lines(conn, 1, 0, 1502) == before


def test_compress_log_rewrites_with_the_configured_codec_even_when_larger(
        conn: sa.Connection) -> None:
    # upstream's compressLog always uses the configured method
    w.append(conn, 1, b"a\n", lc.RAW)
    w.append(conn, 1, b"b\n", lc.RAW)
    saved = w.compress_log(conn, 1, lc.BZ2)
    (row,) = chunk_rows(conn)
    assert row[3] == lc.BZ2
    assert saved == 2 - len(row[2]) < 0
    assert lc.read_lines(conn, 1, 0, 1) == "a\nb\n"


def test_compress_log_leaves_a_group_it_cannot_decode(conn: sa.Connection) -> None:
    w.append(conn, 1, b"a\n", lc.RAW)
    conn.execute(s.logchunks.insert().values(logid=1, first_line=1, last_line=1,
                                             content=b"junk", compressed=lc.GZ))
    before = chunk_rows(conn)
    assert w.compress_log(conn, 1, lc.ZSTD) == 0
    assert chunk_rows(conn) == before


def test_incompressible_noise_is_stored_raw() -> None:
    data = os.urandom(1000).hex().encode() + b"\n"
    (chunk,) = w.split(data, lc.BROTLI)
    assert chunk.compressed in (lc.RAW, lc.BROTLI)
    assert lc.decompress(chunk.compressed, chunk.content) == data[:-1]
