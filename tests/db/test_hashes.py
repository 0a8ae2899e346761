"""The hash columns and shortened values must be byte for byte what upstream Buildbot writes:
other masters sharing the database look rows up by them. The expected values below were
computed with Buildbot 4.3.0 itself."""

from __future__ import annotations

import hashlib

import pytest

from buildbot_rest.db.hashes import hash_columns, name_hash, shorten, ss_hash


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("runtests", "ae3c03f408678b20c1eb105fc44bf038def161a9"),
        ("ünïcode", "979fe33b70c7bba489975d94bd4087460722fc85"),
    ],
)
def test_name_hash(name: str, expected: str) -> None:
    assert name_hash(name) == expected


def test_hash_columns_with_nulls_and_empty() -> None:
    assert hash_columns(None, "abc", "r", "p", "", None) == (
        "d4eef07b939b0484fa43e5df80b85c5bd6f45fb8")


def test_hash_columns_with_integer() -> None:
    assert hash_columns("b", "r", "https://x", "p", "cb", 7) == (
        "fbad96f3be49d59eb49beb0a653b350de32d9669")
    assert hash_columns(1, "", "x") == "756606d1ac3fdc5a9b282359703456097097ea40"


def test_ss_hash_is_hash_of_its_columns_in_order() -> None:
    assert ss_hash("b", "r", "https://x", "p", "cb", 7) == (
        "fbad96f3be49d59eb49beb0a653b350de32d9669")
    assert ss_hash(None, "abc", "r", "p", "", None) == (
        "d4eef07b939b0484fa43e5df80b85c5bd6f45fb8")


def test_null_and_empty_differ() -> None:
    assert hash_columns(None) != hash_columns("")
    assert hash_columns(None, "") != hash_columns("", None)


def test_separator_matters() -> None:
    assert hash_columns("ab", "c") != hash_columns("a", "bc")
    assert hash_columns("abc") != hash_columns("ab", "c")


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        ("x" * 60, 50, "x" * 25 + "06ced2e070e58c2c4ed9f2b8c"),
        ("abcdefgh", 7, "abc425"),  # an odd length loses one character, as upstream's does
        ("é" * 51, 50, "é" * 25 + "d19f8708704a19da3b77b2006"),
    ],
)
def test_shorten_known_values(value: str, length: int, expected: str) -> None:
    assert shorten(value, length) == expected


def test_shorten_keeps_half_and_hash_prefix() -> None:
    value = "builder-" * 40
    short = shorten(value, 60)
    assert len(short) == 60
    assert short[:30] == value[:30]
    assert short[30:] == hashlib.sha1(value.encode("utf-8")).hexdigest()[:30]


def test_shorten_long_column_gets_whole_hash() -> None:
    # Past 80 characters the hex digest (40) is shorter than half: upstream's value is then
    # shorter than the column, and ours must be the same.
    value = "builder-" * 40
    short = shorten(value, 100)
    assert short == value[:50] + hashlib.sha1(value.encode("utf-8")).hexdigest()
    assert len(short) == 90


@pytest.mark.parametrize("value", ["", "short", "x" * 50])
def test_shorten_leaves_fitting_values(value: str) -> None:
    assert shorten(value, 50) == value


def test_shorten_counts_characters_not_bytes() -> None:
    value = "ü" * 50  # 100 bytes in UTF-8, but 50 characters fit a String(50)
    assert shorten(value, 50) == value


def test_shorten_distinguishes_long_values_with_a_common_prefix() -> None:
    a = "p" * 30 + "a"
    b = "p" * 30 + "b"
    assert shorten(a, 20) != shorten(b, 20)
    assert shorten(a, 20)[:10] == shorten(b, 20)[:10]
