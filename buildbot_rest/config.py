# -*- test-case-name: tests.test_config -*-
"""The server's configuration: defaults, a TOML file, and command-line overrides."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DB_URL = "sqlite:///state.sqlite"
DEFAULT_PORT = "tcp:8010:interface=127.0.0.1"
DEFAULT_POOL_SIZE = 4
#: seconds a stop waits for the answers in flight before it cuts them
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
#: seconds the server waits for a client: a whole request, the next one, or taking its answer
DEFAULT_CLIENT_TIMEOUT = 60.0
#: seconds between keepalive pings on /ws (and comments on /sse)
DEFAULT_PING_INTERVAL = 30.0
#: events kept for clients that resume (/ws ``since``, /sse ``Last-Event-ID``)
DEFAULT_RESUME_WINDOW = 10000
#: bytes of events a /ws or /sse client may leave unread before it is disconnected
DEFAULT_LIVE_BUFFER = 4 << 20


#: the log compression methods, by upstream's names (``logCompressionMethod``)
LOG_COMPRESSION_METHODS = ("raw", "gz", "bz2", "lz4", "zstd", "br")


class ConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the culprit."""


@dataclass(frozen=True)
class Config:
    """Everything the server needs to run.

    ``base_url`` left as ``None`` is derived from ``port``; ``port`` set to ``None``
    means "do not listen" (a program that embeds the server serves its resource itself).
    """

    db_url: str = DEFAULT_DB_URL
    port: str | None = DEFAULT_PORT
    base_url: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    demo: bool = False
    #: whether the server creates a missing database at start: the SQLite file, and
    #: Buildbot's schema in an empty database (``demo`` implies it). Without it such a
    #: database is refused, so that a mistyped URL does not serve an empty API.
    create: bool = False
    #: where the standalone server writes one line per request: "-" (its own log),
    #: "off", or the path of a file (appended to)
    access_log: str = "-"
    #: processes answering on the standalone server's port (a tcp: or tcp6: one)
    workers: int = 1
    #: seconds a stop waits for the answers in flight (then it cuts their connections)
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    #: seconds the standalone server waits for a client: for a request to arrive whole,
    #: for the next request on an idle connection, and for it to take some of its answer
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    #: how the update method ``appendLog`` compresses new log chunks (upstream's
    #: ``logCompressionMethod``): "raw", "gz", "bz2", "lz4", "zstd" or "br"; a chunk is
    #: stored compressed only when that makes it smaller
    log_compression_method: str = "zstd"
    #: force schedulers, completed with upstream's defaults here: the data API serves
    #: them as they are
    forceschedulers: list[dict[str, Any]] = field(default_factory=list)
    #: seconds between keepalive pings on /ws and comment lines on /sse (upstream's
    #: ``ws_ping_interval``, whose default is off); 0 turns them off
    ping_interval: float = DEFAULT_PING_INTERVAL
    #: how many of the latest events are kept for clients that resume (/ws ``since``,
    #: /sse ``Last-Event-ID``); 0 keeps none
    resume_window: int = DEFAULT_RESUME_WINDOW
    #: bytes of events a /ws or /sse client may leave unread; one that falls further
    #: behind is disconnected (/ws: close code 1008)
    live_buffer: int = DEFAULT_LIVE_BUFFER
    #: the web UI's title and the link it points to (upstream's ``title``, ``titleURL``)
    title: str = "Buildbot"
    title_url: str = "http://buildbot.net/"
    #: whether ``/`` serves upstream's web UI when ``buildbot_rest[ui]`` is installed
    ui: bool = True
    #: the UI's setting defaults (upstream's ``www["ui_default_config"]``):
    #: ``{"Builders.buildFetchLimit": 500}``
    ui_default_config: dict[str, Any] = field(default_factory=dict)
    #: authentication: the ``[auth]`` table (backend, users, role matchers, session
    #: cookie, rate limits), checked by :func:`buildbot_rest.auth.settings.parse`;
    #: empty: no authentication (everyone anonymous, bearer tokens still accepted)
    auth: dict[str, Any] = field(default_factory=dict)
    #: authorization: the ``[authz]`` table (ordered allow rules with roles); empty:
    #: everyone may read and control everything (upstream's default ``Authz()``)
    authz: dict[str, Any] = field(default_factory=dict)
    #: origins (fnmatch patterns, upstream's ``allowed_origins``) whose pages may call the
    #: API with the user's credentials (CORS); the server's own origin always may
    allowed_origins: list[str] = field(default_factory=list)
    #: whether ``base_url`` was derived from ``port`` rather than given
    base_url_derived: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.settings().items():
            _check(name, value, "")
        if self.port == "":
            object.__setattr__(self, "port", None)
        forceschedulers = [_forcescheduler(i, fs) for i, fs in
                           enumerate(self.forceschedulers)]
        names: set[str] = set()
        for i, fs in enumerate(forceschedulers):
            # (a scheduler's name is its identity: its row, its path, its form)
            if fs["name"] in names:
                raise ConfigError(f"forceschedulers[{i}].name {fs['name']!r} is taken by "
                                  f"an earlier force scheduler")
            names.add(fs["name"])
        object.__setattr__(self, "forceschedulers", forceschedulers)
        from buildbot_rest.auth.settings import parse as parse_auth
        parse_auth(self)  # (checks [auth], [authz] and allowed_origins: ConfigError)
        if self.base_url is None:
            object.__setattr__(self, "base_url", derive_base_url(self.port))
            object.__setattr__(self, "base_url_derived", True)
        elif not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")

    def settings(self) -> dict[str, Any]:
        """Every setting, as ``Config(**settings)`` takes them (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Config:
        """Read a TOML file; keyword ``overrides`` that are not ``None`` win over it."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read configuration file {path}: "
                              f"{e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r} (known keys: "
                                  f"{', '.join(sorted(known))})")
            _check(key, value, f"{path}: ")
        try:
            return cls(**data).merged(**overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def merged(self, **overrides: Any) -> Config:
        """A copy with the ``overrides`` that are not ``None`` applied.

        A derived ``base_url`` is derived again from the new ``port``."""
        settings = self.settings()
        if self.base_url_derived:
            settings["base_url"] = None
        for key, value in overrides.items():
            if key not in settings:
                raise ConfigError(f"unknown setting {key!r}")
            if value is not None:
                settings[key] = value
        return type(self)(**settings)


def derive_base_url(port: str | None) -> str:
    """``http://localhost:<n>/`` for a ``tcp:<n>`` port (``https`` for ``ssl:``)."""
    number = 8010
    scheme = "http"
    if port:
        kind, _, rest = port.partition(":")
        match = re.match(r"(?:port=)?(\d+)(?::|$)", rest)
        if match is None:
            match = re.search(r"(?:^|:)port=(\d+)(?::|$)", rest)
        if kind in ("tcp", "tcp6", "ssl") and match:
            number = int(match.group(1))
        if kind == "ssl":
            scheme = "https"
    default = {"http": 80, "https": 443}[scheme]
    host = "localhost" if number == default else f"localhost:{number}"
    return f"{scheme}://{host}/"


_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\Z")

_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "db_url": ((str,), "a string"),
    "port": ((str, type(None)), "a string"),
    "base_url": ((str, type(None)), "a string"),
    "pool_size": ((int,), "an integer"),
    "demo": ((bool,), "a boolean"),
    "create": ((bool,), "a boolean"),
    "access_log": ((str,), "a string"),
    "workers": ((int,), "an integer"),
    "shutdown_timeout": ((int, float), "a number of seconds"),
    "client_timeout": ((int, float), "a number of seconds"),
    "log_compression_method": ((str,), "a string"),
    "forceschedulers": ((list,), "an array of tables"),
    "ping_interval": ((int, float), "a number of seconds"),
    "resume_window": ((int,), "an integer"),
    "live_buffer": ((int,), "a number of bytes"),
    "title": ((str,), "a string"),
    "title_url": ((str,), "a string"),
    "ui": ((bool,), "a boolean"),
    "ui_default_config": ((dict,), "a table"),
    "auth": ((dict,), "a table"),
    "authz": ((dict,), "a table"),
    "allowed_origins": ((list,), "an array of strings"),
}


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _check(key: str, value: Any, where: str) -> None:
    types, wanted = _TYPES[key]
    # bool is an int in Python, but `pool_size = true` is a mistake.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ConfigError(f"{where}{key!r} must be {wanted}, not {_type_name(value)}")
    if key in ("pool_size", "workers") and isinstance(value, int) and value < 1:
        raise ConfigError(f"{where}'{key}' must be at least 1, not {value}")
    # (a timeout bounds a wait: never infinite, nor NaN)
    if (key == "shutdown_timeout" and isinstance(value, int | float)
            and not 0 <= value < float("inf")):
        raise ConfigError(f"{where}'shutdown_timeout' must be a finite number of seconds "
                          f"of at least 0, not {value}")
    if (key == "client_timeout" and isinstance(value, int | float)
            and not 0 < value < float("inf")):
        raise ConfigError(f"{where}'client_timeout' must be a finite number of seconds "
                          f"more than 0, not {value}")
    if (key == "ping_interval" and isinstance(value, int | float)
            and not 0 <= value < float("inf")):
        raise ConfigError(f"{where}'ping_interval' must be a finite number of seconds "
                          f"of at least 0 (0: no pings), not {value}")
    if key in ("resume_window", "live_buffer") and isinstance(value, int) and value < 0:
        raise ConfigError(f"{where}'{key}' must be at least 0, not {value}")
    if key == "live_buffer" and isinstance(value, int) and 0 <= value < 1024:
        raise ConfigError(f"{where}'live_buffer' must be at least 1024 bytes, not {value}")
    if key == "ui_default_config" and isinstance(value, dict):
        for name, setting in value.items():
            # (the UI reads "Group.name" keys, and logs an error on each page for others)
            if isinstance(setting, dict):
                raise ConfigError(f"{where}ui_default_config.{name} must be a string, a "
                                  f"finite number or a boolean, not a table (quote a "
                                  f"dotted name: \"Builders.buildFetchLimit\" = 500)")
            if not _SETTING_NAME.match(name):
                raise ConfigError(f"{where}ui_default_config: {name!r} is not a setting "
                                  f"name of the form \"Group.name\" "
                                  f"(\"Builders.buildFetchLimit\")")
            if not isinstance(setting, (str, int, float)) or (
                    isinstance(setting, float) and not math.isfinite(setting)):
                raise ConfigError(f"{where}ui_default_config.{name} must be a string, a "
                                  f"finite number or a boolean, not "
                                  f"{_type_name(setting)}")
    if key == "access_log" and not value:
        raise ConfigError(f"{where}'access_log' must be \"-\", \"off\" or a file path, "
                          "not empty")
    if key == "log_compression_method" and value not in LOG_COMPRESSION_METHODS:
        raise ConfigError(f"{where}'log_compression_method' must be one of "
                          f"{', '.join(LOG_COMPRESSION_METHODS)}, not {value!r}")
    if key == "db_url" and not value:
        raise ConfigError(f"{where}'db_url' must not be empty")
    if key == "port" and isinstance(value, str) and value.isdigit():
        raise ConfigError(f"{where}'port' must be a Twisted endpoint, not a bare number: "
                          f"did you mean \"tcp:{value}\"?")
    if key == "base_url" and value is not None and not re.match(r"https?://[^/]", str(value)):
        raise ConfigError(f"{where}'base_url' must be an http:// or https:// URL, "
                          f"not {value!r}")


# -- force schedulers ------------------------------------------------------------------------
#
# A ``[[forceschedulers]]`` table is either *declared* (its fields described with
# ``reason``, ``username``, ``priority``, ``codebases`` and ``parameters``) or *raw* (an
# ``all_fields`` array served as given: the older form). A declared one is compiled here
# into the ``all_fields`` that upstream's ForceScheduler serialises for the same
# declaration, so that the entry is raw afterwards (and compiling again changes nothing).
# What the form does not serialise but forcing needs is kept in ``_``-keys of the fields
# (``_regex``: the pattern, which upstream serialises as null; ``_codebase``: the codebase
# of a codebase group); the data API never serves those keys.

#: upstream's identifier (a force scheduler's name)
_IDENTIFIER = re.compile("^[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*$")

#: parameter names upstream reserves for the force call itself
RESERVED_PARAMETER_NAMES = ("owner", "builderNames", "builderid")

_FS_COMMON: dict[str, type] = {
    "name": str, "button_name": str, "label": str, "builder_names": list, "enabled": bool,
    "reason_string": str,
}
_FS_RAW: dict[str, type] = {"all_fields": list}
_FS_DECLARED: dict[str, type] = {
    "reason": dict, "username": dict, "priority": dict, "codebases": list, "parameters": list,
}

#: for each parameter kind: upstream's ``type``, the attributes its class adds to (or
#: changes from) BaseParameter's, and the options a table of that kind may set
_KINDS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "string": ("text", {"size": 10}, ("size",)),
    "text": ("textarea", {"size": 10, "cols": 80, "rows": 20}, ("size", "cols", "rows")),
    "int": ("int", {"size": 10, "default": 0}, ("size",)),
    "boolean": ("bool", {}, ()),
    "choice": ("list", {"choices": [], "strict": True}, ("choices", "strict", "multiple")),
    "fixed": ("fixed", {"hide": True}, ()),
    "username": ("username", {"size": 30, "need_email": True, "label": "Your name:"},
                 ("size", "need_email")),
}
_PARAM_COMMON = ("kind", "name", "label", "tablabel", "default", "required", "regex", "hide",
                 "maxsize", "tooltip")
_PARAM_TYPES: dict[str, type] = {
    "kind": str, "name": str, "label": str, "tablabel": str, "required": bool, "regex": str,
    "hide": bool, "maxsize": int, "tooltip": str, "size": int, "cols": int, "rows": int,
    "choices": list, "strict": bool, "multiple": bool, "need_email": bool,
}
_CODEBASE_KEYS: dict[str, tuple[type, ...]] = {
    "codebase": (str,), "name": (str,), "label": (str,), "hide": (bool,),
    "columns": (int,), "layout": (str,),
    "branch": (str, bool, dict), "revision": (str, bool, dict),
    "repository": (str, bool, dict), "project": (str, bool, dict),
}


def _keys_check(where: str, table: Any, allowed: dict[str, Any] | tuple[str, ...]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {_type_name(table)}")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {where}.{key} (known keys: "
                              f"{', '.join(allowed)})")


def _typed(where: str, value: Any, wanted: type | tuple[type, ...]) -> None:
    types = wanted if isinstance(wanted, tuple) else (wanted,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(_type_name(t()) for t in types)
        raise ConfigError(f"{where} must be {names}, not {_type_name(value)}")


def _full_name(parent: str | None, name: str) -> str | None:
    # upstream's fullName: '<parent>_<name>', or whichever of the two is set
    if parent and name:
        return f"{parent}_{name}"
    return name or parent


def _parameter(where: str, table: Any, parent: str | None, *, kind: str = "string",
               name: str | None = None, defaults: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """One declared parameter as upstream's ``getSpec`` serialises it (plus ``_regex``)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {_type_name(table)}")
    kind = table.get("kind", kind)
    _typed(f"{where}.kind", kind, str)
    if kind not in _KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    type_, attrs, options = _KINDS[kind]
    _keys_check(where, table, _PARAM_COMMON + options)
    for key, value in table.items():
        if key in _PARAM_TYPES:
            _typed(f"{where}.{key}", value, _PARAM_TYPES[key])
        if key in ("maxsize", "size", "cols", "rows") and value < 0:
            raise ConfigError(f"{where}.{key} must be at least 0, not {value}")
    name = table.get("name", name)
    if not name:
        raise ConfigError(f"{where}.name is required")
    if name in RESERVED_PARAMETER_NAMES:
        raise ConfigError(f"{where}.name {name!r} is reserved (owner, builderNames and "
                          "builderid are the force call's own)")
    if "choices" in table and not all(isinstance(c, str) for c in table["choices"]):
        raise ConfigError(f"{where}.choices must be an array of strings")
    spec: dict[str, Any] = {
        "name": name, "label": name, "type": type_, "default": "", "required": False,
        "multiple": False, "regex": None, "hide": False, "maxsize": None,
        "autopopulate": None, "tooltip": "",
    }
    spec.update(attrs)
    spec.update(defaults or {})
    spec.update({k: v for k, v in table.items() if k not in ("kind", "regex")})
    spec["fullName"] = _full_name(parent, name)
    spec.setdefault("tablabel", spec["label"])
    if "tablabel" not in table and "label" in table:
        spec["tablabel"] = table["label"]
    if "regex" in table:
        try:
            re.compile(table["regex"])
        except re.error as e:
            raise ConfigError(f"{where}.regex is not a valid regular expression: {e}") from None
        # upstream serialises the compiled pattern as null; forcing still checks it
        spec["_regex"] = table["regex"]
    _check_default(where, kind, spec)
    return dict(sorted(spec.items()))


def _check_default(where: str, kind: str, spec: dict[str, Any]) -> None:
    default = spec["default"]
    if kind == "int":
        _typed(f"{where}.default", default, int)
    elif kind == "boolean":
        if default != "":
            _typed(f"{where}.default", default, bool)
    elif kind == "choice" and spec["multiple"]:
        if not isinstance(default, list) or not all(isinstance(d, str) for d in default):
            raise ConfigError(f"{where}.default must be an array of strings (multiple = true)")
    else:
        _typed(f"{where}.default", default, str)


def _nested(name: str, label: str, fields: list[dict[str, Any]], *, hide: bool = False,
            columns: int | None = None, layout: str = "vertical") -> dict[str, Any]:
    """Upstream's NestedParameter spec around ``fields``."""
    if columns is None:
        columns = 2 if len([f for f in fields if not f["hide"]]) >= 4 else 1
    return dict(sorted({
        "name": name, "fullName": name or None, "label": label, "tablabel": label,
        "type": "nested", "default": "", "required": False, "multiple": False,
        "regex": None, "hide": hide, "maxsize": None, "autopopulate": None, "tooltip": "",
        "layout": layout, "columns": columns, "fields": fields,
    }.items()))


def _codebase(where: str, value: Any) -> dict[str, Any]:
    """A codebase group as upstream's CodebaseParameter serialises it (plus ``_codebase``)."""
    if isinstance(value, str):
        value = {"codebase": value}
    _keys_check(where, value, tuple(_CODEBASE_KEYS))
    for key, item in value.items():
        _typed(f"{where}.{key}", item, _CODEBASE_KEYS[key])
    if "codebase" not in value:
        raise ConfigError(f"{where}.codebase is required (\"\" for the default codebase)")
    codebase = value["codebase"]
    name = value.get("name") or codebase
    label = value.get("label")
    if label is None:
        label = f"Codebase: {codebase}" if codebase else name
    columns = value.get("columns")
    if columns is not None and not 1 <= columns <= 4:
        raise ConfigError(f"{where}.columns must be from 1 to 4, not {columns}")
    fields = []
    for key in ("branch", "project", "repository", "revision"):  # upstream sorts them
        item = value.get(key, {"label": key.capitalize() + ":"})
        if item is False:
            continue
        if item is True:
            raise ConfigError(f"{where}.{key} must be a table, a string (a fixed value) "
                              "or false (no field)")
        if isinstance(item, str):
            item = {"kind": "fixed", "default": item}
        if item.get("name", key) != key:
            raise ConfigError(f"{where}.{key}.name must be {key!r} (or left out)")
        fields.append(_parameter(f"{where}.{key}", item, name or None, name=key))
    group = _nested(name, label, fields, hide=value.get("hide", False), columns=columns,
                    layout=value.get("layout", "vertical"))
    group["_codebase"] = codebase
    return group


def _declared_fields(where: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    """``all_fields`` for a declared force scheduler, in upstream's order: a nameless
    group of username, reason and priority; the codebases; the parameters."""
    username = _parameter(f"{where}.username", value.get("username", {}), None,
                          kind="username", name="username")
    if "reason" in value:
        reason = _parameter(f"{where}.reason", value["reason"], None, name="reason")
    else:
        reason = _parameter(f"{where}.reason", {}, None, name="reason",
                            defaults={"default": "force build", "size": 20})
    priority_table = value.get("priority", {})
    if isinstance(priority_table, dict) and priority_table.get("kind", "int") != "int":
        raise ConfigError(f"{where}.priority.kind must be 'int'")
    priority = _parameter(f"{where}.priority", priority_table, None, kind="int",
                          name="priority")
    fields = [_nested("", "", [username, reason, priority])]
    codebases = value.get("codebases", [""])
    if not codebases:
        raise ConfigError(f"{where}.codebases cannot be empty (leave it out for the "
                          "default codebase \"\")")
    seen: dict[str, str] = {}
    for i, item in enumerate(codebases):
        group = _codebase(f"{where}.codebases[{i}]", item)
        if group["_codebase"] in seen:
            raise ConfigError(f"{where}.codebases[{i}]: codebase {group['_codebase']!r} "
                              "is declared twice")
        seen[group["_codebase"]] = ""
        fields.append(group)
    for i, item in enumerate(value.get("parameters", [])):
        fields.append(_parameter(f"{where}.parameters[{i}]", item, None))
    names: set[str] = set()
    for field_ in _leaves(fields):
        if field_["fullName"] in names:
            raise ConfigError(f"{where}: two fields are named {field_['fullName']!r} "
                              "(a form sends one value per name)")
        names.add(field_["fullName"])
    return fields


def _leaves(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in fields:
        if f.get("type") == "nested" and isinstance(f.get("fields"), list):
            out.extend(_leaves(f["fields"]))
        else:
            out.append(f)
    return out


def _raw_fields(where: str, fields: list[Any]) -> list[dict[str, Any]]:
    for i, f in enumerate(fields):
        if not isinstance(f, dict):
            raise ConfigError(f"{where} must be an array of tables")
        nested = f.get("fields")
        if nested is not None:
            if not isinstance(nested, list):
                raise ConfigError(f"{where}[{i}].fields must be an array of tables")
            _raw_fields(f"{where}[{i}].fields", nested)
    return copy.deepcopy(fields)


def _forcescheduler(index: int, value: Any) -> dict[str, Any]:
    """A force scheduler table checked and completed with upstream's defaults."""
    where = f"forceschedulers[{index}]"
    known = {**_FS_COMMON, **_FS_RAW, **_FS_DECLARED}
    _keys_check(where, value, tuple(known))
    for key, item in value.items():
        _typed(f"{where}.{key}", item, known[key])
    if "all_fields" in value:
        mixed = [k for k in _FS_DECLARED if k in value]
        if mixed:
            raise ConfigError(f"{where}: all_fields cannot go with {', '.join(mixed)} "
                              "(give the fields one way)")
    name = value.get("name")
    if not name:
        raise ConfigError(f"{where}.name is required")
    if len(name) > 50 or not _IDENTIFIER.match(name):
        raise ConfigError(f"{where}.name must be an identifier of at most 50 characters "
                          f"(letters, digits, '_' and '-'), not {name!r}")
    builder_names = value.get("builder_names", [])
    if not all(isinstance(b, str) for b in builder_names):
        raise ConfigError(f"{where}.builder_names must be an array of strings")
    if "all_fields" in value:
        all_fields = _raw_fields(f"{where}.all_fields", value["all_fields"])
    else:
        all_fields = _declared_fields(where, value)
    reason_string = value.get("reason_string")
    if reason_string is not None:
        try:
            reason_string % {"owner": "", "reason": ""}
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{where}.reason_string must use only %(owner)s and "
                              f"%(reason)s: {e}") from None
    # Upstream: the label and the button name default to the scheduler's name.
    entry = {
        "name": name,
        "button_name": value.get("button_name") or name,
        "label": value.get("label", name),
        "builder_names": list(builder_names),
        "enabled": value.get("enabled", True),
        "all_fields": all_fields,
    }
    if reason_string is not None:
        entry["reason_string"] = reason_string
    return entry
