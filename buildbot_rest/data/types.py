# -*- test-case-name: tests.data.test_types -*-
"""Field types of the data API: their JSON form, their URL parsing and their spec."""

from __future__ import annotations

import json
import re
from typing import Any

_INT = re.compile(r"-?[0-9]+\Z")
#: the range of the widest integer column (BIGINT); values beyond it cannot be stored,
#: and SQLite (and some PostgreSQL drivers) refuse them as parameters
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def in_int_range(value: int) -> bool:
    """Whether an integer fits the widest integer column (and every driver's parameter)."""
    return INT_MIN <= value <= INT_MAX


def loads_json(text: Any, default: Any = None) -> Any:
    """The value of a JSON text read from the database, or ``default`` when the text is
    null or not JSON: stored data that another writer damaged reads as missing instead
    of failing the whole answer (COMPAT: tolerant reads)."""
    if text is None:
        return default
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return default

_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})


class FieldType:
    """One field type. ``parse`` turns a URL value into a Python value or raises
    ValueError; types that cannot be filtered on have ``filterable = False``."""

    name = "?"
    filterable = True
    #: whether the value is a scalar that SQL can compare and order
    scalar = True
    #: whether ``order`` may name the field: a scalar whose order means something
    #: (not JSON text, not bytes shown as null); COMPAT 29
    orderable = True
    nullable = False

    def parse(self, text: str) -> Any:
        raise ValueError(f"cannot filter on a {self.name}")

    def from_db(self, value: Any) -> Any:
        """The JSON value for a database value."""
        return value

    def type_name(self) -> str:
        return self.name

    def type_spec(self) -> dict[str, Any]:
        return {"name": self.name}


class Integer(FieldType):
    name = "integer"

    def parse(self, text: str) -> int:
        if not _INT.match(text):
            raise ValueError(text)
        value = int(text)
        if not in_int_range(value):
            raise ValueError(text)
        return value

    def from_db(self, value: Any) -> Any:
        return None if value is None else int(value)


class DateTime(Integer):
    """Times go over the wire as integer epoch seconds, and filter values are the same."""

    name = "datetime"


def parse_text(text: str) -> str:
    """A URL text as a filter or path value: any text but NUL, which PostgreSQL's text
    cannot hold and rejects even as a parameter, and lone surrogates, which are not
    text (a program's own strings can hold them)."""
    if "\x00" in text:
        raise ValueError(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(text) from None
    return text


class String(FieldType):
    name = "string"

    def parse(self, text: str) -> str:
        return parse_text(text)


class Binary(FieldType):
    """Bytes serialise as null over REST, as upstream does."""

    name = "binary"
    filterable = False
    orderable = False

    def from_db(self, value: Any) -> Any:
        return None


class Boolean(FieldType):
    name = "boolean"

    def parse(self, text: str) -> bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)

    def from_db(self, value: Any) -> Any:
        return None if value is None else bool(value)


class Identifier(FieldType):
    """A name. Upstream declares a pattern (``[a-zA-Z_-][a-zA-Z0-9._-]*``, at most
    ``length`` characters) but never enforces it on what is stored, so step names such
    as ``set props`` exist; filters take any stored name (COMPAT: identifiers)."""

    name = "identifier"

    def __init__(self, length: int = 50) -> None:
        self.length = length

    def parse(self, text: str) -> str:
        return parse_text(text)


class NoneOk(FieldType):
    """A value of ``inner`` type, or null."""

    nullable = True

    def __init__(self, inner: FieldType) -> None:
        self.inner = inner
        self.name = inner.name
        self.filterable = inner.filterable
        self.scalar = inner.scalar
        self.orderable = inner.orderable

    def parse(self, text: str) -> Any:
        return self.inner.parse(text)

    def from_db(self, value: Any) -> Any:
        return None if value is None else self.inner.from_db(value)

    def type_name(self) -> str:
        return f"{self.inner.type_name()} or None"

    def type_spec(self) -> dict[str, Any]:
        spec = dict(self.inner.type_spec())
        spec["can_be_null"] = True
        return spec


def base_type(type_: FieldType) -> FieldType:
    """The type of a field's values when they are not null (``NoneOk`` unwrapped)."""
    return type_.inner if isinstance(type_, NoneOk) else type_


class List(FieldType):
    """A list; URL values are parsed as single elements (for ``contains``)."""

    name = "list"
    scalar = False
    orderable = False

    def __init__(self, of: FieldType) -> None:
        self.of = of
        self.filterable = of.filterable

    def parse(self, text: str) -> Any:
        return self.of.parse(text)

    def type_spec(self) -> dict[str, Any]:
        return {"type": "list", "of": self.of.type_spec()}


class JsonObject(FieldType):
    name = "jsonobject"
    filterable = False
    scalar = False
    orderable = False

    def from_db(self, value: Any) -> Any:
        return loads_json(value, {})


class SourcedProperties(FieldType):
    name = "sourcedproperties"
    filterable = False
    scalar = False
    orderable = False


class Entity(FieldType):
    """An embedded entity (a master, a sourcestamp, a patch...)."""

    filterable = False
    scalar = False
    orderable = False

    def __init__(self, name: str, fields: dict[str, FieldType]) -> None:
        self.name = name
        self.fields = fields

    def type_spec(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "fields": [
                {"name": k, "type": t.type_name(), "type_spec": t.type_spec()}
                for k, t in self.fields.items()
            ],
        }
