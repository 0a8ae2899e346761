# -*- test-case-name: tests.auth.test_authz -*-
"""Upstream's allow rules (protocol.md 7.1) with COMPAT's fixes, and the matchers
upstream lacks: cancel, set_priority, worker actions, and view rules that match.

``[authz]`` holds ``strings`` (``"fnmatch"``, the default, or ``"re"``: upstream's
``reStrMatcher``, anchored at the start as ``re.match``) and ordered ``[[authz.allow]]``
rules ``{match, role, default_deny = true, builder, actions}``. For a request, the first
rule that matches it decides: allowed if one of the caller's roles (and the owner roles,
for a build, build request or buildset with an ``owner``) matches the rule's ``role``;
else 403 ``you need to have role '<role>'`` when ``default_deny``; else the next rule
decides. No rule matched: allowed. No rules: everything is allowed (upstream's default).

The fixes: HEAD is a read (COMPAT 7); action names are compared exactly, and an action
the endpoint does not have is left to answer its 501 (COMPAT 8); authorization runs
after the path is resolved, and anything that does not exist is left to answer its 404
(COMPAT 9); a view rule covers every path to a build's data and narrows collections
(:mod:`buildbot_rest.auth.matchers`), and live events (:mod:`~.livefilter`)."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from buildbot_rest.auth import matchers
from buildbot_rest.auth.livefilter import NOT_BUILD_DATA, UNKNOWN, Lineage
from buildbot_rest.auth.matchers import MISSING, Coverage, Scope, Target
from buildbot_rest.data.base import Kind
from buildbot_rest.data.errors import Forbidden, InvalidControl
from buildbot_rest.data.resultspec import Filter, ResultSpec

if TYPE_CHECKING:
    from buildbot_rest.data.endpoint import Endpoint

#: what ``match`` may be, and the options each kind takes
KINDS: dict[str, frozenset[str]] = {
    "any": frozenset(),
    "any_control": frozenset(),
    "force": frozenset({"builder"}),
    "stop": frozenset({"builder"}),
    "rebuild": frozenset({"builder"}),
    "enable_scheduler": frozenset(),
    "cancel": frozenset({"builder"}),
    "set_priority": frozenset({"builder"}),
    "worker": frozenset({"actions"}),
    "view": frozenset({"builder"}),
}
#: the control actions of workers (``actions`` of a ``worker`` rule)
WORKER_ACTIONS = ("stop", "kill", "pause", "unpause")
#: (resource type, action) each specific control matcher matches
_CONTROL: dict[str, frozenset[tuple[str, str]]] = {
    "force": frozenset({("forcescheduler", "force"), ("scheduler", "force")}),
    "stop": frozenset({("build", "stop")}),
    "rebuild": frozenset({("build", "rebuild")}),
    "enable_scheduler": frozenset({("scheduler", "enable")}),
    "cancel": frozenset({("buildrequest", "cancel")}),
    "set_priority": frozenset({("buildrequest", "set_priority")}),
}
_COMMON_KEYS = frozenset({"match", "role", "default_deny"})

Verdict = Callable[[str, str], bool]


@dataclass(frozen=True)
class Rule:
    """One ``[[authz.allow]]`` rule, checked."""

    match: str
    role: str
    default_deny: bool = True
    builder: str | None = None
    actions: frozenset[str] = frozenset(WORKER_ACTIONS)

    @property
    def controls(self) -> bool:
        """Whether the rule can match a control action."""
        return self.match not in ("view",)

    def matches_control(self, rtype: str, action: str, target: Target,
                        strings: Verdict) -> bool:
        """Whether this rule matches action ``action`` on a ``rtype`` entity."""
        if self.match in ("any", "any_control"):
            return True
        if self.match == "worker":
            return rtype == "worker" and action in self.actions
        if (rtype, action) not in _CONTROL.get(self.match, frozenset()):
            return False
        return self.builder is None or any(strings(name, self.builder)
                                           for name in target.builders)

    def matches_read(self, builder: str | None, strings: Verdict) -> bool:
        """Whether this rule matches a read of data of builder ``builder`` (None: data
        that is no build's)."""
        if self.match == "any":
            return True
        if self.match != "view" or builder is None:
            return False
        return self.builder is None or strings(builder, self.builder)


def _connector(endpoint: Endpoint) -> Any:
    """The data connector of an endpoint (the :class:`~buildbot_rest.data.connector.
    DataConnector` it is registered with)."""
    connector = endpoint.rtype.connector
    assert connector is not None, "an endpoint of no data connector"
    return connector


def _fnmatch(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _re_match(value: str, pattern: str) -> bool:
    return re.match(pattern, value) is not None


class Authz:
    """The allow rules of ``[authz]``: ``rules`` in order, ``strings`` the pattern
    language (``"fnmatch"`` or ``"re"``). ``Authz()`` allows everything."""

    def __init__(self, rules: Sequence[Rule] = (), strings: str = "fnmatch") -> None:
        self.rules = tuple(rules)
        self.strings = strings
        self.match_string: Verdict = _re_match if strings == "re" else _fnmatch
        self._reads = tuple(r for r in self.rules if r.match in ("any", "view"))
        self._views = any(r.match == "view" for r in self.rules)
        self._controls = tuple(r for r in self.rules if r.controls)
        self._coverage: dict[type[Any], Coverage] = {}
        #: the live events' builders (shared by every client of the server)
        self.lineage = Lineage()

    # -- deciding ----------------------------------------------------------------------

    def _allows(self, rule: Rule, roles: frozenset[str]) -> bool:
        return any(self.match_string(role, rule.role) for role in roles)

    async def _decide(self, rules: Sequence[Rule], roles: frozenset[str],
                      owner_roles: Callable[[], Awaitable[frozenset[str]]] | None) -> None:
        """Upstream's walk over the rules that match: Forbidden (403) or nothing."""
        extra: frozenset[str] | None = None
        for rule in rules:
            if self._allows(rule, roles):
                return
            if owner_roles is not None:
                if extra is None:
                    extra = await owner_roles()
                if self._allows(rule, extra):
                    return
            if rule.default_deny:
                raise Forbidden(f"you need to have role '{rule.role}'")

    def _decide_sync(self, rules: Sequence[Rule], roles: frozenset[str]) -> Forbidden | None:
        for rule in rules:
            if self._allows(rule, roles):
                return None
            if rule.default_deny:
                return Forbidden(f"you need to have role '{rule.role}'")
        return None

    def _read_rules(self, builder: str | None) -> list[Rule]:
        return [r for r in self._reads if r.matches_read(builder, self.match_string)]

    def _owner_roles(self, service: Any, caller: Any, endpoint: Endpoint,
                     buildsetid: int | None
                     ) -> Callable[[], Awaitable[frozenset[str]]] | None:
        roles = getattr(getattr(service, "settings", None), "auth", None)
        owner_roles = getattr(getattr(roles, "roles", None), "owner_roles", None)
        if owner_roles is None or buildsetid is None or caller.anonymous:
            return None

        async def find() -> frozenset[str]:
            ctx = _connector(endpoint).context(endpoint)
            owner = await ctx.run(matchers.owner_in, buildsetid)
            if owner is None:
                return frozenset()
            return frozenset(owner_roles(caller.user, owner))

        return find

    # -- reads ---------------------------------------------------------------------------

    def coverage(self, endpoint: Endpoint) -> Coverage:
        """How view rules apply to ``endpoint`` (:func:`matchers.coverage`, kept)."""
        key = type(endpoint)
        found = self._coverage.get(key)
        if found is None:
            found = self._coverage[key] = matchers.coverage(endpoint)
        return found

    async def authorize_read(self, service: Any, caller: Any, endpoint: Endpoint,
                             kwargs: Mapping[str, Any], spec: ResultSpec) -> ResultSpec:
        """Authorize a read (GET or HEAD) of a resolved path; the spec to answer with
        (a collection of builds, build requests or test result sets narrowed to the
        builders whose data the caller may see); Forbidden (403)."""
        if not self._reads:
            return spec
        cover = self.coverage(endpoint) if self._views else Coverage.NONE
        if cover is Coverage.NONE:
            await self._decide(self._read_rules(None), caller.roles, None)
            return spec
        from buildbot_rest.data.connector import ids_in_range
        ctx = _connector(endpoint).context(endpoint, kwargs)
        scope: Scope | None = None
        if Coverage.ENTITY in cover and kwargs:
            if not ids_in_range(kwargs):
                scope = MISSING
            else:
                scope = await ctx.run(matchers.scope_in, endpoint.rtype.name, kwargs,
                                      endpoint.unchecked)
        if scope is MISSING:
            # nothing to protect: the read answers its own 404 (after the rules that
            # apply to everything, so that a 404 tells nothing a 403 would hide), but
            # under a hidden builder as an existing thing would (no listing by probing)
            if ids_in_range(kwargs):
                parent = await ctx.run(matchers.parent_builder_in, kwargs)
                if parent is not None:
                    await self._decide(self._read_rules(parent), caller.roles, None)
            await self._decide(self._read_rules(None), caller.roles, None)
            return spec
        if scope is not None:
            await self._decide(self._read_rules(scope.name), caller.roles,
                               self._owner_roles(service, caller, endpoint,
                                                 scope.buildsetid))
        if Coverage.NARROWED in cover and endpoint.kind is Kind.COLLECTION:
            builders = await ctx.run(matchers.builder_names_in)
            return self._narrowed(caller.roles, builders, spec)
        if scope is None:
            await self._decide(self._read_rules(None), caller.roles, None)
        return spec

    def _narrowed(self, roles: frozenset[str], builders: Mapping[int, str],
                  spec: ResultSpec) -> ResultSpec:
        """``spec`` with a filter leaving out the items of the builders whose data the
        caller may not read (each builder decided as a read of one of its builds).
        Forbidden when the caller may read no builder's data and the rules for data of
        no builder refuse it too (upstream's 403 of a collection under an ``any``
        rule)."""
        hidden = sorted(i for i, name in builders.items()
                        if self._decide_sync(self._read_rules(name), roles) is not None)
        if len(hidden) == len(builders):
            refusal = self._decide_sync(self._read_rules(None), roles)
            if refusal is not None:
                raise refusal
        if not hidden:
            return spec
        # (added after parsing: ``field=`` cannot leave it out, and it runs in SQL
        # before paging and the total. It names the builders that may be seen, not
        # those hidden: a builder made after the list was read stays hidden, fail-closed)
        hidden_ids = set(hidden)
        visible = sorted(i for i in builders if i not in hidden_ids)
        return dataclasses.replace(spec, filters=[*spec.filters,
                                                  Filter("builderid", "in", visible)])

    # -- control -------------------------------------------------------------------------

    async def authorize_control(self, service: Any, caller: Any, endpoint: Endpoint,
                                kwargs: Mapping[str, Any], method: str,
                                params: Mapping[str, Any]) -> None:
        """Authorize control action ``method`` (as sent) on a resolved path with
        ``params`` as sent; Forbidden (403). An action the endpoint does not have, or
        an entity that does not exist, is left to the action (501, 404). An action on
        a build or build request of a builder whose data the caller may not read, or
        that would start builds there, is refused as that read would be: one may not act
        on what one may not see (view rules)."""
        if not self._controls and not self._reads:
            return
        try:
            endpoint.control_method(method)
        except InvalidControl:
            return
        from buildbot_rest.data.connector import ids_in_range
        if not ids_in_range(kwargs):
            return
        connector = _connector(endpoint)
        ctx = connector.context(endpoint, kwargs)
        entries = list(getattr(connector.config, "forceschedulers", None) or ())
        target = await ctx.run(matchers.control_target_in, endpoint.rtype.name, kwargs,
                               endpoint.unchecked, params, entries)
        if target is None:
            return
        for builder in sorted(target.builders):
            refusal = self._decide_sync(self._read_rules(builder), caller.roles)
            if refusal is not None:
                raise refusal
        rules = [r for r in self._controls
                 if r.matches_control(endpoint.rtype.name, method, target,
                                      self.match_string)]
        await self._decide(rules, caller.roles,
                           self._owner_roles(service, caller, endpoint, target.buildsetid))

    def may_control_something(self, service: Any, caller: Any) -> bool:
        """Whether some control action could be allowed to ``caller`` (for subscribing
        to ``control/...`` keys, COMPAT 20): a rule that matches control actions allows
        one of its roles (or the owner roles it would have as an owner), or no rule
        that matches every action refuses it first."""
        roles = set(caller.roles)
        owner_roles = getattr(getattr(getattr(service, "settings", None), "auth", None),
                              "roles", None)
        owner_roles = getattr(owner_roles, "owner_roles", None)
        email = caller.user.get("email") if not caller.anonymous else None
        if owner_roles is not None and isinstance(email, str):
            roles.update(owner_roles(caller.user, email))
        frozen = frozenset(roles)
        for rule in self._controls:
            if self._allows(rule, frozen):
                return True
            if rule.match in ("any", "any_control") and rule.default_deny:
                return False
        return True

    # -- live events ---------------------------------------------------------------------

    def _read_refusal(self, roles: frozenset[str]) -> bool:
        return self._decide_sync(self._read_rules(None), roles) is not None

    def _hides_something(self, roles: frozenset[str]) -> bool:
        return self._read_refusal(roles) or any(
            r.match == "view" and not self._allows(r, roles) for r in self._reads)

    def may_subscribe(self, service: Any, caller: Any,
                      key_filter: Sequence[str | None]) -> bool:
        """Whether ``caller`` may subscribe to ``key_filter`` (control keys are the
        service's): refused only when the rules refuse it every read (an ``any`` rule,
        and no view rule that lets it see some builder); otherwise events are filtered
        one by one (:meth:`event_filter`)."""
        if not self._reads or not self._read_refusal(caller.roles):
            return True
        return any(r.match == "view" and self._allows(r, caller.roles) for r in self._reads)

    def event_filter(self, service: Any, caller: Any
                     ) -> Callable[[Sequence[str], Mapping[str, Any]], bool] | None:
        """The test of each live event ``(routing key, message)`` for ``caller``, or
        None when the rules hide nothing from it. An event of a build's data passes
        when a read of that builder's data would; others when a read of data of no
        builder would; one whose builder is not known yet is hidden (and its builder
        fetched). Owner roles are not considered here."""
        roles = caller.roles
        if not self._reads or not self._hides_something(roles):
            return None
        lineage = self.lineage
        lineage.prime(getattr(service, "db", None))
        return EventFilter(self, roles, lineage)


class EventFilter:
    """One live client's test of each event ``(routing key, message)`` (see
    :meth:`Authz.event_filter`). ``observe`` is the shared :class:`Lineage`'s ``learn``:
    :class:`~buildbot_rest.mq.live.LiveEvents` gives it every event, whatever the
    client subscribed to, so that a step's build is known even to a client that only
    takes ``steps/*/*``.

    ``control/builds/<id>/...`` and ``control/buildrequests/<id>/...`` (for callers who
    may subscribe to control keys at all, the service's decision) are filtered by their
    build's builder like the build's own events; other control keys pass."""

    __slots__ = ("_authz", "_by_name", "_other", "_roles", "lineage", "observe")

    def __init__(self, authz: Authz, roles: frozenset[str], lineage: Lineage) -> None:
        self._authz = authz
        self._roles = roles
        self.lineage = lineage
        self.observe = lineage.learn
        self._other = not authz._read_refusal(roles)
        self._by_name: dict[str, bool] = {}

    def __call__(self, key: Sequence[str], message: Mapping[str, Any]) -> bool:
        lineage = self.lineage
        lineage.learn(key, message)
        if key and key[0] == "control":
            builderid = lineage.builder_of(key[1:], {})
            if builderid == NOT_BUILD_DATA:
                return True
        else:
            builderid = lineage.builder_of(key, message)
            if builderid == NOT_BUILD_DATA:
                return self._other
        if builderid == UNKNOWN:
            return False
        name = lineage.name_of(builderid)
        if name is None:
            return False
        seen = self._by_name.get(name)
        if seen is None:
            authz = self._authz
            seen = self._by_name[name] = authz._decide_sync(authz._read_rules(name),
                                                            self._roles) is None
        return seen


# -- the [authz] table -------------------------------------------------------------------

def parse_authz(table: Mapping[str, Any]) -> Authz:
    """``[authz]`` checked and compiled; ConfigError (one line naming the key) for an
    unknown key, match kind or action, a missing or empty ``role``, a value of the wrong
    type, or a pattern ``re`` cannot compile."""
    from buildbot_rest.config import ConfigError
    unknown = set(table) - {"strings", "allow"}
    if unknown:
        raise ConfigError(f"authz: unknown key {sorted(unknown)[0]!r} (known keys: "
                          f"allow, strings)")
    strings = table.get("strings", "fnmatch")
    if strings not in ("fnmatch", "re"):
        raise ConfigError(f"authz.strings must be \"fnmatch\" or \"re\", not {strings!r}")
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(r, dict) for r in allow):
        raise ConfigError("authz.allow must be an array of tables ([[authz.allow]])")
    return Authz([_rule(i, r, strings) for i, r in enumerate(allow)], strings)


def _rule(i: int, raw: Mapping[str, Any], strings: str) -> Rule:
    from buildbot_rest.config import ConfigError
    where = f"authz.allow[{i}]"
    kind = raw.get("match")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"{where}.match must be one of {', '.join(KINDS)}, not {kind!r}")
    allowed = _COMMON_KEYS | KINDS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} for match = \"{kind}\" "
                          f"(known keys: {', '.join(sorted(allowed))})")
    role = raw.get("role")
    if role is None:
        raise ConfigError(f"{where}.role is missing: the role (name or pattern) the rule "
                          f"asks for")
    if not isinstance(role, str) or not role:
        raise ConfigError(f"{where}.role must be a role name or pattern, not {role!r}")
    default_deny = raw.get("default_deny", True)
    if not isinstance(default_deny, bool):
        raise ConfigError(f"{where}.default_deny must be true or false, not "
                          f"{default_deny!r}")
    builder = raw.get("builder")
    if builder is not None and (not isinstance(builder, str) or not builder):
        raise ConfigError(f"{where}.builder must be a builder name pattern, not {builder!r}")
    actions = raw.get("actions", list(WORKER_ACTIONS))
    if (not isinstance(actions, list) or not actions
            or not all(isinstance(a, str) and a in WORKER_ACTIONS for a in actions)):
        raise ConfigError(f"{where}.actions must be a non-empty list of "
                          f"{', '.join(WORKER_ACTIONS)}, not {actions!r}")
    if strings == "re":
        for key, pattern in (("role", role), ("builder", builder)):
            if pattern is None:
                continue
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"{where}.{key}: invalid regular expression "
                                  f"{pattern!r}: {e}") from None
    return Rule(kind, role, default_deny, builder, frozenset(actions))
