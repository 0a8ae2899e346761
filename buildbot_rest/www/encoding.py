# -*- test-case-name: tests.www.test_encoding -*-
"""JSON rendering (compact or pretty, as upstream chooses) and response compression."""

from __future__ import annotations

import calendar
import datetime
import json
import re
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import orjson
import zstandard

JSON_TYPE = b"application/json; charset=utf-8"

# orjson would write datetimes as ISO text and dataclasses as objects: hand them to
# _default instead, so that compact and pretty output agree with upstream's toJson.
_ORJSON_OPTS = (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
                | orjson.OPT_PASSTHROUGH_DATACLASS)


def _default(value: Any) -> Any:
    # As upstream's toJson: datetimes are epoch seconds; bytes (a patch body, build data)
    # and anything else JSON cannot hold become null.
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.utctimetuple())
    return None


def wants_compact(accept: bytes | None) -> bool:
    """Upstream answers compact JSON when Accept mentions application/json, else pretty."""
    return accept is not None and b"application/json" in accept


def dumps(value: Any, compact: bool) -> bytes:
    if compact:
        try:
            return orjson.dumps(value, option=_ORJSON_OPTS, default=_default)
        except TypeError:
            # orjson refuses integers beyond 64 bits; the standard library does not.
            return json.dumps(value, sort_keys=True, separators=(",", ":"),
                              default=_default).encode()
    return json.dumps(value, sort_keys=True, indent=2, separators=(", ", ": "),
                      default=_default).encode()


# -- compression --------------------------------------------------------------------------

class _Encoder:
    """A streaming compressor: ``compress`` returns bytes to send, ``flush`` the rest."""

    def __init__(self, compress: Callable[[bytes], bytes], flush: Callable[[], bytes]) -> None:
        self.compress = compress
        self.flush = flush


def _gzip() -> _Encoder:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return _Encoder(c.compress, c.flush)


def _brotli() -> _Encoder:
    c = brotli.Compressor(quality=4)
    return _Encoder(c.process, c.finish)


def _zstd() -> _Encoder:
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return _Encoder(c.compress, c.flush)


_FACTORIES: dict[str, Callable[[], _Encoder]] = {
    "br": _brotli,
    "zstd": _zstd,
    "gzip": _gzip,
}
#: at equal q-values the first wins
_PREFERENCE = ("br", "zstd", "gzip")

_ITEM = re.compile(r"\s*([A-Za-z0-9*_-]+)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*")


def choose_encoding(accept_encoding: bytes | None) -> tuple[str, _Encoder] | None:
    """The best coding the client accepts (q-values honoured), or None for identity."""
    if not accept_encoding:
        return None
    qs: dict[str, float] = {}
    for part in accept_encoding.decode("latin-1").split(","):
        m = _ITEM.fullmatch(part)
        if not m:
            continue
        try:
            q = float(m.group(2)) if m.group(2) is not None else 1.0
        except ValueError:
            continue
        qs[m.group(1).lower()] = q
    star = qs.get("*", 0.0)
    q, _, name = max((qs.get(name, star), -i, name) for i, name in enumerate(_PREFERENCE))
    if q <= 0:
        return None
    return name, _FACTORIES[name]()


class CollectionWriter:
    """Writes ``{"<plural>": [...], "meta": {"total": N}}`` piece by piece, byte for byte
    as :func:`dumps` would write the whole document. Keys are sorted, so the total comes
    first when the plural sorts after ``meta``."""

    def __init__(self, plural: str, compact: bool) -> None:
        self.plural = plural
        self.compact = compact
        self._first = True
        self._key = json.dumps(plural)

    def _meta(self, total: int) -> str:
        if self.compact:
            return f'"meta":{{"total":{total}}}'
        return f'"meta": {{\n    "total": {total}\n  }}'

    def opening(self, total: int | None) -> bytes:
        head = "{" if self.compact else "{\n  "
        if total is not None:
            head += self._meta(total) + ("," if self.compact else ", \n  ")
        return (head + self._key + (":[" if self.compact else ": [")).encode()

    def items(self, items: list[Any]) -> bytes:
        if not items:
            return b""
        if self.compact:
            body = b",".join(dumps(i, True) for i in items)
            sep = b"" if self._first else b","
        else:
            body = b", \n".join(
                b"\n".join(b"    " + line for line in dumps(i, False).split(b"\n"))
                for i in items)
            sep = b"\n" if self._first else b", \n"
        self._first = False
        return sep + body

    def closing(self, total: int | None) -> bytes:
        if self.compact:
            tail = "]"
            if total is not None:
                tail += "," + self._meta(total)
            return (tail + "}").encode()
        tail = "]" if self._first else "\n  ]"
        if total is not None:
            tail += ", \n  " + self._meta(total)
        return (tail + "\n}").encode()
