# -*- test-case-name: tests.data.test_resultspec -*-
"""The query language: parsing a query string into a ResultSpec, and evaluating
its filters and order on plain dicts (for the fields that SQL cannot handle)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from buildbot_rest.data import types as t
from buildbot_rest.data.errors import InvalidQuery
from buildbot_rest.data.types import FieldType

_COUNT = re.compile(r"[0-9]+\Z")

#: operators that take one value, and those that take one or several
SINGLE_OPS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "notin", "isnull"})
MULTI_OPS = frozenset({"eq", "ne", "contains", "in", "notin"})


@dataclass
class Filter:
    """``field op values``; several values mean any of them (all of them for ne/notin)."""

    field: str
    op: str
    values: list[Any]

    def matches(self, value: Any) -> bool:
        """Evaluate on one value, with SQL's treatment of null: a null matches only isnull."""
        op, values = self.op, self.values
        if op == "isnull":
            return (value is None) == bool(values[0])
        if value is None:
            return False
        if isinstance(value, (list, tuple)) and op in ("eq", "in", "ne", "notin"):
            # a list field: membership, as upstream's web UI filters lists (COMPAT 26)
            hit = any(v in value for v in values)
            return hit if op in ("eq", "in") else not hit
        if op in ("eq", "in"):
            return value in values
        if op in ("ne", "notin"):
            return value not in values
        if op == "contains":
            if isinstance(value, str):
                return any(isinstance(v, str) and v in value for v in values)
            if isinstance(value, (list, tuple)):
                return any(v in value for v in values)
            return False
        v = values[0]
        try:
            if op == "lt":
                return value < v
            if op == "le":
                return value <= v
            if op == "gt":
                return value > v
            if op == "ge":
                return value >= v
        except TypeError:
            return False
        raise AssertionError(op)


@dataclass
class ResultSpec:
    """What a request asks of a collection: fields, filters, order, paging, properties."""

    fields: list[str] | None = None
    filters: list[Filter] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    properties: list[str] | None = None

    def pop_filter(self, name: str, ops: Iterable[str] = ("eq",)) -> Filter | None:
        """Remove and return the first filter on ``name`` with one of ``ops``."""
        for i, f in enumerate(self.filters):
            if f.field == name and f.op in ops:
                return self.filters.pop(i)
        return None

    def filters_on(self, name: str) -> list[Filter]:
        return [f for f in self.filters if f.field == name]

    def project(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.fields is None:
            return item
        return {k: item[k] for k in self.fields if k in item}

    @property
    def paged(self) -> bool:
        return self.limit is not None or self.offset is not None


def parse_query_string(query: bytes | str) -> list[tuple[str, str]]:
    """Split a raw query string on ``&`` and ``;``, percent- and plus-decode each part
    as UTF-8, and drop parts without ``=``, in the order given.

    A name or value whose bytes are not UTF-8 is :class:`InvalidQuery` naming the
    parameter: it can match nothing stored, and read as U+FFFD it would silently
    match the wrong things (``name__ne=%FF``)."""
    if isinstance(query, str):
        query = query.encode("utf-8", "surrogatepass")
    pairs: list[tuple[str, str]] = []
    for part in query.replace(b";", b"&").split(b"&"):
        if b"=" not in part:
            continue
        raw_key, _, raw_value = part.partition(b"=")
        key = _decoded(raw_key)
        if key is None:
            raise InvalidQuery("invalid query parameter name: not UTF-8")
        value = _decoded(raw_value)
        if value is None:
            raise InvalidQuery(f"invalid value for {key}: not UTF-8")
        pairs.append((key, value))
    return pairs


def _decoded(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def group(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Repeated keys collect their values; keys keep the order of first appearance."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def _parse_count(name: str, text: str) -> int:
    # Plain ASCII digits, as for every other number (int() would also take "1_0",
    # " 3" and other scripts' digits).
    if not _COUNT.match(text):
        raise InvalidQuery(f"invalid {name}: must not be negative" if _COUNT.match(
            text.removeprefix("-")) else f"invalid {name}")
    value = int(text)
    if value > t.INT_MAX:
        # beyond what SQL's LIMIT/OFFSET take
        raise InvalidQuery(f"invalid {name}: too large")
    return value


def parse(args: Mapping[str, list[str]], fields: Mapping[str, FieldType], *,
          collection: bool) -> ResultSpec:
    """Build a ResultSpec from query arguments, checked against the entity's ``fields``.

    Raises :class:`InvalidQuery` naming the first offending parameter."""
    spec = ResultSpec()
    for key, values in args.items():
        if key == "order":
            for v in values:
                name = v.removeprefix("-")
                if name not in fields:
                    raise InvalidQuery(f"no such field {name!r}")
                if not fields[name].orderable:
                    # upstream ignores it silently (COMPAT 29)
                    base = t.base_type(fields[name])
                    kind = ("a list" if isinstance(base, t.List) else
                            "bytes" if isinstance(base, t.Binary) else "a JSON object")
                    raise InvalidQuery(f"invalid order {v}: {name!r} is {kind}, which "
                                       "has no order")
            spec.order = list(values)
        elif key == "field":
            for v in values:
                if v not in fields:
                    raise InvalidQuery(f"no such field {v!r}")
            spec.fields = list(dict.fromkeys(values))
        elif key == "limit":
            spec.limit = _parse_count("limit", values[0])
        elif key == "offset":
            spec.offset = _parse_count("offset", values[0])
        elif key == "property":
            try:
                for v in values:
                    t.parse_text(v)
            except ValueError:
                raise InvalidQuery("invalid property value for property") from None
            spec.properties = list(values)
        elif key in fields:
            spec.filters.append(_make_filter(key, key, "eq", values, fields[key]))
        elif "__" in key:
            name, _, op = key.rpartition("__")
            if name not in fields:
                raise InvalidQuery(f"unrecognized query parameter '{key}': no such field "
                                   f"{name!r}")
            if op not in SINGLE_OPS:
                raise InvalidQuery(f"unrecognized query parameter '{key}': no such operator "
                                   f"{op!r}")
            if len(values) > 1 and op not in MULTI_OPS:
                raise InvalidQuery(f"invalid filter {key}: operator {op!r} takes one value")
            spec.filters.append(_make_filter(key, name, op, values, fields[name]))
        else:
            raise InvalidQuery(f"unrecognized query parameter '{key}'")

    if spec.fields is not None:
        selected = set(spec.fields)
        if any(o.lstrip("-") not in selected for o in spec.order):
            raise InvalidQuery("cannot order on un-selected fields")
        if any(f.field not in selected for f in spec.filters):
            raise InvalidQuery("cannot filter on un-selected fields")
    if not collection and spec.filters:
        raise InvalidQuery("this is not a collection")
    return spec


def _textual(type_: FieldType) -> bool:
    """Whether ``contains`` means something for the type: text, or a list of anything."""
    base = t.base_type(type_)
    return isinstance(base, (t.String, t.Identifier, t.List))


def _make_filter(key: str, name: str, op: str, values: list[str], type_: FieldType) -> Filter:
    if not type_.filterable:
        raise InvalidQuery(f"invalid filter value for {key}")
    if op == "contains" and not _textual(type_):
        # a substring of a number or a time has no SQL meaning that Python shares
        raise InvalidQuery(f"invalid filter {key}: 'contains' applies to text and lists only")
    base = t.base_type(type_)
    if op in ("lt", "le", "gt", "ge") and isinstance(base, t.List):
        # a list has no order against one element
        raise InvalidQuery(f"invalid filter {key}: {op!r} does not apply to a list")
    try:
        if op == "isnull":
            parsed = [t.Boolean().parse(values[0])]
        else:
            parsed = [type_.parse(v) for v in values]
    except ValueError:
        raise InvalidQuery(f"invalid filter value for {key}") from None
    return Filter(name, op, parsed)


# -- ordering in Python ----------------------------------------------------------------

def _compare(a: Any, b: Any) -> int:
    # null sorts first ascending; values of unlike types compare by type name so that a
    # sort never fails.
    if a is None or b is None:
        return (a is not None) - (b is not None)
    try:
        return (a > b) - (a < b)
    except TypeError:
        ta, tb = type(a).__name__, type(b).__name__
        return (ta > tb) - (ta < tb)


def sort_items(items: list[dict[str, Any]], order: Sequence[str],
               tiebreak: Sequence[str]) -> list[dict[str, Any]]:
    """Sort like SQL with NULLs first ascending and last descending, then by the key."""
    keys = [(o.lstrip("-"), o.startswith("-")) for o in order]
    named = {name for name, _ in keys}
    keys += [(k.lstrip("-"), k.startswith("-")) for k in tiebreak if k.lstrip("-") not in named]

    def cmp(x: dict[str, Any], y: dict[str, Any]) -> int:
        for name, desc in keys:
            c = _compare(x.get(name), y.get(name))
            if c:
                return -c if desc else c
        return 0

    return sorted(items, key=functools.cmp_to_key(cmp))
