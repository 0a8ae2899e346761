# -*- test-case-name: tests.data.test_connector -*-
"""The update methods of the data API: how a program records its work (a build started,
a step finished...) so that the database and the events stay as upstream keeps them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Updates:
    """The update methods of every resource type, by name: ``connector.updates.<name>``.

    Each is a method of a resource type named in its ``updates`` declaration. A name can
    be offered by one resource type only."""

    def __init__(self) -> None:
        self._methods: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, method: Callable[..., Any]) -> None:
        """Offer ``method`` as ``updates.<name>``; ValueError if the name is taken."""
        if name in self._methods or name.startswith("_") or hasattr(type(self), name):
            raise ValueError(f"update method {name!r} is already defined")
        self._methods[name] = method

    def names(self) -> tuple[str, ...]:
        """Every update method's name, in registration order."""
        return tuple(self._methods)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self._methods[name]
        except KeyError:
            raise AttributeError(f"no update method {name!r}") from None
