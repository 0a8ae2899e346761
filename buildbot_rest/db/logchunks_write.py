# -*- test-case-name: tests.db.test_logchunks_write -*-
"""Writing log chunks: appended text split into chunks of whole lines, and the later
merging of small chunks (``compressLog``), stored as upstream Buildbot stores them.

The read side (codecs, line ranges) is :mod:`buildbot_rest.db.logchunks`. Everything
here runs in a database thread, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from buildbot_rest.db import logchunks as lc
from buildbot_rest.db import schema as s

#: upstream's ``logCompressionMethod`` names and the codec each writes
COMPRESSION_METHODS: dict[str, int] = {
    "raw": lc.RAW, "gz": lc.GZ, "bz2": lc.BZ2, "lz4": lc.LZ4, "zstd": lc.ZSTD,
    "br": lc.BROTLI,
}
#: upstream's default: zstd when it is installed (it is one of our dependencies)
DEFAULT_COMPRESSION = "zstd"

#: the most bytes of text (final newline included) a chunk holds when it is written
MAX_CHUNK_SIZE = 65536
#: :func:`compress_log` lets a merged chunk span at most this many lines (plus one, as
#: upstream counts)
MAX_CHUNK_LINES = 1000


def compression_code(method: str | None) -> int:
    """The codec of a ``logCompressionMethod`` name (None: the default); ValueError
    naming the allowed ones for any other."""
    code = COMPRESSION_METHODS.get(DEFAULT_COMPRESSION if method is None else method)
    if code is None:
        allowed = ", ".join(repr(m) for m in COMPRESSION_METHODS)
        raise ValueError(f"unknown log compression method {method!r}: use one of {allowed}")
    return code


def pack(text: bytes, code: int) -> tuple[bytes, int]:
    """A chunk's stored ``(content, compressed)`` for ``text`` (its lines joined, without
    the final newline): compressed with ``code`` when that is smaller, else raw."""
    if code != lc.RAW:
        packed = lc.compress(code, text)
        if len(packed) < len(text):
            return packed, code
    return text, lc.RAW


def truncate_line(line: bytes, size: int = MAX_CHUNK_SIZE) -> bytes:
    """A line (ending with a newline) cut to fit ``size`` bytes with its newline, without
    splitting a UTF-8 character."""
    head = line[:size - 1]
    # only the cut at the end can leave an incomplete character
    return head.decode("utf-8", "ignore").encode("utf-8") + b"\n"


@dataclass
class Chunk:
    """A chunk to store: ``content`` as stored, its codec, how many lines it holds, and
    whether its one line was cut to fit."""

    content: bytes
    compressed: int
    lines: int
    truncated: bool = False


def split(data: bytes, code: int, max_size: int = MAX_CHUNK_SIZE) -> Iterator[Chunk]:
    """The chunks of appended text ``data`` (UTF-8, ending with a newline): whole lines
    of at most ``max_size`` bytes each (newlines included). A longer line is a chunk of
    its own, cut to ``max_size`` bytes (newline included) when even compressed it does
    not fit (:attr:`Chunk.truncated`)."""
    if not data.endswith(b"\n"):
        raise ValueError("log text must end with a newline")
    lines = data.split(b"\n")
    lines.pop()  # the empty string after the final newline
    start = 0  # first line of the pending chunk
    size = 0  # its bytes, newlines included
    for i, line in enumerate(lines):
        line_size = len(line) + 1
        if i > start and size + line_size > max_size:
            yield _chunk(lines, start, i, code)
            start, size = i, 0
        if line_size > max_size:
            content, compressed = pack(line, code)
            if len(content) <= max_size:
                yield Chunk(content, compressed, 1)
            else:
                cut = truncate_line(line + b"\n", max_size)[:-1]
                yield Chunk(*pack(cut, code), 1, truncated=True)
            start, size = i + 1, 0
        else:
            size += line_size
    if start < len(lines):
        yield _chunk(lines, start, len(lines), code)


def _chunk(lines: list[bytes], start: int, stop: int, code: int) -> Chunk:
    content, compressed = pack(b"\n".join(lines[start:stop]), code)
    return Chunk(content, compressed, stop - start)


@dataclass
class Appended:
    """What :func:`append` did: the log's line count before, the last line written, and
    how many lines it had to truncate."""

    num_lines: int
    last_line: int
    truncated: int


def append(conn: sa.Connection, logid: int, data: bytes, code: int) -> Appended | None:
    """Append ``data`` (UTF-8 lines, ending with a newline) to a log: its chunks are
    inserted after the log's lines and ``logs.num_lines`` grows. None when the log does
    not exist. The log's row is locked first, so that concurrent appends to one log
    follow each other."""
    lg = s.logs
    num_lines = conn.execute(
        sa.select(lg.c.num_lines).where(lg.c.id == logid)
        .with_for_update(key_share=True)).scalar()
    if num_lines is None:
        return None
    first = num_lines
    rows = []
    truncated = 0
    for chunk in split(data, code):
        truncated += chunk.truncated
        rows.append({"logid": logid, "first_line": first,
                     "last_line": first + chunk.lines - 1,
                     "content": chunk.content, "compressed": chunk.compressed})
        first += chunk.lines
        if len(rows) >= 16:
            conn.execute(s.logchunks.insert(), rows)
            rows = []
    if rows:
        conn.execute(s.logchunks.insert(), rows)
    conn.execute(lg.update().where(lg.c.id == logid).values(num_lines=first))
    return Appended(num_lines, first - 1, truncated)


def compress_log(conn: sa.Connection, logid: int, code: int) -> int:
    """Merge neighbouring chunks of a log while the merged chunk stays within
    :data:`MAX_CHUNK_SIZE` stored bytes and spans at most :data:`MAX_CHUNK_LINES` + 1
    lines, each group re-compressed with ``code`` (as upstream: always with that codec).
    Nothing is written when no two chunks can merge. Answers the bytes saved (negative
    when the codec makes the text larger). A group holding a chunk that cannot be
    decoded is left as it is."""
    lc_ = s.logchunks
    rows = conn.execute(
        sa.select(lc_.c.first_line, lc_.c.last_line, sa.func.length(lc_.c.content))
        .where(lc_.c.logid == logid).order_by(lc_.c.first_line)).all()
    if not rows:
        return 0
    groups: list[list[int]] = [[rows[0][0], rows[0][1]]]
    size = rows[0][2] or 0
    for first_line, last_line, length in rows[1:]:
        length = length or 0
        group = groups[-1]
        if size + length <= MAX_CHUNK_SIZE and last_line - group[0] <= MAX_CHUNK_LINES:
            group[1] = last_line
            size += length
        else:
            groups.append([first_line, last_line])
            size = length
    if len(groups) >= len(rows):
        return 0
    saved = 0
    for group_first, group_last in groups:
        in_group = sa.and_(lc_.c.logid == logid, lc_.c.first_line >= group_first,
                           lc_.c.last_line <= group_last)
        chunks = conn.execute(sa.select(lc_.c.content, lc_.c.compressed).where(in_group)
                              .order_by(lc_.c.first_line)).all()
        try:
            texts = [lc.decompress(compressed, content) for content, compressed in chunks]
        except lc.CorruptChunk:
            continue
        content = lc.compress(code, b"\n".join(texts))
        saved += sum(len(c or b"") for c, _ in chunks) - len(content)
        conn.execute(lc_.delete().where(in_group))
        conn.execute(lc_.insert().values(logid=logid, first_line=group_first,
                                         last_line=group_last, content=content,
                                         compressed=code))
    return saved
