# -*- test-case-name: tests.data.test_params -*-
"""Reading the ``params`` of a control action (a JSON-RPC call): each helper answers the
value with its JSON type checked, or raises :class:`InvalidParams` (HTTP 400, JSON-RPC
-32602) naming the parameter. Upstream checks almost none of them and answers a 500
(COMPAT 4); JSON's ``true`` is never taken for the number 1.

The ``check_*`` helpers apply the same rules to one argument of an update method (an
embedding program's value), with the limits of the column it is stored in."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
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
            default: Any = None, nullable: bool = False, digits: bool = False) -> Any:
    """An integer within 64 bits (a JSON number without a fraction); ``null`` too
    when ``nullable``; with ``digits``, also a string of plain decimal digits (``"12"``:
    upstream's web UI sends ids of form fields so, COMPAT 5)."""
    if not _given(params, name, required):
        return default
    value = params[name]
    if value is None and nullable:
        return None
    if digits and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
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


# -- an update method's arguments -----------------------------------------------------------
# The same rules for one value that an embedding program passes to an update method: the
# value, or InvalidParams naming the argument (never a database error).

def check_int(name: str, value: Any, *, bits: int = 64, nullable: bool = False) -> Any:
    """``value`` if it is an integer that fits a signed column of ``bits`` bits (64 by
    default; upstream's Integer columns are 32-bit on PostgreSQL and MySQL, SmallInteger
    16-bit), or None when ``nullable``."""
    value = integer({name: value}, name, required=True, nullable=nullable)
    if value is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise InvalidParams({name: "is out of range"})
    return value


def check_text(name: str, value: Any, *, max_length: int | None = None,
               column: Any = None, nullable: bool = False) -> Any:
    """``value`` if it is a string (without NUL characters) of at most ``max_length``
    characters, or of at most the length of ``column`` (a string column), or None when
    ``nullable``. Upstream checks lengths on MySQL only and lets the other databases
    fail; here every backend answers a clean 400."""
    value = text({name: value}, name, required=True, nullable=nullable)
    if max_length is None and column is not None:
        max_length = getattr(column.type, "length", None)
    if value is not None and max_length is not None and len(value) > max_length:
        raise InvalidParams({name: f"must be at most {max_length} characters long"})
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False."""
    checked: bool = boolean({name: value}, name, required=True)
    return checked


def check_list(name: str, value: Any, what: str) -> list[Any]:
    """``value`` as a list: a list, tuple, set or any other iterable but a string, bytes
    or a mapping (read once); else InvalidParams ``must be a list of <what>``. Its items
    are the caller's to check."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidParams({name: f"must be a list of {what}"})
    return list(value)


def check_epoch(name: str, value: Any, default: int) -> int:
    """A time given as epoch seconds (an int or a float, truncated as upstream's
    conversions do) or a ``datetime`` (naive: UTC), within a 32-bit column; ``default``
    when None."""
    if value is None:
        return default
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = int(value.timestamp())
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return int(check_int(name, value, bits=32))


#: the reason of a control message when the call gives none (upstream's)
NO_REASON = "no reason"


def reason(params_: Mapping[str, Any]) -> str:
    """The ``reason`` of a control action (stop, cancel, a worker action): the string
    given, kept as it is (even empty, as upstream), or ``"no reason"`` when there is
    none or it is null. InvalidParams for anything but a string."""
    given = text(params_, "reason")
    return NO_REASON if given is None else str(given)


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
