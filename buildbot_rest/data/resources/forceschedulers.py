# -*- test-case-name: tests.www.test_forceschedulers -*-
"""Force schedulers: they live in the server's configuration, not in the database.

Each is served as upstream serialises it, and its ``force`` action checks the form's
values and adds a buildset the way upstream's ForceScheduler does (source stamps per
codebase, properties from the form, one build request per builder)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.engine import apply_in_python
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.resources.buildsets import add_buildset_in
from buildbot_rest.data.resources.sourcestamps import find_or_create_sourcestamp
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write, find_or_create_named
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash

#: the keys of an entity (a configuration entry may hold more: ``reason_string``)
_ENTITY_KEYS = ("name", "button_name", "label", "builder_names", "enabled", "all_fields")
#: upstream's default text of a forced buildset's reason
DEFAULT_REASON_STRING = "A build was forced by '%(owner)s': %(reason)s"
#: the property source of the form's values (upstream's)
FORM_SOURCE = "Force Build Form"
#: upstream's test of an e-mail address in a user name (reporters/mail.py)
_EMAIL = re.compile(r"(?:\S+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\.?)")
#: the source stamp fields a codebase group may set
_STAMP_KEYS = ("branch", "revision", "repository", "project")
_PATCH_KEYS = ("body", "level", "author", "comment", "subdir")
#: buildrequests.priority is a 32-bit INTEGER
_INT32 = (-2**31, 2**31 - 1)

# upstream's default username, reason and priority fields (for an ``all_fields`` given
# raw without them)
_DEFAULT_ROLES = (
    {"name": "username", "fullName": "username", "type": "username", "default": "",
     "label": "Your name:", "need_email": True},
    {"name": "reason", "fullName": "reason", "type": "text", "default": "force build",
     "label": "reason"},
    {"name": "priority", "fullName": "priority", "type": "int", "default": 0,
     "label": "priority"},
)


def _public(value: Any) -> Any:
    """A configured field without the keys only forcing uses (``_regex``...)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def configured(ctx: Context) -> list[dict[str, Any]]:
    """The force schedulers of the configuration, as entities, in configuration order.

    :class:`buildbot_rest.config.Config` has checked them and filled in upstream's
    defaults; each is copied so that serving it never changes the configuration."""
    return [{k: _public(entry[k]) for k in _ENTITY_KEYS if k in entry}
            for entry in _entries(ctx)]


def _entries(ctx: Context) -> list[Mapping[str, Any]]:
    return list(getattr(ctx.config, "forceschedulers", None) or ())


def find_configured(ctx: Context, name: str) -> Mapping[str, Any] | None:
    """The configuration entry (with the keys forcing uses) of force scheduler ``name``."""
    for entry in _entries(ctx):
        if entry["name"] == name:
            return entry
    return None


def sync_scheduler_rows(conn: sa.Connection, entries: Sequence[Mapping[str, Any]]
                        ) -> dict[str, int]:
    """Find or create the ``schedulers`` row of each configured force scheduler, by name,
    as upstream's master does (``findSchedulerId``: ``name_hash``; a new row takes the
    configuration's ``enabled``, then the row decides, as upstream's). Answers ``{name:
    schedulerid}``. A concurrent start inserting the same name is found, not duplicated.
    Takes no ``scheduler_masters`` row: this server is not the master that runs them."""
    sch = s.schedulers
    ids: dict[str, int] = {}
    for entry in entries:
        name = entry["name"]
        found = find_or_create_named(conn, sch, name,
                                     values={"enabled": int(bool(entry.get("enabled", True)))})
        assert found is not None
        ids[name] = int(found)
    return ids


# -- the form's values (upstream's getFromKwargs and updateFromKwargs) -------------------

class _FieldError(ValueError):
    """One field's value cannot be used (upstream's ValidationError)."""


def _regex(field: Mapping[str, Any]) -> str | None:
    pattern = field.get("_regex")
    if pattern is None and isinstance(field.get("regex"), str):
        pattern = field["regex"]  # an all_fields given raw may carry its pattern
    return pattern if pattern else None


def _field_value(field: Mapping[str, Any], kwargs: Mapping[str, list[Any]]) -> Any:
    """The value of one field from the call's arguments (each a list), checked as
    upstream checks it; _FieldError with upstream's message."""
    full: str = field.get("fullName") or ""
    type_ = field.get("type")
    label = field.get("label", field.get("name"))
    default = field.get("default", "")
    if type_ == "bool":
        return kwargs.get(full, [default]) == [True]
    args = [a for a in kwargs.get(full, []) if not (isinstance(a, str) and not a.strip())]
    multiple = bool(field.get("multiple"))
    if not args:
        if field.get("required"):
            raise _FieldError(f"'{label}' needs to be specified")
        if multiple:
            args = list(default) if isinstance(default, list) else (
                [] if default == "" else [default])
        else:
            args = [default]
    pattern = _regex(field)
    if pattern is not None:
        for arg in args:
            text = str(arg) if isinstance(arg, int | float | str) else None
            if text is None or not re.match(pattern, text):
                raise _FieldError(f"{label}:'{arg}' does not match pattern '{pattern}'")
    maxsize = field.get("maxsize")
    if isinstance(maxsize, int):
        for arg in args:
            if isinstance(arg, str) and len(arg) > maxsize:
                raise _FieldError(f"{label}: is too large {len(arg)} > {maxsize}")
    if type_ == "fixed":
        value = default
    elif multiple:
        value = [_parse(field, arg) for arg in args]
    else:
        value = _parse(field, args[0])
    if value is None:
        raise _FieldError(f"need {full}: no default provided by config")
    return value


def _parse(field: Mapping[str, Any], arg: Any) -> Any:
    type_ = field.get("type")
    if type_ == "int":
        if isinstance(arg, int):
            return int(arg)  # (true is 1, as upstream's int() makes it)
        try:
            return int(arg)
        except (TypeError, ValueError, OverflowError) as e:
            raise _FieldError(str(e)) from None
    if arg is None:
        return None
    if not isinstance(arg, str):
        # upstream keeps any JSON value here (and may fail later with a 500)
        raise _FieldError(f"'{field.get('label', field.get('name'))}' must be a string, "
                          f"not {params._json_type(arg)}")
    if type_ == "username":
        if not arg and not field.get("required"):
            return arg
        if field.get("need_email", True) and _EMAIL.search(arg) is None:
            raise _FieldError(f"{field.get('name')}: please fill in email address in the "
                              "form 'User <email@email.com>'")
    elif type_ == "list":
        choices = field.get("choices") or []
        if field.get("strict", True) and arg not in choices:
            raise _FieldError(f"'{arg}' does not belong to list of available choices "
                              f"'{choices!r}'")
    return arg


def _codebase_of(field: Mapping[str, Any]) -> str | None:
    """The codebase of a codebase group (None for any other field)."""
    if field.get("type") != "nested" or not isinstance(field.get("fields"), list):
        return None
    if "_codebase" in field:
        return str(field["_codebase"])
    names = {f.get("name") for f in field["fields"] if isinstance(f, Mapping)}
    if names and names <= {*_STAMP_KEYS, "patch"}:  # an all_fields given raw
        return str(field.get("name") or "")
    return None


def _collect(field: Mapping[str, Any], kwargs: Mapping[str, list[Any]],
             properties: dict[str, Any], stamps: dict[str, dict[str, Any]],
             errors: dict[str, str]) -> None:
    """One forced parameter into ``properties`` (or ``stamps`` for a codebase group);
    its errors into ``errors`` by field ``fullName``, as upstream's collector does."""
    if field.get("type") == "nested" and isinstance(field.get("fields"), list):
        children: dict[str, Any] = {}
        for child in field["fields"]:
            if isinstance(child, Mapping):
                _collect(child, kwargs, children, stamps, errors)
        codebase = _codebase_of(field)
        if codebase is not None:
            stamps[codebase] = children
        elif field.get("name"):
            properties.setdefault(field["name"], {}).update(children)
        else:
            properties.update(children)
        return
    try:
        properties[str(field.get("name"))] = _field_value(field, kwargs)
    except _FieldError as e:
        errors[str(field.get("fullName"))] = str(e)


def _roles(all_fields: list[Any]) -> tuple[tuple[Mapping[str, Any], ...], list[Any]]:
    """(username, reason, priority) fields and the forced parameters that follow them.
    Upstream's all_fields always open with a nameless group of those three."""
    if all_fields:
        first = all_fields[0]
        if (isinstance(first, Mapping) and first.get("type") == "nested"
                and not first.get("name") and _codebase_of(first) is None
                and isinstance(first.get("fields"), list) and len(first["fields"]) == 3
                and all(isinstance(f, Mapping) for f in first["fields"])):
            return tuple(first["fields"]), list(all_fields[1:])
    return _DEFAULT_ROLES, list(all_fields)


def _builder_names(entry: Mapping[str, Any], params_: Mapping[str, Any]) -> list[str] | None:
    """Upstream's computeBuilderNames without the database: the names chosen by
    ``builderNames``, or None when ``builderid`` (or nothing) decides."""
    if "builderNames" not in params_ or params_["builderNames"] is None:
        return None
    names = params_["builderNames"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidParams({"builderNames": "must be a list of builder names"})
    return sorted(set(names).intersection(entry["builder_names"]))


class Forced:
    """A checked force call: what to write (see :func:`force`)."""

    def __init__(self, entry: Mapping[str, Any], params_: Mapping[str, Any]) -> None:
        self.entry = entry
        self.scheduler: str = entry["name"]
        self.builder_names = _builder_names(entry, params_)
        self.builderid = (None if self.builder_names is not None
                          else params.integer(params_, "builderid", nullable=True,
                                         digits=True))
        if self.builder_names is not None and not self.builder_names:
            raise InvalidParams({"builderNames": "builderNames not specified or not "
                                 "supported"})
        # upstream's form values are lists: a scalar is a list of one
        kwargs = {k: (v if isinstance(v, list) else [v]) for k, v in params_.items()
                  if k not in ("owner", "builderNames", "builderid")}
        (username, reason, priority), forced = _roles(list(entry.get("all_fields") or []))
        errors: dict[str, str] = {}

        def value(field: Mapping[str, Any]) -> Any:
            try:
                return _field_value(field, kwargs)
            except _FieldError as e:
                errors[str(field.get("fullName"))] = str(e)
                return None

        self.reason = value(reason)
        owner = params_.get("owner")
        if owner is None or owner == "anonymous":
            owner = value(username)
        self.owner = owner
        self.priority = value(priority)
        if (self.priority is not None and not isinstance(self.priority, bool)
                and isinstance(self.priority, int)
                and not _INT32[0] <= self.priority <= _INT32[1]):
            errors.setdefault(str(priority.get("fullName")),
                              f"{priority.get('label')}: is out of range")
        form: dict[str, Any] = {}
        stamps: dict[str, dict[str, Any]] = {}
        for field in forced:
            if isinstance(field, Mapping):
                _collect(field, kwargs, form, stamps, errors)
        if errors:
            raise InvalidParams(errors, as_object=True)
        # properties in upstream's order of precedence: the form, then reason and
        # owner, then the scheduler's own
        self.properties: dict[str, tuple[Any, str]] = {
            name: (v, FORM_SOURCE) for name, v in form.items()}
        self.properties["reason"] = (self.reason, FORM_SOURCE)
        self.properties["owner"] = (self.owner, FORM_SOURCE)
        self.properties["scheduler"] = (self.scheduler, "Scheduler")
        template = entry.get("reason_string") or DEFAULT_REASON_STRING
        self.buildset_reason = template % {"owner": self.owner, "reason": self.reason}
        self._check_reason(username, reason)
        self.sourcestamps = [self._stamp(cb, values) for cb, values in stamps.items()] or [
            self._stamp("", {})]

    def _check_reason(self, username: Mapping[str, Any], reason: Mapping[str, Any]) -> None:
        """The buildset's reason is made of the owner and the reason: a value that
        cannot be stored there is an error of the field it came from (upstream: a
        database error, or a reason longer than its column on SQLite)."""
        limit = getattr(s.buildsets.c.reason.type, "length", None)
        fields = [(username, self.owner), (reason, self.reason)]
        errors: dict[str, str] = {}
        for field, value in fields:
            if isinstance(value, str) and "\0" in value:
                errors[str(field.get("fullName"))] = (f"{field.get('label')}: must not "
                                                       "contain NUL characters")
        if not errors and limit is not None and len(self.buildset_reason) > limit:
            # named by the longer of the two
            field, _ = max(fields, key=lambda fv: len(str(fv[1] or "")))
            errors[str(field.get("fullName"))] = (
                f"{field.get('label')}: too long: the build's reason would be longer than "
                f"{limit} characters")
        if errors:
            raise InvalidParams(errors, as_object=True)

    @staticmethod
    def _stamp(codebase: str, values: Mapping[str, Any]) -> dict[str, Any]:
        # upstream's addBuildsetForSourceStampsWithDefaults: '' where the form has none
        stamp: dict[str, Any] = {"codebase": codebase, "repository": "", "branch": "",
                                 "revision": "", "project": ""}
        stamp.update({k: values[k] for k in _STAMP_KEYS if k in values})
        patch = values.get("patch")
        if isinstance(patch, Mapping):
            stamp.update({f"patch_{k}": patch[k] for k in _PATCH_KEYS if k in patch})
        return stamp

    def builderids_in(self, write: Write) -> list[int]:
        """The chosen builders' ids, in id order (upstream lists them from the builders
        endpoint). InvalidParams for a builder without a row or not of this scheduler."""
        b = s.builders
        if self.builderid is not None:
            name = write.conn.execute(sa.select(b.c.name).where(b.c.id == self.builderid)
                                      ).scalar()
            if name is None:
                raise InvalidParams({"builderid": f"no builder with builderid "
                                     f"{self.builderid}"})
            if name not in self.entry["builder_names"]:
                raise InvalidParams({"builderid": f"builder {name!r} is not one of force "
                                     f"scheduler {self.scheduler!r}'s builders"})
            return [self.builderid]
        names = self.builder_names
        if names is None:
            names = list(self.entry["builder_names"])
        if not names:
            raise InvalidParams({"builderNames": "builderNames not specified or not "
                                 "supported"})
        rows = dict(write.conn.execute(sa.select(b.c.name, b.c.id)
                                       .where(b.c.name.in_(names))).all())
        missing = [n for n in names if n not in rows]
        if missing:
            raise InvalidParams({"builderNames": "no builder named "
                                 + ", ".join(repr(n) for n in missing)
                                 + " in the database"})
        return sorted(rows.values())

    def write_in(self, write: Write) -> tuple[int, dict[int, int]]:
        """The source stamps, the buildset and its requests, in ``write``'s transaction."""
        builderids = self.builderids_in(write)
        ssids = [find_or_create_sourcestamp(write, **stamp) for stamp in self.sourcestamps]
        return add_buildset_in(write, scheduler=self.scheduler, sourcestamps=ssids,
                               reason=self.buildset_reason, properties=self.properties,
                               builderids=builderids, priority=self.priority)


async def force(ctx: Context, entry: Mapping[str, Any], params_: Mapping[str, Any]
                ) -> tuple[int, dict[int, int]]:
    """Force a build with configured force scheduler ``entry`` (upstream's ``force``):
    ``(bsid, {builderid: brid})``. InvalidParams (400) for unusable values: the form's,
    with upstream's object of messages by field name."""
    forced = Forced(entry, params_)
    return await ctx.connector.transact(forced.write_in, user=ctx.user)


# -- the resource type ---------------------------------------------------------------------

def with_enabled(conn: sa.Connection, entities: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """``entities`` with ``enabled`` as their ``schedulers`` rows say (as upstream's
    master reads it when it starts a scheduler, and the ``enable`` action changes it);
    the configuration's value for one without a row (a database the server could not
    write at start)."""
    if not entities:
        return entities
    sch = s.schedulers
    rows = conn.execute(sa.select(sch.c.name_hash, sch.c.enabled).where(
        sch.c.name_hash.in_([name_hash(e["name"]) for e in entities]))).all()
    stored = {digest: bool(enabled) for digest, enabled in rows}
    for entity in entities:
        enabled = stored.get(name_hash(entity["name"]))
        if enabled is not None:
            entity["enabled"] = enabled
    return entities


def _builder_name(conn: sa.Connection, builderid: int) -> str | None:
    b = s.builders
    return conn.execute(sa.select(b.c.name).where(b.c.id == builderid)).scalar()


class ForceSchedulerEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = ("/forceschedulers/i:schedulername",)

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        for entity in configured(ctx):
            if entity["name"] == kwargs["schedulername"]:
                return spec.project((await ctx.run(with_enabled, [entity]))[0])
        return None

    async def action_force(self, ctx: Context, params_: Mapping[str, Any],
                           kwargs: Mapping[str, Any]) -> Any:
        """``force``: upstream's parameters (``builderNames`` or ``builderid``, one key
        per field's ``fullName``); result ``[bsid, {"<builderid>": brid}]``."""
        entry = find_configured(ctx, kwargs["schedulername"])
        if entry is None:
            raise ctx.not_found()
        bsid, brids = await force(ctx, entry, params_)
        return [bsid, {str(k): v for k, v in brids.items()}]


class ForceSchedulersEndpoint(Endpoint):
    patterns = (
        "/forceschedulers",
        # upstream's id here is untyped; ours is a number (COMPAT #23)
        "/builders/n:builderid/forceschedulers",
    )
    root_link = "forceschedulers"

    async def get(self, ctx: Context, spec: ResultSpec, kwargs: Mapping[str, Any]) -> Any:
        entities = configured(ctx)
        if "builderid" in kwargs:
            name = await ctx.run(_builder_name, kwargs["builderid"])
            if name is None:
                raise ctx.not_found()
            entities = [e for e in entities if name in e["builder_names"]]
        entities = await ctx.run(with_enabled, entities)
        # Without an order, the configuration's order is kept (as upstream lists them).
        return apply_in_python(self.rtype, spec, entities, sort=bool(spec.order))


class ForceScheduler(ResourceType):
    name = "forcescheduler"
    plural = "forceschedulers"
    fields = (
        Field("name", t.Identifier(50)),
        Field("button_name", t.String()),
        Field("label", t.String()),
        Field("builder_names", t.List(t.Identifier(50))),
        Field("enabled", t.Boolean()),
        Field("all_fields", t.List(t.JsonObject())),
    )
    key = ("name",)
    endpoints = (ForceSchedulerEndpoint, ForceSchedulersEndpoint)
    actions = ("force",)


RESOURCE_TYPES = (ForceScheduler,)
