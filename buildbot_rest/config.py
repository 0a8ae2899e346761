# -*- test-case-name: tests.test_config -*-
"""The server's configuration: defaults, a TOML file, and command-line overrides."""

from __future__ import annotations

import dataclasses
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


class ConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the culprit."""


#: The keys of a ``[[forceschedulers]]`` table, with the type each must have.
_FORCESCHEDULER_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "button_name": (str,),
    "label": (str,),
    "builder_names": (list,),
    "enabled": (bool,),
    "all_fields": (list,),
}


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
    #: force schedulers, completed with upstream's defaults here: the data API serves
    #: them as they are
    forceschedulers: list[dict[str, Any]] = field(default_factory=list)
    #: whether ``base_url`` was derived from ``port`` rather than given
    base_url_derived: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.settings().items():
            _check(name, value, "")
        if self.port == "":
            object.__setattr__(self, "port", None)
        object.__setattr__(self, "forceschedulers",
                           [_forcescheduler(i, fs) for i, fs in
                            enumerate(self.forceschedulers)])
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
    "forceschedulers": ((list,), "an array of tables"),
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
    if key == "access_log" and not value:
        raise ConfigError(f"{where}'access_log' must be \"-\", \"off\" or a file path, "
                          "not empty")
    if key == "db_url" and not value:
        raise ConfigError(f"{where}'db_url' must not be empty")
    if key == "port" and isinstance(value, str) and value.isdigit():
        raise ConfigError(f"{where}'port' must be a Twisted endpoint, not a bare number: "
                          f"did you mean \"tcp:{value}\"?")
    if key == "base_url" and value is not None and not re.match(r"https?://[^/]", str(value)):
        raise ConfigError(f"{where}'base_url' must be an http:// or https:// URL, "
                          f"not {value!r}")


def _forcescheduler(index: int, value: Any) -> dict[str, Any]:
    """A force scheduler table checked and completed with upstream's defaults."""
    where = f"forceschedulers[{index}]"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, not {_type_name(value)}")
    for key, item in value.items():
        if key not in _FORCESCHEDULER_KEYS:
            raise ConfigError(f"unknown key {where}.{key} (known keys: "
                              f"{', '.join(_FORCESCHEDULER_KEYS)})")
        if not isinstance(item, _FORCESCHEDULER_KEYS[key]):
            raise ConfigError(f"{where}.{key} must be "
                              f"{_type_name(_FORCESCHEDULER_KEYS[key][0]())}, "
                              f"not {_type_name(item)}")
    name = value.get("name")
    if not name:
        raise ConfigError(f"{where}.name is required")
    builder_names = value.get("builder_names", [])
    if not all(isinstance(b, str) for b in builder_names):
        raise ConfigError(f"{where}.builder_names must be an array of strings")
    all_fields = value.get("all_fields", [])
    if not all(isinstance(f, dict) for f in all_fields):
        raise ConfigError(f"{where}.all_fields must be an array of tables")
    # Upstream: the label and the button name default to the scheduler's name.
    return {
        "name": name,
        "button_name": value.get("button_name") or name,
        "label": value.get("label", name),
        "builder_names": list(builder_names),
        "enabled": value.get("enabled", True),
        "all_fields": [dict(f) for f in all_fields],
    }
