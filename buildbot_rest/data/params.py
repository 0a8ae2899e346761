# -*- test-case-name: tests.data.test_params -*-
"""Reading the ``params`` of a control action (a JSON-RPC call): each helper answers the
value with its JSON type checked, or raises :class:`InvalidParams` (HTTP 400, JSON-RPC
-32602) naming the parameter. Upstream checks almost none of them and answers a 500
(COMPAT 4); JSON's ``true`` is never taken for the number 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.types import in_int_range


def _given(params: Mapping[str, Any], name: str, required: bool) -> bool:
    if name in params:
        return True
    if required:
        raise InvalidParams({name: "required"})
    return False


def integer(params: Mapping[str, Any], name: str, *, required: bool = False,
            default: Any = None, nullable: bool = False) -> Any:
    """An integer within 64 bits (a JSON number without a fraction); ``null`` too
    when ``nullable``."""
    if not _given(params, name, required):
        return default
    value = params[name]
    if value is None and nullable:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams({name: f"must be an integer, not {_json_type(value)}"})
    if not in_int_range(value):
        raise InvalidParams({name: "is out of range"})
    return value


def boolean(params: Mapping[str, Any], name: str, *, required: bool = False,
            default: Any = None) -> Any:
    """``true`` or ``false``."""
    if not _given(params, name, required):
        return default
    value = params[name]
    if not isinstance(value, bool):
        raise InvalidParams({name: f"must be true or false, not {_json_type(value)}"})
    return value


def text(params: Mapping[str, Any], name: str, *, required: bool = False,
         default: Any = None, nullable: bool = True) -> Any:
    """A string without NUL characters; ``null`` too when ``nullable``."""
    if not _given(params, name, required):
        return default
    value = params[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidParams({name: f"must be a string, not {_json_type(value)}"})
    if "\0" in value:
        raise InvalidParams({name: "must not contain NUL characters"})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams({name: "must be valid Unicode text"}) from None
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
