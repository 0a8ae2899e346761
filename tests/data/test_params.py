"""The checks of an update method's arguments (``params.check_*``): the value, or
InvalidParams naming the argument."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data.errors import InvalidParams


def error(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(InvalidParams) as info:
        fn(*args, **kw)
    return info.value.message


def test_check_int() -> None:
    assert params.check_int("n", 7) == 7
    assert params.check_int("n", 7.0) == 7
    assert params.check_int("n", None, nullable=True) is None
    assert params.check_int("n", 2**40) == 2**40
    assert error(params.check_int, "n", None) == "invalid params: n: must be an integer, not null"
    assert error(params.check_int, "n", True) == \
        "invalid params: n: must be an integer, not a boolean"
    assert error(params.check_int, "n", 2**63) == "invalid params: n: is out of range"
    assert params.check_int("n", 2**31 - 1, bits=32) == 2**31 - 1
    assert params.check_int("n", -(2**31), bits=32) == -(2**31)
    assert error(params.check_int, "n", 2**31, bits=32) == "invalid params: n: is out of range"
    assert error(params.check_int, "n", 2**15, bits=16) == "invalid params: n: is out of range"


def test_check_text() -> None:
    assert params.check_text("t", "abc") == "abc"
    assert params.check_text("t", None, nullable=True) is None
    assert error(params.check_text, "t", None) == "invalid params: t: must be a string, not null"
    assert error(params.check_text, "t", 5) == "invalid params: t: must be a string, not a number"
    assert error(params.check_text, "t", "a\0") == \
        "invalid params: t: must not contain NUL characters"
    assert params.check_text("t", "abc", max_length=3) == "abc"
    assert error(params.check_text, "t", "abcd", max_length=3) == \
        "invalid params: t: must be at most 3 characters long"
    column = sa.Column("c", sa.String(2))
    assert error(params.check_text, "t", "abc", column=column) == \
        "invalid params: t: must be at most 2 characters long"
    assert params.check_text("t", "x" * 1000, column=sa.Column("c", sa.Text())) == "x" * 1000


def test_check_bool() -> None:
    assert params.check_bool("b", False) is False
    assert error(params.check_bool, "b", 1) == \
        "invalid params: b: must be true or false, not a number"


def test_check_list() -> None:
    assert params.check_list("l", (1, 2), "ids") == [1, 2]
    assert params.check_list("l", {3}, "ids") == [3]
    assert params.check_list("l", (i for i in range(2)), "ids") == [0, 1]
    for bad in ("ab", b"ab", {"a": 1}, 5, None):
        assert error(params.check_list, "l", bad, "ids") == \
            "invalid params: l: must be a list of ids"


def test_check_epoch() -> None:
    assert params.check_epoch("when", None, 99) == 99
    assert params.check_epoch("when", 12.9, 99) == 12
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    assert params.check_epoch("when", when, 99) == 1577836800
    assert params.check_epoch("when", when.replace(tzinfo=None), 99) == 1577836800
    assert error(params.check_epoch, "when", 2**31, 99) == "invalid params: when: is out of range"
    assert "when: must be an integer" in error(params.check_epoch, "when", "now", 99)
    assert "when: must be an integer" in error(params.check_epoch, "when", float("nan"), 99)
