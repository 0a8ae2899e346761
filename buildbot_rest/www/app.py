# -*- test-case-name: tests.www.test_edges -*-
"""The web application: ``/api``, ``/api/v2`` and ``/api/latest``."""

from __future__ import annotations

import json
from typing import Any, cast

from klein import Klein
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import ApiError, InvalidPath
from buildbot_rest.www.headers import set_common_headers
from buildbot_rest.www.rest import (
    Responder,
    RestResource,
    UserSource,
    decode_path,
    error_body,
    sent_path,
)

#: the two names of the one API version below ``/api``
VERSIONS = (b"v2", b"latest")
#: the content type of upstream's ``/api`` answer (errors below it are labelled like any)
VERSIONS_TYPE = b"application/json"


class WebApp:
    """The web application of one server; ``resource()`` is what a Site serves.

    Everything below ``/api`` is answered here in JSON, whatever the path; the Klein
    application ``app`` answers the paths outside it. ``auth`` tells who makes each
    request (everyone is anonymous without it)."""

    #: the routes outside ``/api`` (none yet; Klein answers its own 404 there)
    app = Klein()
    # ``//x`` is not ``/x``: paths are matched as sent, as below /api (set once on the
    # class's application, the same for every instance)
    app.url_map.merge_slashes = False

    def __init__(self, connector: DataConnector, *, auth: UserSource | None = None) -> None:
        self.connector = connector
        self.rest = RestResource(connector, auth=auth)

    def resource(self) -> IResource:
        return cast(IResource, _Front(self, cast(Resource, self.app.resource())))

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
      ``Invalid path: <path>`` naming the path as sent; one that is not UTF-8: a 400."""

    isLeaf = True

    def __init__(self, web: WebApp, other: Resource) -> None:
        super().__init__()
        self._web = web
        self._other = other

    def render(self, request: Request) -> Any:
        set_common_headers(request)
        segments = request.postpath or []
        first = segments[0] if segments else b""
        if first != b"api" and not first.startswith(b"api/"):
            return self._other.render(request)
        if first == b"api" and len(segments) > 1 and segments[1] in VERSIONS:
            request.prepath = [*(request.prepath or []), *segments[:2]]
            request.postpath = segments[2:]
            return self._web.rest.render(request)
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
