"""Log chunks: every codec, line ranges, batches, and the raw text."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from buildbot_rest.db import logchunks
from buildbot_rest.db import schema as s

LINES = [f"{'oeh'[i % 3]}line {i} {'x' * (i % 7)}".encode() for i in range(40)]


@pytest.fixture
def conn():
    engine = sa.create_engine("sqlite://")
    s.metadata.create_all(engine)
    with engine.connect() as c:
        yield c


def store(conn, logid, lines, codec, per_chunk=7):
    """Lines in chunks of ``per_chunk`` lines, each compressed with ``codec``."""
    for first in range(0, len(lines), per_chunk):
        part = lines[first:first + per_chunk]
        conn.execute(s.logchunks.insert().values(
            logid=logid, first_line=first, last_line=first + len(part) - 1,
            content=logchunks.compress(codec, b"\n".join(part)), compressed=codec))


def text(lines):
    return b"".join(line + b"\n" for line in lines).decode()


@pytest.mark.parametrize("codec", range(6))
def test_every_codec(codec):
    data = b"\n".join(LINES * 20)
    packed = logchunks.compress(codec, data)
    assert logchunks.decompress(codec, packed) == data
    assert (len(packed) < len(data)) == (codec != logchunks.RAW)


def test_zstd_frames_without_content_size():
    import zstandard
    obj = zstandard.ZstdCompressor().compressobj()
    frame = obj.compress(b"abc\ndef") + obj.flush()
    assert logchunks.decompress(logchunks.ZSTD, frame) == b"abc\ndef"
    # ours are written the same way: no content size in the frame header
    ours = logchunks.compress(logchunks.ZSTD, b"abc\ndef")
    assert zstandard.frame_content_size(ours) == -1


def test_bad_chunks():
    with pytest.raises(ValueError, match="compression 9"):
        logchunks.compress(9, b"x")
    with pytest.raises(logchunks.CorruptChunk, match="compression 9"):
        logchunks.decompress(9, b"x")
    with pytest.raises(logchunks.CorruptChunk):
        logchunks.decompress(logchunks.GZ, b"not gzip")
    assert logchunks.decompress(logchunks.RAW, None) == b""


@pytest.mark.parametrize("codec", [logchunks.RAW, logchunks.LZ4, logchunks.ZSTD])
def test_read_lines_ranges(conn, codec):
    store(conn, 1, LINES, codec)
    store(conn, 2, [b"other"], codec)
    for first, last in [(0, 39), (0, 0), (3, 12), (6, 7), (7, 7), (13, 14), (39, 39),
                        (35, 100), (40, 45)]:
        assert logchunks.read_lines(conn, 1, first, last) == text(LINES[first:last + 1])


def test_batches(conn):
    store(conn, 1, LINES, logchunks.RAW, per_chunk=3)
    got = list(logchunks.iter_chunks(conn, 1, 4, 30, batch=2))
    assert [first for first, _ in got] == list(range(3, 31, 3))
    assert logchunks.read_lines(conn, 1, 4, 30) == text(LINES[4:31])


def test_strip_stream_prefix():
    # edge cases of the one-pass form: empty text and lines, a one-byte line, a line that
    # starts with a prefix letter after its prefix
    for text, expected in [(b"", b""), (b"\n", b"\n"), (b"o", b""), (b"\n\nox\n", b"\n\nx\n"),
                           (b"ooops\neerr\nh", b"oops\nerr\n"), (b"o\noa", b"\na")]:
        assert logchunks.strip_stream_prefix(text) == expected, text
    assert logchunks.strip_stream_prefix(b"oa\neb\n\nhc") == b"a\nb\n\nc"
    # a first character of several bytes goes whole; other bytes pass through
    assert logchunks.strip_stream_prefix("éa\nob\xff".encode("latin-1") + b"\n\xc3\xa9x") \
        == b"a\nb\xff\nx"
    assert logchunks.strip_stream_prefix("oé\n€x".encode()) == "é\nx".encode()


def test_iter_raw(conn):
    store(conn, 1, LINES, logchunks.BROTLI)
    pieces = list(logchunks.iter_raw(conn, 1, strip=True, header=b"H\n", piece_size=100))
    assert b"".join(pieces) == b"H\n" + b"".join(line[1:] + b"\n" for line in LINES)
    assert len(pieces) > 1 and all(len(p) < 100 + 200 for p in pieces)
    whole = b"".join(logchunks.iter_raw(conn, 1, strip=False))
    assert whole == text(LINES).encode()
    assert list(logchunks.iter_raw(conn, 3, strip=True)) == []


def test_strip_stream_prefix_agrees_with_its_definition():
    # every line loses its first character: checked on many small texts mixing one-stream
    # chunks (the fast path), several streams, empty lines and non-ASCII starts
    import random

    rng = random.Random(7)
    alphabet = ["o", "e", "h", "x", "é", "€", ""]
    for _ in range(3000):
        lines = []
        for _ in range(rng.randint(0, 6)):
            prefix = "o" if rng.random() < 0.6 else rng.choice(alphabet)
            lines.append(prefix + "".join(rng.choice(alphabet[:5]) for _ in range(
                rng.randint(0, 4))))
        text = "\n".join(lines)
        expected = "\n".join(line[1:] for line in text.split("\n")).encode()
        assert logchunks.strip_stream_prefix(text.encode()) == expected, text


@pytest.mark.parametrize(("compressed", "content"), [(logchunks.GZ, b"\x00\x11\x22\x33"),
                                                     (7, b"anything"),
                                                     (logchunks.ZSTD, b"garbage!")])
def test_a_damaged_chunk_reads_as_its_lines_of_replacement_characters(conn, compressed,
                                                                     content):
    lines = [b"o%d" % i for i in range(21)]
    store(conn, 1, lines, logchunks.GZ)  # chunks of lines 0-6, 7-13, 14-20
    conn.execute(s.logchunks.update().where(s.logchunks.c.first_line == 7).values(
        compressed=compressed, content=content))
    damaged = [b"o%d" % i for i in range(7)] + ["\ufffd".encode()] * 7 + lines[14:]
    # the lines around it keep their numbers
    assert logchunks.read_lines(conn, 1, 0, 20) == text(damaged)
    assert logchunks.read_lines(conn, 1, 9, 15) == text(damaged[9:16])
    assert b"".join(logchunks.iter_raw(conn, 1, strip=False)) == text(damaged).encode()
