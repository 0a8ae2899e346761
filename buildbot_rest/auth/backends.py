# -*- test-case-name: tests.auth.test_backends -*-
"""Who may log in: the ``[auth]`` table and its backends (none, an htpasswd file, static
users, a trusted proxy's header)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]
from passlib.context import CryptContext  # type: ignore[import-untyped]
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from buildbot_rest.auth.ratelimit import RateLimit
from buildbot_rest.auth.roles import RoleMatchers, parse_roles
from buildbot_rest.config import ConfigError, _keys_check, _type_name, _typed
from buildbot_rest.data.errors import ServiceUnavailable

log = Logger()

#: upstream's session lifetime (``cookie_expiration_time``): one week, in seconds
DEFAULT_COOKIE_EXPIRATION = 7 * 24 * 3600.0

#: upstream's ``RemoteUserAuth`` defaults
DEFAULT_HEADER = "REMOTE_USER"
DEFAULT_HEADER_REGEX = r"(?P<username>[^ @]+)@(?P<realm>[^ @]+)"

#: the hashes an htpasswd file may hold (Apache's: bcrypt, SHA-1, apr1-MD5, crypt, and
#: the SHA-2 crypts of some systems); plain text is refused: every password must be
#: verified by a hash
HTPASSWD_CONTEXT = CryptContext(schemes=["bcrypt", "sha256_crypt", "sha512_crypt",
                                         "apr_md5_crypt", "des_crypt", "ldap_sha1"])

#: the hashes of static users' passwords (``[auth.users.<name>] password``): strong
#: ones only; ``buildbot-rest hash-password`` makes bcrypt ones
USERS_CONTEXT = CryptContext(schemes=["bcrypt", "sha512_crypt", "sha256_crypt",
                                      "pbkdf2_sha256", "pbkdf2_sha512"])

#: the longest password tried (passlib's own limit); longer ones simply fail
MAX_PASSWORD = 4096

_BACKENDS = ("none", "htpasswd", "users", "remote_user")
_COMMON_KEYS = ("backend", "realm", "cookie_expiration", "login_failures", "login_period",
                "groups", "roles")
_BACKEND_KEYS = {"none": (), "htpasswd": ("htpasswd",), "users": ("users",),
                 "remote_user": ("header", "header_regex", "trusted_proxies")}
_USER_KEYS = ("password", "email", "full_name", "groups")
#: an HTTP header name (RFC 9110 5.6.2 ``token``)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Backend(Protocol):
    """What the auth service and ``/auth/login`` ask of a backend.

    ``login`` is ``"password"`` (Basic credentials at ``/auth/login``), ``"proxy"``
    (the trusted proxy's header) or None (nobody logs in)."""

    name: str
    login: str | None

    def frontend_auth(self) -> dict[str, Any]: ...

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None: ...

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None: ...


def user_info(username: str, *, email: str | None = None, full_name: str | None = None,
              groups: Iterable[str] = (), extra: Mapping[str, str] | None = None,
              more_groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The user info of a login as upstream shapes it: ``{"username", "email"}`` (its
    default user-info provider makes the email the username when none is known), then
    ``full_name`` and ``groups`` when known; ``extra`` (a proxy regex's other groups)
    first; ``more_groups``: ``[auth.groups]``, merged in."""
    info: dict[str, Any] = dict(extra or {})
    info["username"] = username
    info["email"] = email or info.get("email") or username
    if full_name:
        info["full_name"] = full_name
    merged = list(dict.fromkeys([*groups, *(more_groups or {}).get(username, ())]))
    if merged:
        info["groups"] = merged
    return info


class NoAuth:
    """No authentication: nobody logs in (``/auth/login`` is a 404, COMPAT 18)."""

    name = "none"
    login: str | None = None

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "NoAuth"}

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None:
        return None

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        return None


class HtpasswdAuth:
    """Users and password hashes of an Apache htpasswd file (``bcrypt``, ``{SHA}``,
    ``$apr1$`` MD5, ``crypt`` and SHA-2 crypt entries, verified by passlib; plain-text
    entries never match). The file is read again when it changes; one that cannot be
    read at start is a ConfigError, later a logged error (its last good content is
    kept; a file gone answers 503). ``groups``: ``[auth.groups]``."""

    name = "htpasswd"
    login: str | None = "password"

    def __init__(self, path: str, *, groups: Mapping[str, Sequence[str]]) -> None:
        self.path = path
        self.groups = groups
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._missing = False
        try:
            self._file = self._load()
        except (OSError, ValueError) as e:
            raise ConfigError(f"auth.htpasswd: cannot read {path}: {_reason(e)}") from None

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "HTPasswdAuth"}

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None:
        return None

    def _load(self) -> HtpasswdFile:
        stamp = _stamp(self.path)
        loaded = HtpasswdFile(self.path, context=HTPASSWD_CONTEXT)
        self._stamp = stamp
        return loaded

    def _current(self) -> HtpasswdFile:
        """The file's entries, read again when its inode, size or mtime changed."""
        with self._lock:
            try:
                stamp = _stamp(self.path)
            except OSError as e:
                if not self._missing:
                    self._missing = True
                    log.error("auth.htpasswd: cannot read {path}: {reason}; logins fail "
                              "until it is back", path=self.path, reason=_reason(e))
                raise ServiceUnavailable("the password file of this server cannot be "
                                         "read: try again later", retry_after=60) from None
            if self._missing:
                self._missing = False
                log.info("auth.htpasswd: {path} is back", path=self.path)
            if stamp != self._stamp:
                try:
                    self._file = self._load()
                except (OSError, ValueError) as e:
                    self._stamp = stamp  # (logged once per change)
                    log.error("auth.htpasswd: cannot read {path}: {reason}; its previous "
                              "content is used", path=self.path, reason=_reason(e))
            return self._file

    def _verify(self, username: str, password: str) -> bool:
        htpasswd = self._current()
        try:
            return bool(htpasswd.check_password(username, password))
        except ValueError:
            # (an entry that is no known hash, plain text included)
            log.error("auth.htpasswd: the entry of {user!r} in {path} is not a password "
                      "hash this server knows", user=username[:64], path=self.path)
            return False

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        """Upstream's user info for good credentials, else None (off the reactor thread:
        hashes are slow by design)."""
        if not _plausible(username, password):
            return None
        if not await threads.deferToThread(self._verify, username, password):
            return None
        return user_info(username, more_groups=self.groups)


@dataclass(frozen=True)
class StaticUser:
    """One ``[auth.users.<name>]`` entry: its password hash and what it says of the user."""

    password_hash: str
    email: str | None = None
    full_name: str | None = None
    groups: tuple[str, ...] = ()


class StaticUsersAuth:
    """Users of the configuration (``[auth.users.<name>]``), their passwords hashed at
    rest (bcrypt and other strong hashes, verified by passlib off the reactor thread)."""

    name = "users"
    login: str | None = "password"

    def __init__(self, users: Mapping[str, StaticUser], *,
                 groups: Mapping[str, Sequence[str]]) -> None:
        self.users = dict(users)
        self.groups = groups

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "UserPasswordAuth"}

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None:
        return None

    def _verify(self, username: str, password: str) -> bool:
        user = self.users.get(username)
        if user is None:
            USERS_CONTEXT.dummy_verify()  # (as slow as for a known user)
            return False
        try:
            return bool(USERS_CONTEXT.verify(password, user.password_hash))
        except ValueError:
            return False

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        """The user's info for good credentials, else None."""
        if not _plausible(username, password):
            return None
        if not await threads.deferToThread(self._verify, username, password):
            return None
        user = self.users[username]
        return user_info(username, email=user.email, full_name=user.full_name,
                         groups=user.groups, more_groups=self.groups)


class RemoteUserAuth:
    """The user a reverse proxy names in a header (upstream's ``RemoteUserAuth``:
    ``REMOTE_USER``, matched by ``(?P<username>[^ @]+)@(?P<realm>[^ @]+)``), honoured
    only when the TCP peer is one of ``trusted_proxies`` (addresses or networks, IPv4
    or IPv6); from anyone else the header is ignored."""

    name = "remote_user"
    login: str | None = "proxy"

    def __init__(self, header: str, regex: re.Pattern[str],
                 trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                 *, groups: Mapping[str, Sequence[str]]) -> None:
        self.header = header
        self.regex = regex
        self.trusted_proxies = tuple(trusted_proxies)
        self.groups = groups

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "RemoteUserAuth"}

    def trusted(self, request: IRequest) -> bool:
        """Whether ``request`` comes straight from a trusted proxy."""
        host = getattr(request.getClientAddress(), "host", None)
        if not isinstance(host, str):
            return False  # (a UNIX socket, or no peer)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_proxies)

    def user_from_proxy(self, request: IRequest) -> dict[str, Any] | None:
        """The user info the header gives (the regex's named groups, with upstream's
        ``email``: the username unless the regex has an ``email`` group), or None: not
        from a trusted proxy, no header (or several), or one that does not match."""
        if not self.trusted(request):
            return None
        values = request.requestHeaders.getRawHeaders(self.header.encode("ascii"))
        if not values or len(values) != 1:
            return None
        try:
            value = values[0].decode("utf-8")
        except UnicodeDecodeError:
            return None
        found = self.regex.match(value)
        if found is None or not found.group("username"):
            return None
        extra = {k: v for k, v in found.groupdict().items() if v is not None}
        return user_info(found.group("username"), email=extra.get("email"), extra=extra,
                         more_groups=self.groups)

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True)
class AuthConfig:
    """The ``[auth]`` table, compiled: the backend, the role matchers, the session
    cookie's lifetime (seconds), the rate limit of failures, the Basic realm and
    ``[auth.groups]`` (user -> groups)."""

    backend: Any = field(default_factory=NoAuth)
    roles: RoleMatchers = field(default_factory=RoleMatchers)
    cookie_expiration: float = DEFAULT_COOKIE_EXPIRATION
    rate_limit: RateLimit = field(default_factory=RateLimit)
    realm: str = "buildbot"
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def parse_auth(table: dict[str, Any]) -> AuthConfig:
    """Compile ``[auth]``; a ConfigError naming the key for anything unknown or
    unusable (a key of another backend included)."""
    backend_name = table.get("backend", "none")
    if backend_name not in _BACKENDS:
        raise ConfigError(f"auth.backend must be one of {', '.join(map(repr, _BACKENDS))}, "
                          f"not {backend_name!r}")
    allowed = _COMMON_KEYS + _BACKEND_KEYS[backend_name]
    for key in table:
        if key not in allowed:
            owner = next((b for b, keys in _BACKEND_KEYS.items() if key in keys), None)
            if owner is not None:
                raise ConfigError(f"auth.{key} is a setting of backend {owner!r}, not of "
                                  f"{backend_name!r}")
    _keys_check("auth", table, allowed)

    realm = table.get("realm", "buildbot")
    _typed("auth.realm", realm, str)
    if not realm or any(c in realm for c in '"\\') or not realm.isprintable():
        raise ConfigError(f"auth.realm must be printable text without quotes or "
                          f"backslashes, not {realm!r}")
    expiration = _seconds("auth.cookie_expiration", table.get("cookie_expiration",
                                                              DEFAULT_COOKIE_EXPIRATION))
    failures = table.get("login_failures", RateLimit.failures)
    _typed("auth.login_failures", failures, int)
    if failures < 1:
        raise ConfigError(f"auth.login_failures must be at least 1, not {failures}")
    period = _seconds("auth.login_period", table.get("login_period", RateLimit.period))

    groups = _groups(table.get("groups", {}))
    if backend_name == "users" and "users" not in table:
        raise ConfigError("auth.users ([auth.users.<name>] tables) is required for "
                          "backend 'users'")
    users = _users(table["users"]) if backend_name == "users" else {}
    role_groups: dict[str, tuple[str, ...]] = {}
    for name, user in users.items():
        role_groups[name] = user.groups
    for name, names in groups.items():
        role_groups[name] = tuple(dict.fromkeys([*role_groups.get(name, ()), *names]))
    roles = parse_roles(table.get("roles"), groups=role_groups)

    backend: Any
    if backend_name == "htpasswd":
        if "htpasswd" not in table:
            raise ConfigError("auth.htpasswd (the path of the file) is required for "
                              "backend 'htpasswd'")
        path = table["htpasswd"]
        _typed("auth.htpasswd", path, str)
        backend = HtpasswdAuth(path, groups=groups)
    elif backend_name == "users":
        backend = StaticUsersAuth(users, groups=groups)
    elif backend_name == "remote_user":
        backend = _remote_user(table, groups)
    else:
        backend = NoAuth()
    return AuthConfig(backend=backend, roles=roles, cookie_expiration=expiration,
                      rate_limit=RateLimit(failures=failures, period=period), realm=realm,
                      groups=groups)


def _seconds(where: str, value: Any) -> float:
    _typed(where, value, (int, float))
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds, not {value}")
    return float(value)


def _strings(where: str, value: Any) -> tuple[str, ...]:
    _typed(where, value, list)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}[{i}] must be a non-empty string, not "
                              f"{item!r}" if isinstance(item, str) else
                              f"{where}[{i}] must be a non-empty string, not "
                              f"{_type_name(item)}")
    return tuple(value)


def _groups(table: Any) -> dict[str, tuple[str, ...]]:
    _typed("auth.groups", table, dict)
    return {name: _strings(f"auth.groups.{name}", names) for name, names in table.items()}


def _users(table: Any) -> dict[str, StaticUser]:
    _typed("auth.users", table, dict)
    if not table:
        raise ConfigError("auth.users must name at least one user for backend 'users'")
    users = {}
    for name, entry in table.items():
        where = f"auth.users.{name}"
        if not name or ":" in name or not name.isprintable():
            raise ConfigError(f"{where}: a user name must be printable and without ':'")
        _keys_check(where, entry, _USER_KEYS)
        if "password" not in entry:
            raise ConfigError(f"{where}.password is required (a password hash: "
                              f"`buildbot-rest hash-password` prints one)")
        password = entry["password"]
        _typed(f"{where}.password", password, str)
        if not _known_hash(password):
            raise ConfigError(f"{where}.password must be a password hash (bcrypt, "
                              f"sha512_crypt, sha256_crypt or pbkdf2), never the password "
                              f"itself: `buildbot-rest hash-password` prints one")
        for key in ("email", "full_name"):
            if key in entry:
                _typed(f"{where}.{key}", entry[key], str)
        users[name] = StaticUser(
            password_hash=password, email=entry.get("email") or None,
            full_name=entry.get("full_name") or None,
            groups=_strings(f"{where}.groups", entry.get("groups", [])))
    return users


def _known_hash(value: str) -> bool:
    scheme = USERS_CONTEXT.identify(value, required=False)
    if scheme is None:
        return False
    try:
        USERS_CONTEXT.handler(scheme).from_string(value)
    except (ValueError, TypeError):
        return False
    return True


def _remote_user(table: dict[str, Any], groups: dict[str, tuple[str, ...]]) -> RemoteUserAuth:
    header = table.get("header", DEFAULT_HEADER)
    _typed("auth.header", header, str)
    if not _TOKEN.fullmatch(header):
        raise ConfigError(f"auth.header must be an HTTP header name, not {header!r}")
    pattern = table.get("header_regex", DEFAULT_HEADER_REGEX)
    _typed("auth.header_regex", pattern, str)
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"auth.header_regex is not a valid regular expression: "
                          f"{e}") from None
    if "username" not in regex.groupindex:
        raise ConfigError("auth.header_regex must have a (?P<username>...) group")
    if "trusted_proxies" not in table:
        raise ConfigError("auth.trusted_proxies (the addresses of the proxies that set "
                          f"{header}) is required for backend 'remote_user'")
    proxies = _strings("auth.trusted_proxies", table["trusted_proxies"])
    if not proxies:
        raise ConfigError("auth.trusted_proxies must name at least one proxy address")
    networks = []
    for i, proxy in enumerate(proxies):
        try:
            networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"auth.trusted_proxies[{i}] must be an IP address or network "
                              f"(\"10.0.0.0/8\", \"::1\"), not {proxy!r}") from None
    return RemoteUserAuth(header, regex, networks, groups=groups)


def _plausible(username: str, password: str) -> bool:
    return bool(username) and len(password.encode("utf-8", "surrogatepass")) <= MAX_PASSWORD


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error).splitlines()[0] if str(error) else type(error).__name__
