# -*- test-case-name: tests.auth.test_authz -*-
"""Upstream's allow rules with COMPAT's fixes. (SKELETON: helper C fills it.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Authz:
    """No rules: everyone may read and control everything."""

    async def authorize_read(self, service: Any, caller: Any, endpoint: Any,
                             kwargs: Mapping[str, Any], spec: Any) -> Any:
        return spec

    async def authorize_control(self, service: Any, caller: Any, endpoint: Any,
                                kwargs: Mapping[str, Any], method: str,
                                params: Mapping[str, Any]) -> None:
        return None

    def may_control_something(self, service: Any, caller: Any) -> bool:
        return True

    def may_subscribe(self, service: Any, caller: Any,
                      key_filter: Sequence[str | None]) -> bool:
        return True

    def event_filter(self, service: Any, caller: Any) -> Any:
        return None


def parse_authz(table: dict[str, Any]) -> Authz:
    return Authz()
