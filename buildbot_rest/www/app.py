# -*- test-case-name: tests.www.test_app -*-
"""The web application: ``/api``, ``/api/v2`` and ``/api/latest``."""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from buildbot_rest.www.rest import RestResource


class WebApp:
    """The Klein application of one server; ``resource()`` is what a Site serves."""

    app = Klein()

    def __init__(self, connector: Any, *, reactor: Any = None) -> None:
        self.connector = connector
        self.rest = RestResource(connector, reactor=reactor)
        self.app.url_map.merge_slashes = False

    def resource(self) -> IResource:
        return self.app.resource()

    @app.route("/api")
    def api_versions(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        body = {"api_versions": {"v2": self.connector.base_url + "api/v2"}}
        return json.dumps(body).encode()

    @app.route("/api/v2", branch=True)
    @app.route("/api/v2/")
    @app.route("/api/latest", branch=True)
    @app.route("/api/latest/")
    def api_v2(self, request: IRequest) -> IResource:
        return self.rest
