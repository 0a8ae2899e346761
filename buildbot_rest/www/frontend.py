# -*- test-case-name: tests.www.test_ui -*-
"""Upstream's web UI as installed data: where its static folder is, and the frontend
configuration (``/config``, and ``window.buildbotFrontendConfig`` in ``index.html``).

The server never imports ``buildbot`` or ``buildbot_www``: the folder is found through
the files of the installed distribution ``buildbot-www`` (the ``ui`` extra)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.web.iweb import IRequest

import buildbot_rest
import twisted
from buildbot_rest.config import Config
from buildbot_rest.data.context import ANONYMOUS

#: the distribution of upstream's UI, and the releases this server is made for
#: (ui-client.md describes what 4.3.0 asks of a server)
DISTRIBUTION = "buildbot-www"
SUPPORTED = "4.3."
#: how to get the UI, for the messages that say it is missing
INSTALL = "pip install 'buildbot_rest[ui]'"

#: the comment of ``index.html`` that upstream replaces with the configuration
PLACEHOLDER = "<!-- BUILDBOT_CONFIG_PLACEHOLDER -->"

#: ``auth`` in the configuration without authentication (upstream's NoAuth, whose
#: name makes the UI hide its login bar: ui-client.md section 3)
NO_AUTH: Mapping[str, Any] = {"name": "NoAuth"}
#: ``avatar_methods``: an object, as upstream serialises its default (a list would make
#: the UI show an avatar in the login bar with a broken URL: ui-client.md section 4)
AVATAR_METHODS: Mapping[str, Any] = {"name": "local"}


@dataclass(frozen=True)
class StaticUi:
    """An installed UI: ``folder`` (resolved, holding ``index.html``) of release
    ``version``."""

    folder: Path
    version: str


@dataclass(frozen=True)
class NoUi:
    """Why no UI is served: ``reason`` is one line for a user."""

    reason: str


def find_ui(distribution: str = DISTRIBUTION) -> StaticUi | NoUi:
    """The static folder of the installed ``buildbot-www`` (``buildbot_www/static`` among
    its files), or why it cannot be served: not installed, a release other than 4.3.x,
    or a folder without ``index.html``."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return NoUi(f"the web UI is not installed: {INSTALL}")
    version = dist.version
    if not version.startswith(SUPPORTED):
        return NoUi(f"the web UI needs {distribution} {SUPPORTED}x, not {version}: {INSTALL}")
    folder = Path(str(dist.locate_file("buildbot_www/static"))).resolve()
    if not (folder / "index.html").is_file():
        return NoUi(f"{distribution} {version} has no {folder / 'index.html'}: "
                    f"reinstall it with {INSTALL}")
    return StaticUi(folder, version)


def versions(ui: StaticUi | NoUi) -> list[list[str]]:
    """``versions`` of the configuration: ``[name, version]`` pairs of Python, Twisted,
    this server and, when served, the UI (upstream: Python, Buildbot, Twisted)."""
    pairs = [["Python", ".".join(map(str, sys.version_info[:3]))],
             ["Twisted", f"{twisted.version.major}.{twisted.version.minor}."
                         f"{twisted.version.micro}"],
             ["buildbot_rest", buildbot_rest.__version__]]
    if isinstance(ui, StaticUi):
        pairs.append([DISTRIBUTION, ui.version])
    return pairs


_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def request_url(request: IRequest) -> str | None:
    """The URL of the application's root as this request reached it:
    ``<scheme>://<Host>/<mount point>/``, or None when the Host header is missing or
    not a host name, IPv4 or IPv6 address with an optional port."""
    scheme = "https" if request.isSecure() else "http"
    hosts = request.requestHeaders.getRawHeaders(b"host") or []
    if len(hosts) != 1:
        return None
    host = hosts[0].decode("latin-1").strip().lower()
    if not _HOST.fullmatch(host):
        return None
    default = ":443" if scheme == "https" else ":80"
    if host.endswith(default):  # (a browser's location never shows the default port)
        host = host[:-len(default)]
    mount = "".join(quote(segment, safe="") + "/" for segment in request.prepath or [])
    return f"{scheme}://{host}/{mount}"


def buildbot_url(config: Any, base_url: str, request: IRequest) -> str:
    """``buildbotURL``: the configured ``base_url``; when it was derived from the port
    (or never configured), the URL the request came to, so that the UI opened at
    ``http://127.0.0.1:8010/`` sees its own address (its home page warns when
    ``buildbotURL`` differs from the page's location: ui-client.md section 2)."""
    configured = base_url.startswith(("http://", "https://"))
    if (config is not None and config.base_url_derived) or not configured:
        return request_url(request) or (base_url if configured else "/")
    return base_url


def frontend_config(config: Any, *, base_url: str, auth: Any, request: IRequest,
                    ui: StaticUi | NoUi) -> dict[str, Any]:
    """The configuration object of ``/config`` (protocol.md section 9), keys in
    upstream's order: ``port`` (the endpoint string, None when not listening),
    ``plugins`` ({}), ``auth``, ``authz`` ({}), ``avatar_methods``,
    ``ui_default_config``, ``versions``, ``buildbotURL``, ``title``, ``titleURL``,
    ``multiMaster`` (false) and ``user`` (the caller's user info; ``{"anonymous":
    true}`` without ``auth``).

    ``config`` is a :class:`~buildbot_rest.config.Config` or None (then ``port`` is
    None and ``base_url`` is the only URL known). ``auth`` may describe itself with a
    ``frontend_auth()`` method returning upstream's shape (``{"name": ...}``)."""
    settings = config if config is not None else Config()
    describe = getattr(auth, "frontend_auth", None)
    user = auth.user_for(request) if auth is not None else ANONYMOUS
    return {
        "port": config.port if config is not None else None,
        "plugins": {},
        "auth": dict(describe() if callable(describe) else NO_AUTH),
        "authz": {},
        "avatar_methods": dict(AVATAR_METHODS),
        "ui_default_config": settings.ui_default_config,
        "versions": versions(ui),
        "buildbotURL": buildbot_url(config, base_url, request),
        "title": settings.title,
        "titleURL": settings.title_url,
        "multiMaster": False,
        "user": dict(user),
    }


def config_json(value: Mapping[str, Any]) -> bytes:
    """``/config``'s body: ASCII JSON with the standard separators, as upstream."""
    return json.dumps(value).encode("ascii")


#: what could end a ``<script>`` element or open a comment or tag inside it
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(value: Mapping[str, Any]) -> str:
    """JSON that may stand inside a ``<script>`` element: ASCII (so U+2028 and U+2029
    are ``\\u`` escapes too) with ``<``, ``>`` and ``&`` escaped, which JSON allows
    only inside strings, where the escapes mean the same characters."""
    return json.dumps(value).translate(_SCRIPT_UNSAFE)


def render_index(template: str, value: Mapping[str, Any]) -> str:
    """``index.html`` with the configuration embedded where upstream's placeholder
    stands. A template without it is served as it is: the UI then asks ``/config``.
    The theme stays the template's own (its default colours; there is no ``theme``
    setting)."""
    script = ('<script id="bb-config">\n    window.buildbotFrontendConfig = '
              f'{script_json(value)};\n</script>')
    return template.replace(PLACEHOLDER, script, 1)
