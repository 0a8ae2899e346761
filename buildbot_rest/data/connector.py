# -*- test-case-name: tests.data.test_connector -*-
"""The data connector: every resource type, its endpoints, and the path matcher."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from buildbot_rest.data.base import Endpoint, Kind, ResourceType
from buildbot_rest.data.matcher import Matcher
from buildbot_rest.data.resultspec import ResultSpec, parse

if TYPE_CHECKING:
    from buildbot_rest.db import Database

#: Resource modules in upstream's registration order, which is also the match priority.
MODULES = (
    "build_data", "builders", "builds", "buildrequests", "codebases", "codebase_commits",
    "codebase_branches", "workers", "steps", "logs", "logchunks", "buildsets", "changes",
    "changesources", "masters", "sourcestamps", "schedulers", "forceschedulers", "root",
    "projects", "properties", "test_results", "test_result_sets",
)

#: Singular spellings accepted as aliases of the plural collection names.
ALIASES = {
    "builder": "builders", "build": "builds", "buildrequest": "buildrequests",
    "buildset": "buildsets", "change": "changes", "changesource": "changesources",
    "master": "masters", "scheduler": "schedulers", "sourcestamp": "sourcestamps",
    "step": "steps", "log": "logs", "worker": "workers", "project": "projects",
    "codebase": "codebases", "forcescheduler": "forceschedulers",
    "test_result_set": "test_result_sets",
}


class DataConnector:
    """Owns the resource types and answers ``(path) -> (endpoint, kwargs)``."""

    def __init__(self, db: Database, *, config: Any = None, base_url: str = "/",
                 mq: Any = None) -> None:
        self.db = db
        self.config = config
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.mq = mq
        self.rtypes: dict[str, ResourceType] = {}
        self.endpoints: list[Endpoint] = []
        self.matcher: Matcher[Endpoint] = Matcher()
        for module_name in MODULES:
            module = importlib.import_module(f"buildbot_rest.data.resources.{module_name}")
            for rtype_class in module.RESOURCE_TYPES:
                self._register(rtype_class())

    def _register(self, rtype: ResourceType) -> None:
        self.rtypes[rtype.name] = rtype
        for endpoint_class in rtype.endpoints:
            endpoint = endpoint_class(rtype)
            self.endpoints.append(endpoint)
            for pattern in endpoint.patterns:
                self.matcher.add(pattern, endpoint)

    def match(self, path: tuple[str, ...]) -> tuple[Endpoint, dict[str, Any]]:
        """The endpoint and variables for a path; raises InvalidPath (404)."""
        if path and path[0] in ALIASES:
            path = (ALIASES[path[0]],) + path[1:]
        return self.matcher.match(path)

    def parse_spec(self, endpoint: Endpoint, args: dict[str, list[str]]) -> ResultSpec:
        return parse(args, endpoint.rtype.field_types,
                     collection=endpoint.kind is Kind.COLLECTION)

    def root_links(self) -> list[dict[str, str]]:
        return [{"name": e.root_link} for e in self.endpoints if e.root_link]
