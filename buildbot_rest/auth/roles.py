# -*- test-case-name: tests.auth.test_roles -*-
"""Upstream's role matchers. (SKELETON: helper A fills it.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RoleMatchers:
    def roles_for(self, user: Mapping[str, Any]) -> set[str]:
        return set()
