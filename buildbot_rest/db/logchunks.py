# -*- test-case-name: tests.db.test_logchunks -*-
"""Log chunks: their codecs, line ranges, and the raw text of a whole log.

A chunk holds whole lines ``first_line..last_line`` (0-based) joined by ``\\n`` without the
final newline, compressed with the codec named by ``logchunks.compressed``. Lines are split
on ``\\n`` only; their bytes are passed through (a ``\\r`` is part of its line).
"""

from __future__ import annotations

import bz2
import functools
import re
import threading
import zlib
from collections.abc import Callable, Iterator

import brotli
import lz4.block
import sqlalchemy as sa
import zstandard

from buildbot_rest.db import schema as s

#: ``logchunks.compressed`` codes as upstream numbers them
RAW, GZ, BZ2, LZ4, ZSTD, BROTLI = range(6)

#: chunks read per query; each holds at most about 64 KiB of text
BATCH = 32
#: the size of the pieces :func:`iter_raw` yields
PIECE_SIZE = 64 * 1024

_local = threading.local()
# A line (after the first) whose first byte is not ASCII: its first character may be
# several bytes.
_NON_ASCII_START = re.compile(rb"\n[\x80-\xff]")
#: a newline and the first byte of the line after it, unless that line is empty
_LINE_START = re.compile(rb"\n[^\n]")


class CorruptChunk(ValueError):
    """A chunk that cannot be decoded (unknown codec or damaged data)."""


def _zstd_write(data: bytes) -> bytes:
    # (De)compressors are not thread-safe: one per thread. Upstream writes zstd through a
    # streaming object, so its frames carry no content size.
    cctx = getattr(_local, "zstd_writer", None)
    if cctx is None:
        cctx = _local.zstd_writer = zstandard.ZstdCompressor(level=9)
    obj = cctx.compressobj()
    return obj.compress(data) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def _zstd_read(data: bytes) -> bytes:
    # Frames without a content size (see _zstd_write) need decompressobj().
    dctx = getattr(_local, "zstd_reader", None)
    if dctx is None:
        dctx = _local.zstd_reader = zstandard.ZstdDecompressor()
    obj = dctx.decompressobj()
    return obj.decompress(data) + obj.flush()


_Codec = Callable[[bytes], bytes]

# The compressors as upstream's log compressors call them.
_WRITERS: dict[int, _Codec] = {
    RAW: bytes,
    GZ: functools.partial(zlib.compress, level=9),
    BZ2: functools.partial(bz2.compress, compresslevel=9),
    LZ4: lz4.block.compress,  # block format with the size stored first, as upstream
    ZSTD: _zstd_write,
    BROTLI: functools.partial(brotli.compress, mode=brotli.MODE_TEXT, quality=11),
}

_READERS: dict[int, _Codec] = {
    RAW: bytes,
    GZ: zlib.decompress,
    BZ2: bz2.decompress,
    LZ4: lz4.block.decompress,
    ZSTD: _zstd_read,
    BROTLI: brotli.decompress,
}


def compress(code: int, data: bytes) -> bytes:
    """``data`` compressed with codec ``code`` as upstream stores a chunk's content."""
    writer = _WRITERS.get(code)
    if writer is None:
        raise ValueError(f"unknown log chunk compression {code}")
    return bytes(writer(data))


def decompress(code: int, data: bytes | None) -> bytes:
    """The text of one chunk (without its final newline)."""
    if data is None:
        return b""
    reader = _READERS.get(code)
    if reader is None:
        raise CorruptChunk(f"unknown log chunk compression {code}")
    try:
        return bytes(reader(bytes(data)))
    except Exception as e:  # each codec raises its own error type
        raise CorruptChunk(f"cannot decode a log chunk (compression {code}): {e}") from e


#: the text of each line of a chunk that cannot be decoded (U+FFFD, as for bytes that
#: are not UTF-8)
UNREADABLE_LINE = "\ufffd".encode()


def _readable(code: int, data: bytes | None, lines: int) -> bytes:
    # A damaged chunk (another writer, a codec we lack) reads as lines of U+FFFD, so
    # that one chunk neither fails nor shifts the lines of the whole log.
    try:
        return decompress(code, data)
    except CorruptChunk:
        return b"\n".join([UNREADABLE_LINE] * max(1, lines))


def iter_chunks(conn: sa.Connection, logid: int, first: int = 0,
                last: int | None = None, batch: int = BATCH) -> Iterator[tuple[int, bytes]]:
    """``(first_line, text)`` of the chunks holding lines ``first..last`` in line order,
    read ``batch`` chunks per query so that memory does not grow with the log. A chunk
    that cannot be decoded is one U+FFFD per line."""
    lc = s.logchunks
    # Start at the chunk that holds line ``first``, then walk the (logid, first_line)
    # index forward: each query reads only its batch, whatever the size of the log.
    cursor = conn.execute(
        sa.select(sa.func.max(lc.c.first_line))
        .where(lc.c.logid == logid, lc.c.first_line <= first)).scalar()
    if cursor is None:
        cursor = first
    while True:
        stmt = (sa.select(lc.c.first_line, lc.c.last_line, lc.c.content, lc.c.compressed)
                .where(lc.c.logid == logid, lc.c.first_line >= cursor)
                .order_by(lc.c.first_line).limit(batch))
        if last is not None:
            stmt = stmt.where(lc.c.first_line <= last)
        rows = conn.execute(stmt).all()
        for first_line, last_line, content, compressed in rows:
            if last_line >= first:
                yield first_line, _readable(compressed, content, last_line - first_line + 1)
        if len(rows) < batch:
            return
        cursor = rows[-1][0] + 1


def read_lines(conn: sa.Connection, logid: int, first: int, last: int) -> str:
    """Lines ``first..last`` of a log, each ending with a newline, as stored (stdio
    lines keep their stream prefix). Bytes that are not UTF-8 are replaced."""
    parts: list[bytes] = []
    for chunk_first, text in iter_chunks(conn, logid, first, last):
        lines = text.split(b"\n")
        start = max(0, first - chunk_first)
        stop = last - chunk_first + 1
        if start < stop:
            parts.extend(lines[start:stop])
    if not parts:
        return ""
    return (b"\n".join(parts) + b"\n").decode("utf-8", "replace")


def strip_stream_prefix(text: bytes) -> bytes:
    """Lines joined by newlines, each without its first character (the stdio stream)."""
    first = text[:1]
    if b"" < first < b"\x80" and first != b"\n":
        # Most chunks hold one stream: every line starts with the same byte. Then each
        # newline and that byte become a newline (two passes of C over the bytes); the
        # length tells whether every line did start with it.
        stripped = text[1:].replace(b"\n" + first, b"\n")
        if len(text) - 1 - len(stripped) == text.count(b"\n"):
            return stripped
    if text.isascii() or (text[:1] < b"\x80" and not _NON_ASCII_START.search(text)):
        # One byte per line: drop the first byte, and the byte after each newline that
        # does not end an empty line (one regex pass in C; no Python work per line).
        head = text[1:] if text[:1] != b"\n" else text
        return _LINE_START.sub(b"\n", head)
    # Slow path: a line starting with a multi-byte character loses all its bytes.
    decoded = text.decode("utf-8", "surrogateescape").split("\n")
    return "\n".join([line[1:] for line in decoded]).encode("utf-8", "surrogateescape")


def iter_raw(conn: sa.Connection, logid: int, *, strip: bool, header: bytes = b"",
             piece_size: int = PIECE_SIZE) -> Iterator[bytes]:
    """The whole text of a log in pieces of about ``piece_size`` bytes, starting with
    ``header``; with ``strip``, each line loses its first character (stdio logs)."""
    buffer: list[bytes] = [header] if header else []
    size = len(header)
    for _, text in iter_chunks(conn, logid):
        if strip:
            text = strip_stream_prefix(text)
        buffer.append(text)
        buffer.append(b"\n")
        size += len(text) + 1
        if size >= piece_size:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)
