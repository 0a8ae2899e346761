# -*- test-case-name: tests.data.test_matcher -*-
"""Matching request paths to endpoints: by path length, then by how specific each
element is (a literal before a number before a name), then in registration order."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from buildbot_rest.data.errors import InvalidPath
from buildbot_rest.data.types import parse_text

T = TypeVar("T")

_VARIABLE = re.compile(r"(.?):([a-z0-9_.]+)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


def _number(text: str) -> int:
    # Only plain ASCII digits are numbers: no sign, spaces or underscores.
    if not _DIGITS.match(text):
        raise ValueError(text)
    return int(text)


def _identifier(text: str) -> str:
    # Any stored name can be addressed: upstream's identifier pattern is not enforced
    # on what is stored (COMPAT 27). An empty segment names no identifier.
    if not text:
        raise ValueError(text)
    return parse_text(text)


#: how specific a path element is: at each position, the more specific pattern is tried
#: first, so that "3" is a step number, not a step named "3"
_LITERAL, _NUMBER, _NAME = 0, 1, 2


def _converter(flag: str, name: str) -> tuple[Callable[[str], Any], int]:
    if flag == "n" or (flag == "" and name.endswith("id")):
        return _number, _NUMBER
    if flag == "i":
        return _identifier, _NAME
    # "s" (a string) and other untyped variables
    return parse_text, _NAME


class Matcher(Generic[T]):
    """Path patterns such as ``/builders/n:builderid/builds`` mapped to values.

    A path matches a pattern of its length whose literals are equal and whose variables
    convert: numbers (``n:``, and untyped names ending in ``id``) are plain ASCII
    digits, names (``i:``, ``s:``, other untyped) any text without NUL (non-empty
    for ``i:``). Of
    the patterns that match, the most specific wins: compared element by element, a
    literal before a number before a name; then the first registered."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[tuple[int, ...], int, list[Any], T]]] = {}
        self._patterns: dict[tuple[str, ...], T] = {}

    def add(self, pattern: str, value: T) -> None:
        elements = tuple(e for e in pattern.strip("/").split("/") if e) if pattern != "/" else ()
        if elements in self._patterns:
            raise ValueError(f"duplicate path pattern {pattern}")
        self._patterns[elements] = value
        compiled: list[Any] = []
        ranks: list[int] = []
        for element in elements:
            m = _VARIABLE.match(element)
            if m:
                convert, rank = _converter(m.group(1), m.group(2))
                compiled.append((m.group(2), convert))
                ranks.append(rank)
            else:
                compiled.append(element)
                ranks.append(_LITERAL)
        candidates = self._by_length.setdefault(len(elements), [])
        candidates.append((tuple(ranks), len(candidates), compiled, value))
        candidates.sort(key=lambda c: (c[0], c[1]))

    def patterns(self) -> dict[tuple[str, ...], T]:
        return dict(self._patterns)

    def match(self, path: tuple[str, ...]) -> tuple[T, dict[str, Any]]:
        for _, _, compiled, value in self._by_length.get(len(path), ()):
            kwargs: dict[str, Any] = {}
            for want, got in zip(compiled, path, strict=True):
                if isinstance(want, str):
                    if want != got:
                        break
                else:
                    name, convert = want
                    try:
                        kwargs[name] = convert(got)
                    except ValueError:
                        break
            else:
                return value, kwargs
        raise InvalidPath("/".join(path))
