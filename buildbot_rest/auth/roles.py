# -*- test-case-name: tests.auth.test_roles -*-
"""Upstream's role matchers (protocol.md 7.3): the roles a user's info gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: what ``[[auth.roles]] from`` may name, and the other keys of each
_KEYS: dict[str, tuple[str, ...]] = {
    "groups": ("prefix",),
    "emails": ("roles",),
    "domain": ("roles",),
    "username": ("roles", "usernames"),
    "owner": ("role",),
}


@dataclass(frozen=True)
class RoleMatcher:
    """One ``[[auth.roles]]`` entry, as upstream's ``RolesFrom<Kind>``.

    - ``groups``: each of the user's groups that starts with ``prefix``, the prefix
      removed (``RolesFromGroups(groupPrefix)``);
    - ``emails``: the roles whose list holds the user's email (``RolesFromEmails``);
    - ``domain``: the roles whose list holds the domain of the user's email
      (``RolesFromDomain``);
    - ``username``: ``roles`` when the username is one of ``usernames``
      (``RolesFromUsername``);
    - ``owner``: ``role`` when the user's email is the owner of the build, build
      request or buildset acted on (``RolesFromOwner``; see
      :meth:`RoleMatchers.owner_roles`).

    ``by_value`` maps an email or a domain to its roles; ``roles`` are the roles of a
    ``username`` or ``owner`` matcher."""

    kind: str
    prefix: str = ""
    by_value: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    roles: tuple[str, ...] = ()
    usernames: frozenset[str] = frozenset()


class RoleMatchers:
    """The role matchers of ``[[auth.roles]]``, in order. ``groups`` maps a username to
    the groups the configuration gives it (``[auth.groups]`` and static users'
    ``groups``), added to those its user info carries."""

    def __init__(self, matchers: Sequence[RoleMatcher] = (), *,
                 groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.matchers = tuple(matchers)
        self.groups = dict(groups or {})

    @property
    def has_owner(self) -> bool:
        """Whether an ``owner`` matcher exists (authz then looks up owners)."""
        return any(m.kind == "owner" for m in self.matchers)

    def groups_of(self, user: Mapping[str, Any]) -> list[str]:
        """The user's groups: those of its info (strings only), then the configured
        ones of its username."""
        found = [g for g in _list(user.get("groups")) if isinstance(g, str)]
        username = user.get("username")
        if isinstance(username, str):
            found.extend(self.groups.get(username, ()))
        return list(dict.fromkeys(found))

    def roles_for(self, user: Mapping[str, Any]) -> set[str]:
        """The roles every matcher but ``owner`` gives ``user`` (upstream's
        ``getRolesFromUser`` over its non-owner matchers)."""
        roles: set[str] = set()
        email = user.get("email")
        email = email if isinstance(email, str) else None
        username = user.get("username")
        for m in self.matchers:
            if m.kind == "groups":
                roles.update(g[len(m.prefix):] for g in self.groups_of(user)
                             if g.startswith(m.prefix))
            elif m.kind == "emails" and email is not None:
                roles.update(m.by_value.get(email, ()))
            elif m.kind == "domain" and email is not None:
                roles.update(m.by_value.get(email.split("@")[-1].lower(), ()))
            elif m.kind == "username" and isinstance(username, str) and \
                    username in m.usernames:
                roles.update(m.roles)
        return roles

    def owner_roles(self, user: Mapping[str, Any], owner: str | None) -> set[str]:
        """The roles of the ``owner`` matchers when ``user``'s email is ``owner`` (the
        ``owner`` property of the buildset acted on; None: no owner, no role)."""
        email = user.get("email")
        if owner is None or not isinstance(email, str) or email != owner:
            return set()
        return {role for m in self.matchers if m.kind == "owner" for role in m.roles}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_roles(entries: Any, *, groups: Mapping[str, Sequence[str]]) -> RoleMatchers:
    """Compile ``[[auth.roles]]`` (an array of tables, each with ``from`` and the keys of
    its kind; without it: one ``groups`` matcher, so that ``[auth.groups]`` gives
    roles). ConfigError naming the entry and key for anything unusable."""
    from buildbot_rest.config import ConfigError, _keys_check, _type_name
    if entries is None:
        entries = [{"from": "groups"}]
    if not isinstance(entries, list):
        raise ConfigError(f"auth.roles must be an array of tables ([[auth.roles]]), not "
                          f"{_type_name(entries)}")
    matchers = []
    for i, entry in enumerate(entries):
        where = f"auth.roles[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table, not {_type_name(entry)}")
        kind = entry.get("from")
        if kind not in _KEYS:
            raise ConfigError(f"{where}.from must be one of "
                              f"{', '.join(map(repr, _KEYS))}, not {kind!r}")
        _keys_check(where, entry, ("from", *_KEYS[kind]))
        matchers.append(_matcher(where, kind, entry, ConfigError))
    return RoleMatchers(matchers, groups=groups)


def _matcher(where: str, kind: str, entry: dict[str, Any],
             error: type[Exception]) -> RoleMatcher:
    from buildbot_rest.config import _type_name

    def strings(key: str, value: Any, *, empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise error(f"{where}.{key} must be an array of non-empty strings, not "
                        f"{value!r}" if isinstance(value, list) else
                        f"{where}.{key} must be an array of non-empty strings, not "
                        f"{_type_name(value)}")
        if not value and not empty:
            raise error(f"{where}.{key} must not be empty")
        return tuple(value)

    if kind == "groups":
        prefix = entry.get("prefix", "")
        if not isinstance(prefix, str):
            raise error(f"{where}.prefix must be a string, not {_type_name(prefix)}")
        return RoleMatcher(kind, prefix=prefix)
    if kind in ("emails", "domain"):
        table = entry.get("roles")
        if not isinstance(table, dict) or not table:
            example = "alice@example.org" if kind == "emails" else "example.org"
            raise error(f"{where}.roles must be a table of role = [{kind} values] "
                        f"(e.g. roles = {{ admins = [\"{example}\"] }})")
        by_value: dict[str, list[str]] = {}
        for role, values in table.items():
            for value in strings(f"roles.{role}", values):
                by_value.setdefault(value if kind == "emails" else value.lower(),
                                    []).append(role)
        return RoleMatcher(kind, by_value={k: tuple(v) for k, v in by_value.items()})
    if kind == "username":
        for key in ("roles", "usernames"):
            if key not in entry:
                raise error(f"{where}.{key} is required for from = \"username\"")
        return RoleMatcher(kind, roles=strings("roles", entry["roles"]),
                           usernames=frozenset(strings("usernames", entry["usernames"])))
    role = entry.get("role")
    if not isinstance(role, str) or not role:
        raise error(f"{where}.role (the role of a build's owner) must be a non-empty "
                    f"string")
    return RoleMatcher(kind, roles=(role,))
