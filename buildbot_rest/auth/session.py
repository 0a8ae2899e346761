# -*- test-case-name: tests.auth.test_session -*-
"""Upstream's session cookie. (SKELETON: helper A fills it.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.web.iweb import IRequest


class Sessions:
    def __init__(self, auth: Any, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.auth = auth
        self.db = db
        self.clock = clock
        self.secret: str | None = None

    def prepare_sync(self) -> None:
        pass

    async def user(self, request: IRequest) -> dict[str, Any] | None:
        return None
