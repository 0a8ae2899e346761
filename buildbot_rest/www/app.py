# -*- test-case-name: tests.www.test_edges -*-
"""The web application: ``/api``, ``/api/v2`` and ``/api/latest``, the live events of
``/ws`` and ``/sse``, and upstream's web UI with ``/config`` at ``/``."""

from __future__ import annotations

import json
from typing import Any, cast

from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import ApiError, InvalidPath
from buildbot_rest.mq.live import LiveEvents
from buildbot_rest.www.headers import set_common_headers
from buildbot_rest.www.login import AuthPages
from buildbot_rest.www.rest import (
    Responder,
    RestResource,
    decode_path,
    error_body,
    sent_path,
)
from buildbot_rest.www.sse import SseResource
from buildbot_rest.www.tokens import TokensResource
from buildbot_rest.www.ui import UiResource
from buildbot_rest.www.ws import WsResource

#: the two names of the one API version below ``/api``
VERSIONS = (b"v2", b"latest")
#: the content type of upstream's ``/api`` answer (errors below it are labelled like any)
VERSIONS_TYPE = b"application/json"


class WebApp:
    """The web application of one server; ``resource()`` is what a Site serves.

    Everything below ``/api`` is answered here in JSON, whatever the path; ``/ws`` and
    ``/sse`` serve ``live`` (the live events; made and started here from the
    connector's message queue when not given, and absent without one), and every other
    path the web UI (:class:`~buildbot_rest.www.ui.UiResource`). ``auth`` tells who
    makes each request (everyone is anonymous without it)."""

    def __init__(self, connector: DataConnector, *, auth: AuthService | None = None,
                 live: LiveEvents | None = None, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.connector = connector
        self.rest = RestResource(connector, auth=auth)
        # (a program may give the connector a configuration of its own kind)
        config = connector.config if isinstance(connector.config, Config) else Config()
        if live is None and connector.mq is not None:
            live = LiveEvents(connector.mq, window=config.resume_window)
            live.startService()
        self.live = live
        self.ws = WsResource(live, auth=auth, config=config, reactor=reactor)
        self.sse = SseResource(live, auth=auth, config=config, reactor=reactor)
        self.ui = UiResource(connector, auth=auth)
        self.auth = auth
        #: ``/auth/login`` and ``/auth/logout``; ``/auth/tokens`` (None without auth)
        self.auth_pages: Resource | None = None
        self.tokens: Resource | None = None
        if auth is not None:
            self.auth_pages = AuthPages(auth, connector.base_url, config=(
                connector.config if isinstance(connector.config, Config) else None))
            self.tokens = TokensResource(auth, base_url=connector.base_url)

    def resource(self) -> IResource:
        return cast(IResource, _Front(self))

    def versions(self) -> bytes:
        """``/api``, as upstream: ``{"api_versions": {"v2": "<base_url>api/v2"}}``."""
        return json.dumps({"api_versions": {"v2": self.connector.base_url + "api/v2"}}).encode()


class _Front(Resource):
    """The root of the application. It sets the headers of every answer, and routes the
    ``/api`` subtree itself: the werkzeug rules under Klein answer an HTML 404 for empty
    segments and line breaks, and an HTML 400 for bytes that are not UTF-8, before any
    handler of ours can answer.

    - ``/api`` (any method, as upstream): the API versions;
    - ``/api/v2[/...]`` and ``/api/latest[/...]``: :class:`RestResource`, which answers
      every path below them (``/api/v2/`` and ``/api/v2//builders`` are its 404s);
    - any other path below ``/api``, ``/api/`` and ``/api%2Fv2`` included: a 404
      ``Invalid path: <path>`` naming the path as sent; one that is not UTF-8: a 400;
    - ``/ws``: the WebSocket of live events; ``/sse/...``: the same as Server-Sent
      Events;
    - ``/auth/login``, ``/auth/logout``: sessions; ``/auth/tokens``: the caller's own
      bearer tokens;
    - any other path: the web UI, ``/config`` and ``/avatar``."""

    isLeaf = True

    def __init__(self, web: WebApp) -> None:
        super().__init__()
        self._web = web

    def render(self, request: Request) -> Any:
        set_common_headers(request)
        segments = request.postpath or []
        first = segments[0] if segments else b""
        if first in (b"ws", b"sse"):
            if first == b"ws" and len(segments) > 1:
                return self._web.ui.render(request)  # (/ws/x is no WebSocket)
            request.prepath = [*(request.prepath or []), first]
            request.postpath = segments[1:]
            live: Resource = self._web.ws if first == b"ws" else self._web.sse
            return live.render(request)
        if first == b"auth" and len(segments) > 1:
            return self._auth(request, segments)
        if first != b"api" and not first.startswith(b"api/"):
            return self._web.ui.render(request)
        if first == b"api" and len(segments) > 1 and segments[1] in VERSIONS:
            request.prepath = [*(request.prepath or []), *segments[:2]]
            request.postpath = segments[2:]
            return self._web.rest.render(request)
        return self._api(request, segments)

    def _auth(self, request: Request, segments: list[bytes]) -> Any:
        """``/auth/login``, ``/auth/logout`` and ``/auth/tokens[/<id>]``; 404 without
        an auth service."""
        tokens = segments[1] == b"tokens"
        pages = self._web.tokens if tokens else self._web.auth_pages
        if pages is None:
            Responder(request).send(404, error_body(
                "no authentication on this server (it serves everyone anonymously)"))
            return NOT_DONE_YET
        cut = 2 if tokens else 1
        # (the prepath stays the application's root: the login pages redirect to it)
        request.postpath = segments[cut:]
        return pages.render(request)

    def _api(self, request: Request, segments: list[bytes]) -> Any:
        responder = Responder(request)
        try:
            decode_path(request, segments)
            if segments != [b"api"]:
                raise InvalidPath(sent_path(request))
        except ApiError as e:
            responder.send(e.status, error_body(e.message))
        else:
            responder.send(200, self._web.versions(), VERSIONS_TYPE)
        return NOT_DONE_YET
