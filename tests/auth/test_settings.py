"""The auth part of the configuration: ``allowed_origins``, and ``[auth]`` and
``[authz]`` checked when the configuration is made (a TOML file names itself in the
error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildbot_rest.auth.settings import parse
from buildbot_rest.config import Config, ConfigError


def test_allowed_origins_are_lowercased_and_checked() -> None:
    settings = parse(Config(allowed_origins=[" HTTPS://Dash.Example.org/ ",
                                             "https://*.example.net"]))
    assert settings.allowed_origins == ("https://dash.example.org", "https://*.example.net")
    for bad in ([""], ["  "], [3]):
        with pytest.raises(ConfigError, match=r"allowed_origins\[0\]"):
            Config(allowed_origins=bad)  # type: ignore[arg-type]


def test_defaults_are_no_auth_and_no_rules() -> None:
    settings = parse(Config())
    assert settings.auth.backend.frontend_auth() == {"name": "NoAuth"}
    assert settings.allowed_origins == ()


@pytest.mark.parametrize(("table", "message"), [
    ({"auth": {"backend": "ldap"}}, "auth.backend"),
    ({"auth": {"backend": "users", "users": {"a": {"password": "plain"}}}},
     "auth.users.a.password"),
    ({"authz": {"allow": [{"match": "sometimes", "role": "x"}]}}, "authz.allow[0]"),
    ({"authz": {"allow": [{"match": "stop"}]}}, "authz.allow[0].role is missing"),
    ({"authz": {"strings": "re", "allow": [{"match": "any", "role": "("}]}},
     "authz.allow[0].role"),
])
def test_bad_tables_fail_at_load_naming_the_key(tmp_path: Path, table: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Config(**table)  # type: ignore[arg-type]
    path = tmp_path / "server.toml"
    path.write_text(_toml(table))
    with pytest.raises(ConfigError) as raised:
        Config.from_toml(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert "\n" not in str(raised.value)


def _toml(table: dict[str, object]) -> str:
    """``table`` as TOML inline tables (enough for these cases)."""
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join(f"{k} = {value(v)}\n" for k, v in table.items())
