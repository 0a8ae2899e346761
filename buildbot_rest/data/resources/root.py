# -*- test-case-name: tests.data.test_resources -*-
"""The root listing (``/``) and ``/application.spec``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.engine import apply_in_python
from buildbot_rest.data.resultspec import ResultSpec


class RootEndpoint(Endpoint):
    patterns = ("/",)

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        return apply_in_python(self.rtype, spec, ctx.connector.root_links(), sort=bool(spec.order))


class RootLink(ResourceType):
    name = "rootlink"
    plural = "rootlinks"
    fields = (Field("name", t.String()),)
    endpoints = (RootEndpoint,)


class SpecEndpoint(Endpoint):
    patterns = ("/application.spec",)

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        entries = []
        for elements, endpoint in sorted(ctx.connector.matcher.patterns().items()):
            rtype = endpoint.rtype
            entity = rtype.entity_type
            entries.append({
                "path": "/".join(elements),
                "type": entity.name,
                "plural": rtype.plural,
                "type_spec": entity.type_spec(),
            })
        return apply_in_python(self.rtype, spec, entries, sort=bool(spec.order))


class Spec(ResourceType):
    name = "spec"
    plural = "specs"
    fields = (
        Field("path", t.String()),
        Field("type", t.String()),
        Field("plural", t.String()),
        Field("type_spec", t.JsonObject()),
    )
    endpoints = (SpecEndpoint,)


RESOURCE_TYPES = (RootLink, Spec)
