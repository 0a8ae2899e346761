# -*- test-case-name: tests.data.test_matcher -*-
"""Matching request paths to endpoints, in registration order, by path length."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from buildbot_rest.data.errors import InvalidPath
from buildbot_rest.data.types import IDENTIFIER

T = TypeVar("T")

_VARIABLE = re.compile(r"(.?):([a-z0-9_.]+)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


def _number(text: str) -> int:
    # Only plain ASCII digits are numbers: no sign, spaces or underscores.
    if not _DIGITS.match(text):
        raise ValueError(text)
    return int(text)


def _identifier(text: str) -> str:
    if not IDENTIFIER.match(text):
        raise ValueError(text)
    return text


def _converter(flag: str, name: str) -> Callable[[str], Any]:
    if flag == "n":
        return _number
    if flag == "i":
        return _identifier
    if flag == "s":
        return str
    # Untyped variables: ids are numbers, anything else is a string.
    return _number if name.endswith("id") else str


class Matcher(Generic[T]):
    """Path patterns such as ``/builders/n:builderid/builds`` mapped to values.

    A path matches the first pattern of its length, in registration order, whose
    literals are equal and whose variables convert."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[list[Any], T]]] = {}
        self._patterns: dict[tuple[str, ...], T] = {}

    def add(self, pattern: str, value: T) -> None:
        elements = tuple(e for e in pattern.strip("/").split("/") if e) if pattern != "/" else ()
        if elements in self._patterns:
            raise ValueError(f"duplicate path pattern {pattern}")
        self._patterns[elements] = value
        compiled: list[Any] = []
        for element in elements:
            m = _VARIABLE.match(element)
            if m:
                compiled.append((m.group(2), _converter(m.group(1), m.group(2))))
            else:
                compiled.append(element)
        self._by_length.setdefault(len(elements), []).append((compiled, value))

    def patterns(self) -> dict[tuple[str, ...], T]:
        return dict(self._patterns)

    def match(self, path: tuple[str, ...]) -> tuple[T, dict[str, Any]]:
        for compiled, value in self._by_length.get(len(path), ()):
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
