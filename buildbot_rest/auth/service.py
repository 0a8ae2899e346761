# -*- test-case-name: tests.test_service -*-
"""The auth service: tells the web layer who makes each request.

Without authentication configured (the only mode so far), every request is anonymous:
upstream's ``{"anonymous": true}`` user info, which is also what ``/config`` shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.web.iweb import IRequest

from buildbot_rest.data.context import ANONYMOUS


class AuthService(Service):
    """The server's authentication, as a service (started before the web site)."""

    name = "auth"

    def user_for(self, request: IRequest) -> Mapping[str, Any]:
        """The user info of the request's caller."""
        return ANONYMOUS
