"""The web UI (issue 12): upstream's ``index.html`` with its configuration embedded, its
static files, ``/config``, ``/avatar``, plugins, and the answers without the UI; over a
listening port, with the ``buildbot-www`` of the ``ui`` extra (installed for the tests)."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import endpoints, reactor
from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import Site

import buildbot_rest
import twisted
from buildbot_rest.auth.service import AuthService, Caller
from buildbot_rest.config import Config
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.www import WebApp
from buildbot_rest.www.frontend import NoUi, StaticUi, find_ui
from buildbot_rest.www.ui import UiResource
from tests.www.conftest import Api, Reply
from tests.www.test_edges import JSON_TYPE, assert_common_headers, get_and_head

try:
    WWW = importlib.metadata.distribution("buildbot-www")
except importlib.metadata.PackageNotFoundError:
    if os.environ.get("CI"):
        raise  # (CI installs the extra: the tests must run there)
    pytest.skip("the web UI is not installed: pip install '.[ui]'", allow_module_level=True)
STATIC = Path(str(WWW.locate_file("buildbot_www/static")))
INSTALL = "pip install 'buildbot_rest[ui]'"

#: the keys of the configuration, in order
KEYS = ["port", "plugins", "auth", "authz", "avatar_methods", "ui_default_config", "versions",
        "buildbotURL", "title", "titleURL", "multiMaster", "user"]

_EMBEDDED = re.compile(r'<script id="bb-config">\s*window\.buildbotFrontendConfig = '
                       r'(.*?);\s*</script>', re.S)


@asynccontextmanager
async def serving(api_sqlite: Api, *, config: Config | None = None,
                  base_url: str | None = None, auth: Any = None,
                  find: Callable[[], StaticUi | NoUi] | None = None,
                  mount: bytes | None = None) -> AsyncIterator[Api]:
    """The web application over the demo database on a port of its own, with ``config``;
    ``find`` replaces the lookup of the UI; ``mount``: served below that name. The
    connector's ``base_url`` is the configuration's (as the service makes it), else
    ``http://testserver/``."""
    if base_url is None:
        base_url = config.base_url or "/" if config is not None else "http://testserver/"
    connector = DataConnector(api_sqlite.db, config=config, base_url=base_url)
    web = WebApp(connector, auth=auth)
    if find is not None:
        web.ui = UiResource(connector, auth=auth, find_ui=find)
    root: Any = web.resource()
    if mount is not None:
        root = Resource()
        root.putChild(mount, web.resource())
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(root))
    try:
        yield Api(f"http://127.0.0.1:{port.getHost().port}/", api_sqlite.db, connector)
    finally:
        await port.stopListening()


def embedded(page: bytes) -> Any:
    """The configuration embedded in an index page."""
    found = _EMBEDDED.findall(page.decode())
    assert len(found) == 1, page
    return json.loads(found[0])


def assert_error(r: Reply, status: int, error: str) -> None:
    assert (r.code, r.json) == (status, {"error": error})
    assert r.header("content-type") == JSON_TYPE
    assert_common_headers(r)


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


VERSIONS = [["Python", python_version()],
            ["Twisted", f"{twisted.version.major}.{twisted.version.minor}."
                        f"{twisted.version.micro}"],
            ["buildbot_rest", buildbot_rest.__version__]]


# -- index.html and /config -----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_index_embeds_the_configuration(api_sqlite):
    config = Config(title="Exp", title_url="http://example.org/", base_url="http://ci.example/",
                    ui_default_config={"Builders.buildFetchLimit": 500})
    async with serving(api_sqlite, config=config) as api:
        for path in ("", "index.html"):
            got, _ = await get_and_head(api, path)
            assert got.code == 200
            assert got.header("content-type") == "text/html; charset=utf-8"
            assert got.header("cache-control") == "no-cache, private"
            embedded_config = embedded(got.body)
            template = (STATIC / "index.html").read_text()
            before, _, after = template.partition("<!-- BUILDBOT_CONFIG_PLACEHOLDER -->")
            text = got.body.decode()
            assert text.startswith(before) and text.endswith(after)
        r = await api.request("GET", "config", raw=True)
        assert r.json == embedded_config
        assert list(r.json) == KEYS
        assert r.json == {
            "port": "tcp:8010:interface=127.0.0.1", "plugins": {},
            "auth": {"name": "NoAuth"}, "authz": {}, "avatar_methods": {"name": "local"},
            "ui_default_config": {"Builders.buildFetchLimit": 500},
            "versions": [*VERSIONS, ["buildbot-www", WWW.version]],
            "buildbotURL": "http://ci.example/", "title": "Exp",
            "titleURL": "http://example.org/", "multiMaster": False,
            "user": {"anonymous": True}}


@pytest_twisted.ensureDeferred
async def test_config_as_upstream_sends_it(api_sqlite):
    async with serving(api_sqlite, config=Config(port=None)) as api:
        got, _ = await get_and_head(api, "config")
        assert got.code == 200
        assert got.header("content-type") == "application/json"
        assert got.header("cache-control") == "public,max-age=0"
        assert got.header("content-encoding") is None
        # ASCII JSON with the standard separators, as upstream
        assert got.body == json.dumps(got.json).encode("ascii")
        assert got.json["port"] is None
        gz = await api.request("GET", "config", raw=True,
                               headers={"Accept-Encoding": "gzip"})
        assert gz.header("content-encoding") is None and gz.body == got.body


@pytest_twisted.ensureDeferred
async def test_buildbot_url_is_where_the_page_was_opened_unless_configured(api_sqlite):
    """A derived ``base_url`` (no setting) gives the request's own origin, so that the
    UI opened at http://127.0.0.1:<port>/ does not warn that it is misconfigured."""
    async with serving(api_sqlite, config=Config(port="tcp:8010")) as api:
        r = await api.request("GET", "config", raw=True)
        assert r.json["buildbotURL"] == api.root
        for host, url in (("CI.Example.org", "http://ci.example.org/"),
                          ("ci.example.org:80", "http://ci.example.org/"),
                          ("ci.example.org:8443", "http://ci.example.org:8443/"),
                          ("[::1]:8010", "http://[::1]:8010/"),
                          ("ci_1:8010", "http://ci_1:8010/"),
                          # not a host: the derived base_url
                          ("a b", "http://localhost:8010/"),
                          ("x/y", "http://localhost:8010/")):
            r = await api.request("GET", "", raw=True, headers={"Host": host})
            assert embedded(r.body)["buildbotURL"] == url, host
    # no configuration: the connector's absolute base_url, or the origin
    async with serving(api_sqlite) as api:
        r = await api.request("GET", "config", raw=True)
        assert r.json["buildbotURL"] == "http://testserver/"
        assert r.json["port"] is None
    async with serving(api_sqlite, base_url="/") as api:
        r = await api.request("GET", "config", raw=True)
        assert r.json["buildbotURL"] == api.root
    # mounted below a name of a site: the mount point is part of it
    async with serving(api_sqlite, config=Config(), mount=b"bb") as api:
        r = await api.request("GET", "bb/", raw=True)
        assert r.code == 200
        assert embedded(r.body)["buildbotURL"] == api.root + "bb/"
        r = await api.request("GET", "bb/assets/index-CQKNRskk.css", raw=True)
        assert r.body == (STATIC / "assets/index-CQKNRskk.css").read_bytes()


class Users(AuthService):
    """An authentication that knows one user and describes itself."""

    async def _find_caller(self, request: Any) -> Caller:
        return Caller(user={"username": "ann", "email": "ann@example.org",
                            "full_name": "Ann"})

    def frontend_auth(self) -> dict[str, Any]:
        return {"name": "UserPasswordAuth"}


@pytest_twisted.ensureDeferred
async def test_user_and_auth(api_sqlite):
    async with serving(api_sqlite) as api:
        r = await api.request("GET", "config", raw=True)
        assert (r.json["user"], r.json["auth"]) == ({"anonymous": True}, {"name": "NoAuth"})
    async with serving(api_sqlite, auth=Users()) as api:
        for path in ("config", ""):
            r = await api.request("GET", path, raw=True)
            value = r.json if path else embedded(r.body)
            assert value["user"] == {"username": "ann", "email": "ann@example.org",
                                     "full_name": "Ann"}
            assert value["auth"] == {"name": "UserPasswordAuth"}


@pytest_twisted.ensureDeferred
async def test_a_title_cannot_end_the_script(api_sqlite):
    title = "</script><script>alert(1)</script><!-- & \u2028\u2029 é"
    async with serving(api_sqlite, config=Config(title=title)) as api:
        r = await api.request("GET", "", raw=True)
        page = r.body.decode()
        assert page.count("</script>") == (STATIC / "index.html").read_text().count(
            "</script>") + 1
        assert "alert" in page and "<script>alert" not in page
        assert "\u2028" not in page and "\u2029" not in page
        assert embedded(r.body)["title"] == title
        r = await api.request("GET", "config", raw=True)
        assert r.json["title"] == title


# -- static files ---------------------------------------------------------------------------

def static_files() -> list[str]:
    return sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*")
                  if p.is_file() and p.name != "index.html")


TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
         "png": "image/png", "svg": "image/svg+xml", "json": "application/json",
         "txt": "text/plain; charset=utf-8"}


@pytest_twisted.ensureDeferred
async def test_static_files_as_installed(api_sqlite):
    files = static_files()
    assert {"icon.png", "icon.svg", "manifest.json", "robots.txt", "browser-warning.js",
            "browser-warning.css", "browser-warning-list.js"} <= set(files)
    assert any(f.startswith("assets/") and f.endswith(".js") for f in files)
    async with serving(api_sqlite) as api:
        for name in files:
            data = (STATIC / name).read_bytes()
            got, head = await get_and_head(api, name)
            assert (got.code, got.body) == (200, data), name
            assert got.header("content-type") == TYPES[name.rpartition(".")[2]], name
            assert got.header("cache-control") == (
                "public, max-age=31536000, immutable" if name.startswith("assets/")
                else "public, max-age=600"), name
            etag = got.header("etag")
            assert etag and head.header("etag") == etag, name
            r = await api.request("GET", name, raw=True, headers={"If-None-Match": etag})
            assert (r.code, r.body, r.header("etag")) == (304, b"", etag), name
            zipped = await api.request("GET", name, raw=True,
                                       headers={"Accept-Encoding": "gzip"})
            assert zipped.code == 200
            if name.endswith(".png") or len(data) < 256:
                assert zipped.header("content-encoding") is None and zipped.body == data
            else:
                assert zipped.header("content-encoding") == "gzip", name
                assert zipped.header("vary") == "Accept-Encoding"
                assert gzip.decompress(zipped.body) == data, name
                assert zipped.header("etag") not in (None, etag)
        # the icons the build pages ask for at buildbotURL + "/icon.*"
        for name in ("icon.svg", "icon.png"):
            r = await api.request("GET", "/" + name, raw=True)
            assert (r.code, r.body) == (200, (STATIC / name).read_bytes())


@pytest.mark.parametrize("path", [
    "../setup.py", "%2e%2e/VERSION", "%2E%2E/__init__.py", "assets/%2e%2e/index.html",
    "assets/..%2F..%2FVERSION", "%2Fetc%2Fpasswd", "..%5C__init__.py", "assets/%00.js",
    "assets", "assets/", "assets//index-CQKNRskk.css", ".", "./icon.png", "%2e/icon.png",
    "icon.png/", "///icon.png", "%FF", "nothing.js", "favicon.ico", "//robots.txt",
    "ws/x", "plugins", "plugins/",
])
@pytest_twisted.ensureDeferred
async def test_not_found(api_sqlite, path):
    async with serving(api_sqlite) as api:
        got, _ = await get_and_head(api, path)
        assert_error(got, 404, f"Not found: /{path}")


@pytest_twisted.ensureDeferred
async def test_no_way_out_of_the_folder(api_sqlite, tmp_path):
    """A folder of the test's own: a symbolic link out of it is not followed, one
    inside it is."""
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text("<html><!-- BUILDBOT_CONFIG_PLACEHOLDER --></html>")
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "out.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "up").symlink_to(tmp_path)
    (folder / "in.txt").symlink_to(folder / "index.html")
    async with serving(api_sqlite, find=lambda: StaticUi(folder, "4.3.0")) as api:
        for path in ("out.txt", "up/secret.txt"):
            assert_error(await api.request("GET", path, raw=True), 404, f"Not found: /{path}")
        r = await api.request("GET", "in.txt", raw=True)
        assert (r.code, r.header("content-type")) == (200, "text/plain; charset=utf-8")
        r = await api.request("GET", "", raw=True)
        assert embedded(r.body)["versions"][-1] == ["buildbot-www", "4.3.0"]


# -- avatar, plugins, methods --------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_avatar_is_local(api_sqlite):
    async with serving(api_sqlite) as api:
        for path in ("avatar", "avatar?email=ann%40example.org&username=ann",
                     "avatar?email=unknown"):
            got, _ = await get_and_head(api, path)
            assert got.code == 200 and got.header("location") is None
            assert got.header("content-type") == "image/svg+xml"
            assert got.header("cache-control") == "public, max-age=600"
            assert got.body.startswith(b"<svg ") and got.body.endswith(b"</svg>\n")


@pytest_twisted.ensureDeferred
async def test_plugins_are_not_installed(api_sqlite):
    async with serving(api_sqlite) as api:
        for path, name in (("plugins/console_view/scripts.js", "console_view"),
                           ("plugins/grid_view/styles.css", "grid_view"),
                           ("plugins/waterfall_view", "waterfall_view")):
            got, _ = await get_and_head(api, path)
            assert_error(got, 404, f"Web UI plugin not installed: {name} "
                                   "(this server serves no plugins)")


@pytest_twisted.ensureDeferred
async def test_other_methods(api_sqlite):
    async with serving(api_sqlite) as api:
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            for path in ("", "config", "icon.png", "nothing"):
                r = await api.request(method, path, raw=True)
                assert_error(r, 405, f"Method not allowed: {method}")
                assert r.header("allow") == "GET, HEAD"


# -- without the UI -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_without_the_ui(api_sqlite):
    missing = find_ui("buildbot-www-not-installed")
    assert missing == NoUi(f"the web UI is not installed: {INSTALL}")
    for config, reason in ((None, missing.reason),
                           (Config(ui=False),
                            "the web UI is turned off (the setting ui = false)")):
        find = None if config is not None else (lambda: missing)
        async with serving(api_sqlite, config=config, find=find) as api:
            for path in ("", "index.html"):
                got, _ = await get_and_head(api, path)
                base = "http://testserver/" if config is None else api.root
                assert_error(got, 404, f"{reason} (the API is at {base}api/v2)")
            for path in ("icon.png", "assets/index-D1Qujclx.js", "/icon.svg"):
                assert_error(await api.request("GET", path, raw=True), 404,
                             f"Not found: /{path}")
            r = await api.request("GET", "config", raw=True)
            assert (r.code, r.json["versions"]) == (200, VERSIONS)
            r = await api.request("GET", "avatar", raw=True)
            assert (r.code, r.header("content-type")) == (200, "image/svg+xml")
            r = await api.request("GET", "api/v2/builders/1", raw=True)
            assert r.code == 200


def fake_distribution(root: Path, version: str, *, index: bool) -> None:
    """An installed distribution ``fake-www`` with upstream's layout, under ``root``."""
    info = root / f"fake_www-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-www\n"
                                   f"Version: {version}\n")
    static = root / "buildbot_www" / "static"
    static.mkdir(parents=True)
    if index:
        (static / "index.html").write_text("<html></html>")


@pytest.mark.parametrize("version,index,found", [
    ("4.3.0", True, True), ("4.3.7", True, True), ("4.4.0", True, False),
    ("3.11.9", True, False), ("4.3.0", False, False),
])
def test_find_ui(tmp_path, monkeypatch, version, index, found):
    fake_distribution(tmp_path, version, index=index)
    monkeypatch.syspath_prepend(str(tmp_path))
    ui = find_ui("fake-www")
    static = (tmp_path / "buildbot_www" / "static").resolve()
    if found:
        assert ui == StaticUi(static, version)
    elif index:
        assert ui == NoUi(f"the web UI needs fake-www 4.3.x, not {version}: {INSTALL}")
    else:
        assert ui == NoUi(f"fake-www {version} has no {static / 'index.html'}: "
                          f"reinstall it with {INSTALL}")


def test_says_once_which_ui_it_serves(api_sqlite):
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "buildbot_rest.www.ui":
            seen.append(event["log_format"].format(**event))

    globalLogPublisher.addObserver(observe)
    try:
        connector = DataConnector(api_sqlite.db)
        UiResource(connector, auth=None)
        UiResource(connector, auth=None, find_ui=lambda: NoUi("gone"))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert seen == [f"web UI: serving buildbot-www {WWW.version} from {STATIC.resolve()}",
                    "web UI: not served: gone"]


_SERVE_ALONE = """
import sys
import treq
from twisted.internet import defer, endpoints, task
from twisted.web.server import Site
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.www.ui import UiResource

class Db:
    pass

async def main(reactor):
    ui = UiResource(DataConnector(Db()), auth=None)
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(ui))
    try:
        for path in ("", "assets/index-D1Qujclx.js", "config", "avatar"):
            r = await treq.get(f"http://127.0.0.1:{port.getHost().port}/{path}",
                               persistent=False)
            assert r.code == 200 and await r.content(), path
    finally:
        await port.stopListening()
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("buildbot", "buildbot_www")))

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


def test_never_imports_upstream():
    """Serving the UI imports neither ``buildbot`` nor ``buildbot_www`` (both installed
    with the extra): a process of its own serves a page, a file, the configuration and
    an avatar."""
    out = subprocess.run([sys.executable, "-c", _SERVE_ALONE], capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr
