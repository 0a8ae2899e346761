"""Upstream's role matchers from [[auth.roles]] (buildbot_rest.auth.roles, protocol.md
7.3): each kind, the configured groups, the owner role, and configuration errors."""

from __future__ import annotations

from typing import Any

import pytest

from buildbot_rest.auth.roles import parse_roles
from buildbot_rest.config import ConfigError

ENTRIES: list[dict[str, Any]] = [
    {"from": "groups", "prefix": "bb-"},
    {"from": "emails", "roles": {"admins": ["alice@example.org"],
                                 "release": ["alice@example.org", "bob@example.org"]}},
    {"from": "domain", "roles": {"staff": ["example.org"]}},
    {"from": "username", "roles": ["ops"], "usernames": ["carol"]},
    {"from": "owner", "role": "owner"},
]


def test_each_kind() -> None:
    matchers = parse_roles(ENTRIES, groups={"carol": ["bb-devs", "other"]})
    alice = {"username": "alice", "email": "alice@example.org",
             "groups": ["bb-web", "web", 3]}
    assert matchers.roles_for(alice) == {"web", "admins", "release", "staff"}
    assert matchers.roles_for({"username": "carol", "email": "carol@EXAMPLE.org"}) == \
        {"devs", "ops", "staff"}
    assert matchers.roles_for({"anonymous": True}) == set()
    # odd user infos (an upstream cookie may hold anything its master put there)
    assert matchers.roles_for({"username": ["x"], "email": 5, "groups": "bb-x"}) == set()


def test_owner_roles() -> None:
    matchers = parse_roles(ENTRIES, groups={})
    alice = {"username": "alice", "email": "alice@example.org"}
    assert matchers.has_owner
    assert "owner" not in matchers.roles_for(alice)
    assert matchers.owner_roles(alice, "alice@example.org") == {"owner"}
    assert matchers.owner_roles(alice, "bob@example.org") == set()
    assert matchers.owner_roles(alice, None) == set()
    assert matchers.owner_roles({"username": "x"}, None) == set()
    assert not parse_roles([], groups={}).has_owner


def test_default_is_one_groups_matcher() -> None:
    matchers = parse_roles(None, groups={"bob": ["admins"]})
    assert matchers.roles_for({"username": "bob"}) == {"admins"}
    assert matchers.roles_for({"username": "eve", "groups": ["devs"]}) == {"devs"}
    assert parse_roles([], groups={"bob": ["admins"]}).roles_for({"username": "bob"}) == set()


@pytest.mark.parametrize(("entries", "message"), [
    ({"from": "groups"}, "auth.roles must be an array of tables"),
    (["groups"], "auth.roles[0] must be a table"),
    ([{"from": "group"}], "auth.roles[0].from must be one of"),
    ([{"from": "groups", "role": "x"}], "unknown key auth.roles[0].role"),
    ([{"from": "groups", "prefix": 1}], "auth.roles[0].prefix must be a string"),
    ([{"from": "emails", "roles": ["a"]}], "auth.roles[0].roles must be a table"),
    ([{"from": "domain", "roles": {"a": "example.org"}}], "auth.roles[0].roles.a must be"),
    ([{"from": "username", "roles": ["a"]}], "auth.roles[0].usernames is required"),
    ([{"from": "username", "roles": ["a"], "usernames": [None]}], "usernames must be"),
    ([{"from": "owner"}], "auth.roles[0].role"),
])
def test_config_errors(entries: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")):
        parse_roles(entries, groups={})
