# -*- test-case-name: tests.data.test_connector -*-
"""What a raw endpoint answers: bytes, or a generator of bytes run in a DB thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from buildbot_rest.db.stream import ThreadStream


@dataclass
class RawData:
    """A download. Exactly one of ``body`` and ``generate`` is set by an endpoint;
    ``generate(conn)`` yields the bytes in pieces in a database thread. The data
    connector starts it and sets ``stream``, whose pieces the caller takes, calling
    ``consumed()`` after each and awaiting ``close()`` at the end
    (:func:`buildbot_rest.data.reads.drain` takes them all at once)."""

    content_type: bytes
    filename: str | None = None
    body: bytes | None = None
    generate: Callable[[Any], Iterator[bytes]] | None = None
    stream: ThreadStream | None = None

    def content_disposition(self) -> bytes:
        """``attachment`` with the file name quoted as RFC 6266 asks (and an RFC 5987
        ``filename*`` when the name is not plain ASCII)."""
        name = self.filename or "download"
        ascii_name = name.encode("ascii", "replace").decode("ascii")
        ascii_name = ascii_name.replace("\\", "\\\\").replace('"', '\\"')
        ascii_name = "".join(c if c.isprintable() else "_" for c in ascii_name)
        value = f'attachment; filename="{ascii_name}"'
        if ascii_name != name:
            value += f"; filename*=UTF-8''{quote(name, safe='')}"
        return value.encode("ascii")
