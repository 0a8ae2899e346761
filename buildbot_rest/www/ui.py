# -*- test-case-name: tests.www.test_ui -*-
"""The paths outside ``/api``, ``/ws`` and ``/sse``: upstream's web UI (``index.html``
with its configuration embedded, and its static files), ``/config``, ``/avatar``, and
JSON 404s for everything else (UI plugins included)."""

from __future__ import annotations

import hashlib
import io
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from buildbot_rest.config import Config
from buildbot_rest.data.errors import ApiError
from buildbot_rest.www import frontend
from buildbot_rest.www.encoding import JSON_TYPE, choose_encoding
from buildbot_rest.www.headers import add_vary
from buildbot_rest.www.rest import Responder, error_body, error_headers, sent_path

log = Logger()

#: content types by file extension (RFC 9239 for JavaScript); anything else is
#: ``application/octet-stream``, which ``nosniff`` keeps from running as script or style
CONTENT_TYPES = {
    "html": b"text/html; charset=utf-8", "js": b"text/javascript; charset=utf-8",
    "mjs": b"text/javascript; charset=utf-8", "css": b"text/css; charset=utf-8",
    "json": b"application/json", "map": b"application/json",
    "txt": b"text/plain; charset=utf-8", "svg": b"image/svg+xml", "png": b"image/png",
    "ico": b"image/x-icon", "jpg": b"image/jpeg", "gif": b"image/gif", "webp": b"image/webp",
    "woff": b"font/woff", "woff2": b"font/woff2", "ttf": b"font/ttf",
}
_COMPRESSIBLE = (b"text/", b"application/json", b"image/svg+xml")

#: ``index.html``: it embeds the caller's user, so never from a shared cache, and
#: always revalidated
INDEX_CACHE = b"no-cache, private"
#: ``assets/``: Vite names these files after a hash of their content
ASSETS_CACHE = b"public, max-age=31536000, immutable"
#: the other static files (``icon.png``, ``browser-warning.js``, ...) and the avatar
OTHER_CACHE = b"public, max-age=600"
#: ``/config``, as upstream (protocol.md section 9)
CONFIG_CACHE = b"public,max-age=0"
CONFIG_TYPE = b"application/json"

#: ``/avatar``: a neutral silhouette in the UI's colours, for every user (upstream
#: redirects to gravatar, which a CI network often cannot reach: protocol.md 6.5)
AVATAR = (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
          b'viewBox="0 0 64 64"><rect width="64" height="64" fill="#b2bfdc"/>'
          b'<circle cx="32" cy="25" r="12" fill="#30426a"/>'
          b'<path d="M9 64c1-14 10-22 23-22s22 8 23 22z" fill="#30426a"/></svg>\n')

#: paths the UI's build pages ask for (``buildbotURL + "/icon.svg"``: ui-client.md
#: section 6.3), 404 on upstream; here the icons
_DOUBLE_SLASH_ICONS = ([b"", b"icon.svg"], [b"", b"icon.png"])


class Asset:
    """Bytes served as a static file: their ``content_type``, ``cache_control`` and a
    strong ``etag`` (from a hash of the bytes); compressed forms are made once, on
    first demand."""

    def __init__(self, data: bytes, content_type: bytes, cache_control: bytes) -> None:
        self.data = data
        self.content_type = content_type
        self.cache_control = cache_control
        self.etag = hashlib.sha256(data).hexdigest()[:32]
        self.compressible = len(data) >= 256 and content_type.startswith(_COMPRESSIBLE)
        self._coded: dict[str, bytes] = {}

    def coded(self, coding: str, encoder: Any) -> bytes:
        """The bytes compressed by ``encoder`` (a fresh one, from
        :func:`~buildbot_rest.www.encoding.choose_encoding`) named ``coding``."""
        if coding not in self._coded:
            self._coded[coding] = encoder.compress(self.data) + encoder.flush()
        return self._coded[coding]


def content_type(name: str) -> bytes:
    """The content type of a file name, by its extension (:data:`CONTENT_TYPES`)."""
    return CONTENT_TYPES.get(name.rpartition(".")[2].lower(), b"application/octet-stream")


class StaticFolder:
    """The files of a folder, each read when first asked for and kept while its size,
    time and inode stay the same (so the memory is at most the folder's size)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._files: dict[tuple[str, ...], tuple[tuple[int, int, int], Asset]] = {}

    def get(self, segments: Sequence[bytes]) -> Asset | None:
        """The regular file at ``segments`` (percent-decoded path segments), or None.

        None also for any segment that is empty, ``.``, ``..``, hidden (``.x``), not
        UTF-8 or holding ``/``, ``\\`` or NUL (a decoded ``%2F``), and for a path that
        resolves outside the folder (a symbolic link)."""
        names = _names(segments)
        if names is None:
            return None
        try:
            real = self.folder.joinpath(*names).resolve(strict=True)
            if not real.is_relative_to(self.folder):
                return None
            st = real.stat()
            if not stat.S_ISREG(st.st_mode):
                return None
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._files.get(names)
            if cached is not None and cached[0] == signature:
                return cached[1]
            data = real.read_bytes()
        except (OSError, RuntimeError, ValueError):  # (RuntimeError: a symlink loop)
            return None
        policy = ASSETS_CACHE if names[0] == "assets" and len(names) > 1 else OTHER_CACHE
        asset = Asset(data, content_type(names[-1]), policy)
        self._files[names] = (signature, asset)
        return asset


def _names(segments: Sequence[bytes]) -> tuple[str, ...] | None:
    names = []
    for segment in segments:
        try:
            name = segment.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            return None
        names.append(name)
    return tuple(names) if names else None


class UiResource(Resource):
    """Every path the application does not route to the API or the live events.

    ``GET`` and ``HEAD`` only (anything else: 405). With upstream's UI installed (see
    :func:`~buildbot_rest.www.frontend.find_ui`) and the ``ui`` setting on:

    - ``/`` and ``/index.html``: ``index.html`` with ``window.buildbotFrontendConfig``;
    - the UI's static files, with their content types, ``ETag`` and ``Cache-Control``
      (long and immutable under ``assets/``), compressed when the client accepts it;
      ``//icon.svg`` and ``//icon.png`` are the icons (upstream: 404).

    Always: ``/config`` (protocol.md section 9), ``/avatar`` (:data:`AVATAR`, whatever
    the query), ``/plugins/<name>/...`` a 404 naming the plugin as not installed, and
    for any other path a 404 ``{"error": "Not found: <path>"}``; ``/`` without the UI
    is a 404 whose error says why and how to get it.

    ``find_ui`` locates the UI (tests point it elsewhere); ``auth`` tells who makes a
    request (anonymous without it)."""

    isLeaf = True

    def __init__(self, connector: Any, *, auth: Any,
                 find_ui: Callable[[], frontend.StaticUi | frontend.NoUi] = frontend.find_ui
                 ) -> None:
        super().__init__()
        self.connector = connector
        self.auth = auth
        self.config: Config | None = (connector.config if isinstance(connector.config, Config)
                                      else None)
        settings = self.config if self.config is not None else Config()
        self.ui = find_ui() if settings.ui else frontend.NoUi(
            "the web UI is turned off (the setting ui = false)")
        self.static: StaticFolder | None = None
        if isinstance(self.ui, frontend.StaticUi):
            self.static = StaticFolder(self.ui.folder)
            log.info("web UI: serving {distribution} {version} from {folder}",
                     distribution=frontend.DISTRIBUTION, version=self.ui.version,
                     folder=str(self.ui.folder))
        else:
            log.info("web UI: not served: {reason}", reason=self.ui.reason)
        self.avatar = Asset(AVATAR, CONTENT_TYPES["svg"], OTHER_CACHE)

    def render(self, request: Any) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _send(request, 405, error_body(
                f"Method not allowed: {request.method.decode('latin-1')}"))
        segments: list[bytes] = list(request.postpath or [])
        if segments in ([b"config"], [b""], [b"index.html"]):
            # (they show the caller: found first, from a token or the session cookie)
            d = defer.ensureDeferred(self._personal(request, segments))
            d.addErrback(self._failed, request)
            return NOT_DONE_YET
        return self._render(request, segments)

    async def _personal(self, request: Any, segments: list[bytes]) -> None:
        if self.auth is not None:
            try:
                await self.auth.caller(request)
            except ApiError as e:
                _send(request, e.status, error_body(e.message), JSON_TYPE,
                      error_headers(e))
                return
        if not request._disconnected:
            self._render(request, segments)

    @staticmethod
    def _failed(failure: Any, request: Any) -> None:
        log.failure("answering {uri}", failure, uri=request.uri)
        if not request._disconnected and not request.startedWriting:
            _send(request, 500, error_body("internal error - see logs"))

    def _render(self, request: Any, segments: list[bytes]) -> Any:
        if segments == [b"config"]:
            body = frontend.config_json(self.frontend_config(request))
            return _send(request, 200, body, CONFIG_TYPE, {b"cache-control": CONFIG_CACHE})
        if segments == [b"avatar"]:
            return _send_asset(request, self.avatar)
        if len(segments) > 1 and segments[0] == b"plugins" and segments[1]:
            name = segments[1].decode("utf-8", "replace")
            return _send(request, 404, error_body(
                f"Web UI plugin not installed: {name} (this server serves no plugins)"))
        if segments in ([b""], [b"index.html"]):
            return self._index(request)
        if self.static is not None:
            if segments in _DOUBLE_SLASH_ICONS:
                segments = segments[1:]
            asset = self.static.get(segments)
            if asset is not None:
                return _send_asset(request, asset)
        return _send(request, 404, error_body(f"Not found: {sent_path(request)}"))

    def frontend_config(self, request: IRequest) -> dict[str, Any]:
        """The configuration for ``request``'s caller
        (:func:`~buildbot_rest.www.frontend.frontend_config`)."""
        return frontend.frontend_config(self.config, base_url=self.connector.base_url,
                                        auth=self.auth, request=request, ui=self.ui)

    def _index(self, request: Any) -> Any:
        index = self.static.get([b"index.html"]) if self.static is not None else None
        if index is None:
            reason = (self.ui.reason if isinstance(self.ui, frontend.NoUi) else
                      "the web UI's index.html cannot be read")
            api = frontend.buildbot_url(self.config, self.connector.base_url, request)
            return _send(request, 404, error_body(f"{reason} (the API is at {api}api/v2)"))
        page = frontend.render_index(index.data.decode("utf-8", "replace"),
                                     self.frontend_config(request))
        responder = Responder(request)
        responder.send(200, page.encode("utf-8"), CONTENT_TYPES["html"],
                       {b"cache-control": INDEX_CACHE})
        return NOT_DONE_YET


def _send(request: Any, status: int, body: bytes, content_type: bytes = JSON_TYPE,
          headers: dict[bytes, bytes] | None = None) -> Any:
    """A small answer, uncompressed (as upstream's ``/config``); HEAD without its body."""
    responder = Responder(request)
    responder.start(status, content_type, compress=False, length=len(body), headers=headers)
    responder.write(body)
    responder.finish()
    return NOT_DONE_YET


def _send_asset(request: Any, asset: Asset) -> Any:
    """A static file: compressed if the client accepts it, 304 when ``If-None-Match``
    names its ETag (RFC 9110 13.1.2), by slices as the transport takes them."""
    body, tag = asset.data, asset.etag
    request.setHeader(b"content-type", asset.content_type)
    request.setHeader(b"cache-control", asset.cache_control)
    if asset.compressible:
        add_vary(request, b"Accept-Encoding")
        # Several Accept-Encoding lines make one list (RFC 9110 5.3).
        lines = request.requestHeaders.getRawHeaders(b"accept-encoding") or []
        chosen = choose_encoding(b",".join(lines))
        if chosen is not None:
            coding, encoder = chosen
            body, tag = asset.coded(coding, encoder), f"{tag}-{coding}"
            request.setHeader(b"content-encoding", coding.encode())
    etag = f'"{tag}"'.encode()
    request.setHeader(b"etag", etag)
    request.setHeader(b"content-length", str(len(body)).encode())
    if _names_etag(request, etag):
        request.setResponseCode(304)
        request.finish()
    elif request.method == b"HEAD":
        request.finish()
    else:
        # (a piece at a time, as the transport takes them; a client that goes away
        # stops the transfer, and there is nothing to finish then)
        done = FileSender().beginFileTransfer(io.BytesIO(body), request)
        done.addCallbacks(lambda _: request.finish(), lambda _: None)
    return NOT_DONE_YET


def _names_etag(request: Any, etag: bytes) -> bool:
    """Whether ``If-None-Match`` names ``etag`` or is ``*`` (weak comparison)."""
    lines = request.requestHeaders.getRawHeaders(b"if-none-match") or []
    for line in lines:
        for item in line.split(b","):
            item = item.strip()
            if item == b"*" or item.removeprefix(b"W/") == etag:
                return True
    return False
