# -*- test-case-name: tests.db.test_hashes -*-
"""The hash columns (``name_hash``, ``ss_hash``) exactly as upstream Buildbot fills them."""

from __future__ import annotations

import hashlib
from typing import Any

# A NULL never collides with text: UTF-8 text never contains the byte 0xF5.
_NULL = b"\xf5"


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return _NULL
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def hash_columns(*values: Any) -> str:
    """The SHA-1 hex digest over the values joined with NUL bytes."""
    return hashlib.sha1(b"\0".join(_as_bytes(v) for v in values)).hexdigest()


def name_hash(name: str) -> str:
    """The ``name_hash`` of a builder, tag, master, scheduler, project, ... name."""
    return hash_columns(name)


def ss_hash(branch: str | None, revision: str | None, repository: str, project: str,
            codebase: str, patchid: int | None) -> str:
    """The ``sourcestamps.ss_hash`` identifying one source stamp."""
    return hash_columns(branch, revision, repository, project, codebase, patchid)


def shorten(value: str, length: int) -> str:
    """Fit ``value`` into a column of ``length`` characters the way upstream does:
    keep the first half and replace the rest with part of its SHA-1."""
    if value and len(value) > length:
        half = length // 2
        return value[:half] + hashlib.sha1(value.encode("utf-8")).hexdigest()[:half]
    return value
