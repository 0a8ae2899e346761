# -*- test-case-name: tests.www.test_core -*-
"""The web application: ``/api``, ``/api/v2`` and ``/api/latest``."""

from __future__ import annotations

import json
from typing import cast

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from buildbot_rest.data.connector import DataConnector
from buildbot_rest.www.rest import RestResource, UserSource


class WebApp:
    """The Klein application of one server; ``resource()`` is what a Site serves.

    ``auth`` tells who makes each request (everyone is anonymous without it)."""

    app = Klein()
    # ``//builders`` is not ``/builders``: paths are matched as sent (the same for every
    # instance, so set once on the class's application)
    app.url_map.merge_slashes = False

    def __init__(self, connector: DataConnector, *, auth: UserSource | None = None) -> None:
        self.connector = connector
        self.rest = RestResource(connector, auth=auth)

    def resource(self) -> IResource:
        return cast(IResource, self.app.resource())

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
        return cast(IResource, self.rest)
