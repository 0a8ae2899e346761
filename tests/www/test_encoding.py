"""JSON rendering as upstream's, and the choice of a response compression."""

from __future__ import annotations

import datetime
import gzip
import json

import brotli
import pytest
import zstandard

from buildbot_rest.www.encoding import choose_encoding, dumps, wants_compact

DOC = {"b": [1, None, "\u00e9t\u00e9"], "a": {"z": True, "y": 1.5}, "big": 2 ** 70}


def test_compact_and_pretty():
    assert dumps(DOC, True) == json.dumps(DOC, sort_keys=True, separators=(",", ":")).encode()
    pretty = dumps(DOC, False)
    assert json.loads(pretty) == DOC
    assert pretty.startswith(b'{\n  "a": {\n    "y": 1.5, \n')  # upstream's separators
    assert wants_compact(b"application/json, text/plain")
    assert not wants_compact(b"text/html") and not wants_compact(None)


@pytest.mark.parametrize("compact", [True, False])
def test_datetimes_are_epoch_seconds_and_bytes_null(compact):
    when = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    assert json.loads(dumps({"t": when, "patch": b"\x00"}, compact)) == {
        "t": 1_700_000_000, "patch": None}


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, None),
    (b"", None),
    (b"identity", None),
    (b"gzip", "gzip"),
    (b"gzip, deflate, br, zstd", "br"),  # equal q-values: br, then zstd, then gzip
    (b"gzip, zstd", "zstd"),
    (b"br;q=0.5, gzip", "gzip"),
    (b"BR ; q = 0.9, gzip;q=0.8", "br"),
    (b"*", "br"),
    (b"br;q=0, *", "zstd"),
    (b"*;q=0, gzip", "gzip"),
    (b"gzip;q=0", None),
    (b"gzip;q=1.2.3, zstd;q=x", None),  # values that are not numbers are ignored
])
def test_choose_encoding(accept, chosen):
    found = choose_encoding(accept)
    assert (found and found[0]) == chosen


@pytest.mark.parametrize(("coding", "decompress"), [
    ("gzip", gzip.decompress),
    ("br", brotli.decompress),
    ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
])
def test_encoders_stream(coding, decompress):
    found = choose_encoding(coding.encode())
    assert found is not None
    name, encoder = found
    assert name == coding
    pieces = [dumps(DOC, True), b"\n" * 3, "\u00e9".encode() * 5000]
    body = b"".join(encoder.compress(p) for p in pieces) + encoder.flush()
    assert decompress(body) == b"".join(pieces)
