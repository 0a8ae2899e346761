# -*- test-case-name: tests.test_service -*-
"""The auth service: tells the web layer who makes each request, and what they may see.

Without authentication configured (the only mode so far), every request is anonymous:
upstream's ``{"anonymous": true}`` user info, which is also what ``/config`` shows.
Without authorization rules every caller may read and control everything, as upstream
without ``authz``; the rules of the authorization issue plug into :meth:`may_control`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def may_control(self, user: Mapping[str, Any]) -> bool:
        """Whether ``user`` may use control actions at all (every caller, without
        authorization rules)."""
        return True

    def may_subscribe(self, user: Mapping[str, Any],
                      key_filter: Sequence[str | None]) -> bool:
        """Whether ``user`` may receive the events of ``key_filter`` on /ws or /sse.

        The keys of control messages (``control/...``, which tell a master to stop a
        build or a worker) are for callers who may control (COMPAT 20: upstream lets
        anyone subscribe to them); any other key, for every caller."""
        if key_filter[:1] in (("control",), (None,)):
            return self.may_control(user)
        return True
