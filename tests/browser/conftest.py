"""Fixtures of the browser test: our standalone server (``twistd -n buildbot-rest``) over a
demo database with a force scheduler, in a process of its own, and Debian's headless
Chromium driven through its ``chromedriver`` by Selenium, recording every request the page
makes and every error on its console.

A part that cannot start (no Chromium, no chromedriver, no Selenium, no ``buildbot-www``)
skips the tests with the reason, but fails them when ``CI`` is set: CI must run them.
Screenshots and the server's log go to ``$BUILDBOT_REST_ARTEFACTS/browser`` (default
``<checkout>/.artefacts/browser``); the run's summary names the directory.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import pytest

from buildbot_rest.scripts import main as buildbot_rest_command
from tests.conftest import _flag
from tests.integration.test_server import twistd, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: how CI gets them (.ci/run installs them)
DEBIAN_PACKAGES = "apt-get install chromium chromium-driver"

#: the force scheduler the server is configured with (on every builder of the demo)
FORCE_SCHEDULER = "force"
#: the one user of the server (a static user, its password hashed in the configuration)
USER = {"username": "ada", "email": "ada@example.org", "full_name": "Ada Lovelace"}
PASSWORD = "analytical engine"

#: the longest wait for the page to show what it must, or for its requests to end; a
#: bound on a failure, not a speed check (a page normally renders in well under a second)
PAGE_TIMEOUT = 30.0


def cannot_run(what: str, problem: str) -> NoReturn:
    """``what`` cannot start: skip with the reason, or fail when ``CI`` is set."""
    reason = f"the browser test cannot run: no {what}: {problem}"
    if _flag("CI"):
        pytest.fail(f"{reason} (CI is set: it must run there)", pytrace=False)
    pytest.skip(reason)


# -- artefacts ------------------------------------------------------------------------------

def artefacts_dir() -> Path:
    """Where the screenshots and the server's log are kept (emptied at each run)."""
    base = os.environ.get("BUILDBOT_REST_ARTEFACTS")
    return (Path(base) if base else ROOT / ".artefacts") / "browser"


_written: list[Path] = []


@pytest.fixture(scope="session")
def artefacts() -> Path:
    folder = artefacts_dir()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _written.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for folder in _written:
        if any(folder.iterdir()):
            terminalreporter.write_line(f"browser test artefacts (screenshots, server "
                                        f"log): {folder}")


# -- the server -----------------------------------------------------------------------------

@dataclass
class UiServer:
    """Our server over a demo database: ``root`` is its page, ``http://127.0.0.1:<n>/``."""

    root: str
    log: Path
    process: subprocess.Popen[str]

    def stop(self) -> str:
        """Stop the server (SIGTERM, as a service manager does) if it runs; its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> Any:
        """The JSON of ``GET /api/v2/<path>``."""
        request = urllib.request.Request(self.root + "api/v2/" + path,
                                         headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def rpc(self, path: str, method: str, **params: Any) -> Any:
        """The result of a JSON-RPC call ``POST /api/v2/<path>``, as a script makes it (no
        ``Origin``); an error answer fails the test with its body."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        request = urllib.request.Request(self.root + "api/v2/" + path, data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["result"]
        except urllib.error.HTTPError as e:
            pytest.fail(f"{method} on {path}: {e.code} {e.read().decode(errors='replace')}")

    def log_problems(self) -> list[str]:
        """The lines of the server's log that report an error or a traceback."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines()
                if "Traceback" in line or re.search(r"#(error|critical|failure)\]", line)]


def _free_port() -> int:
    # The server needs its port before it starts: the base URL the UI checks names it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _builder_names(db_file: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM builders ORDER BY name")]


@pytest.fixture(scope="module")
def ui_server(artefacts: Path) -> Iterator[UiServer]:
    """``twistd -n buildbot-rest`` over a new demo database, with the force scheduler
    :data:`FORCE_SCHEDULER` on every builder and one static user (:data:`USER`,
    :data:`PASSWORD`), on a free port of 127.0.0.1; stopped with
    SIGTERM (its files deleted, its log kept in the artefacts) at the end."""
    try:
        importlib.metadata.distribution("buildbot-www")
    except importlib.metadata.PackageNotFoundError:
        cannot_run("buildbot-www", "pip install '.[ui]' (tox's py311 environment does)")
    with tempfile.TemporaryDirectory(prefix="buildbot-rest-ui-") as tmp:
        workdir = Path(tmp)
        db_file = workdir / "demo.sqlite"
        assert buildbot_rest_command(["demo-db", "--db", f"sqlite:///{db_file}"]) == 0
        config = workdir / "server.toml"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        config.write_text(f"[[forceschedulers]]\nname = {json.dumps(FORCE_SCHEDULER)}\n"
                          f"builder_names = {json.dumps(_builder_names(db_file))}\n"
                          f"[auth]\nbackend = \"users\"\n"
                          f"[auth.users.{USER['username']}]\n"
                          f"password = {json.dumps(hashed)}\n"
                          f"email = {json.dumps(USER['email'])}\n"
                          f"full_name = {json.dumps(USER['full_name'])}\n")
        port = _free_port()
        log = workdir / "twistd.log"
        proc = twistd("-n", "--logfile", str(log), "--pidfile", str(workdir / "twistd.pid"),
                      "buildbot-rest", "--config", str(config), "--db", f"sqlite:///{db_file}",
                      "--port", f"tcp:{port}:interface=127.0.0.1",
                      "--base-url", f"http://127.0.0.1:{port}/", cwd=workdir,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        server = UiServer(root=f"http://127.0.0.1:{port}/", log=log, process=proc)
        try:
            wait_for(log, r"serving \S+ on IPv4Address", proc)
            yield server
        finally:
            server.stop()
            if log.exists():
                shutil.copy(log, artefacts / "server.log")


# -- the browser ----------------------------------------------------------------------------

@dataclass
class Request:
    """One request of the page, from Chrome's DevTools network events."""

    url: str
    method: str
    status: int | None = None
    error: str | None = None
    done: bool = False


@dataclass
class PageRecord:
    """What the page did since it was opened: its requests by DevTools id, its WebSockets
    by id (their URLs), how they ended if they did, the text frames they received, and
    the console messages of level SEVERE."""

    requests: dict[str, Request] = field(default_factory=dict)
    websockets: dict[str, str] = field(default_factory=dict)
    frames: list[str] = field(default_factory=list)
    closed_websockets: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def add(self, event: dict[str, Any]) -> None:
        """Take one DevTools event of Chrome's performance log."""
        method, params = event.get("method", ""), event.get("params", {})
        rid = params.get("requestId", "")
        if method == "Network.requestWillBeSent":
            if not params["request"]["url"].startswith(("http:", "https:")):
                return  # Chrome's own pages (chrome://, data: URLs)
            if "redirectResponse" in params and rid in self.requests:
                # the same id carries on after a redirect: keep the hop as done
                hop = self.requests.pop(rid)
                hop.status, hop.done = params["redirectResponse"]["status"], True
                self.requests[f"{rid}/{len(self.requests)}"] = hop
            self.requests[rid] = Request(params["request"]["url"],
                                         params["request"]["method"])
        elif method == "Network.responseReceived" and rid in self.requests:
            self.requests[rid].status = params["response"]["status"]
        elif method == "Network.loadingFinished" and rid in self.requests:
            self.requests[rid].done = True
        elif method == "Network.loadingFailed" and rid in self.requests:
            self.requests[rid].done = True
            self.requests[rid].error = params.get("errorText") or "failed"
        elif method == "Network.webSocketCreated":
            self.websockets[rid] = params["url"]
        elif method == "Network.webSocketFrameReceived" and params["response"]["opcode"] == 1:
            self.frames.append(params["response"]["payloadData"])
        elif method in ("Network.webSocketClosed", "Network.webSocketFrameError"):
            self.closed_websockets.append(
                f"{self.websockets.get(rid, rid)}: {method} {params.get('errorMessage', '')}")

    def in_flight(self) -> list[str]:
        return [r.url for r in self.requests.values() if not r.done]

    def failed(self) -> list[Request]:
        return [r for r in self.requests.values()
                if r.error is not None or (r.status is not None and r.status >= 400)]


# -- what counts as a problem --------------------------------------------------------------

@dataclass(frozen=True)
class Known:
    """A failed request that the same UI also gets from upstream 4.3.0, and why the test
    accepts it."""

    url: re.Pattern[str]
    status: int
    reason: str


KNOWN_FAILURES = (
    Known(re.compile(r"/api/v2/buildrequests/\d+/properties$"), 404,
          "ui-client.md 6.2: the pending requests page asks for the properties of each "
          "request, an endpoint upstream 4.3.0 does not have (404 there too); only the "
          "owners and properties columns stay empty"),
)

#: the console message of Chrome for a response with an error status
_LOAD_FAILED = " - Failed to load resource: the server responded with a status of "
#: the UI does not catch the rejection of a failed REST read: one console error each
_UNCAUGHT = re.compile(r"Uncaught (?:\(in promise\) )?\S+: Request failed with status code "
                       r"(\d+)$")


def problems(record: PageRecord, root: str) -> list[str]:
    """What went wrong on the page: failed requests and console errors, but those of
    :data:`KNOWN_FAILURES` (and, for each of those, its console message and the one
    uncaught rejection the UI logs for it); requests off-site; closed WebSockets."""
    found: list[str] = []
    accepted = collections.Counter[int]()
    accepted_urls = set()
    for request in record.failed():
        path = request.url.removeprefix(root.rstrip("/"))
        if any(k.url.search(path) and k.status == request.status for k in KNOWN_FAILURES):
            accepted[request.status or 0] += 1
            accepted_urls.add(request.url)
        else:
            found.append(f"{request.method} {request.url}: {request.status or request.error}")
    found += [f"request off-site: {r.url}" for r in record.requests.values()
              if not r.url.startswith(root)]
    for message in record.console_errors:
        url, sep, _ = message.partition(_LOAD_FAILED)
        if sep and url in accepted_urls:
            continue
        uncaught = _UNCAUGHT.search(message)
        if uncaught and accepted[int(uncaught.group(1))] > 0:
            accepted[int(uncaught.group(1))] -= 1
            continue
        found.append(f"console: {message}")
    found += [f"WebSocket closed: {c}" for c in record.closed_websockets]
    return found


def _words(text: str) -> str:
    return " ".join(text.split())


class Browser:
    """A Chromium page of the UI served at ``root``, with what it did since it was last
    opened in :attr:`record`."""

    def __init__(self, driver: Any, root: str, artefacts: Path) -> None:
        self.driver = driver
        self.root = root
        self.artefacts = artefacts
        self.record = PageRecord()
        self.shots = 0

    def poll(self) -> PageRecord:
        """Read what Chrome logged since the last poll into :attr:`record`."""
        for entry in self.driver.get_log("performance"):
            self.record.add(json.loads(entry["message"])["message"])
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.record.console_errors.append(entry["message"])
        return self.record

    def open(self, fragment: str) -> None:
        """Load the UI afresh at ``fragment`` (``#/builders``...), recording from scratch:
        from ``about:blank``, so that nothing of the previous page is counted."""
        self.driver.get("about:blank")
        self.settle()
        self.record = PageRecord()
        self.driver.get(self.root + fragment)

    def text(self) -> str:
        """The visible text of the page."""
        from selenium.webdriver.common.by import By
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def wait_until(self, what: str, check: Callable[[str], bool]) -> str:
        """Wait until ``check(visible text)``; fails naming ``what`` (and keeps a screenshot
        of the page as it is) as soon as the page has a problem (see :func:`problems`), or
        after :data:`PAGE_TIMEOUT`. Returns the text."""
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            text = self.text()
            if check(text):
                return text
            wrong = problems(self.poll(), self.root)
            if wrong or time.monotonic() > deadline:
                shot = self.screenshot("failed")
                why = "\n".join(wrong + self._bodies()) or f"not shown after {PAGE_TIMEOUT}s"
                pytest.fail(f"{self.driver.current_url}: waiting for {what}: {why}\n"
                            f"(screenshot {shot}); the page shows:\n{text[:3000]}")
            time.sleep(0.1)

    def _bodies(self) -> list[str]:
        """The answers of the failed requests of the page, to say why they failed."""
        bodies = []
        for rid, request in self.record.requests.items():
            if request.status is not None and request.status >= 400:
                try:
                    body = self.driver.execute_cdp_cmd("Network.getResponseBody",
                                                       {"requestId": rid})["body"]
                except Exception:  # noqa: BLE001 - gone with its page: nothing to add
                    continue
                bodies.append(f"answer of {request.method} {request.url}: {body[:500]}")
        return bodies

    def wait_for_texts(self, texts: list[str]) -> str:
        """Wait until every string of ``texts`` is visible (runs of white space count as
        one space: the page lays them out its own way)."""
        missing: list[str] = []
        wanted = {t: _words(t) for t in texts}

        def shown(text: str) -> bool:
            words = _words(text)
            missing[:] = [t for t, w in wanted.items() if w not in words]
            return not missing

        return self.wait_until(f"{missing or texts}", shown)

    def settle(self) -> PageRecord:
        """Wait until none of the page's requests is in flight, twice in a row 0.2 s apart
        (a request that answers often starts another)."""
        deadline = time.monotonic() + PAGE_TIMEOUT
        quiet = 0
        while quiet < 2:
            time.sleep(0.2)
            pending = self.poll().in_flight()
            quiet = 0 if pending else quiet + 1
            if pending and time.monotonic() > deadline:
                pytest.fail(f"requests still in flight after {PAGE_TIMEOUT}s: {pending}")
        return self.record

    def screenshot(self, name: str) -> Path:
        """Save the page as ``<artefacts>/<nn>-<name>.png``."""
        self.shots += 1
        path = self.artefacts / f"{self.shots:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest, artefacts: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless, 1400x1000, a profile of its own (deleted at the end),
    driven by Debian's chromedriver: Selenium Manager is never asked to download one.
    Its pages are those of :func:`ui_server`."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            cannot_run(package, f"{path} is missing ({DEBIAN_PACKAGES})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        cannot_run("selenium", f"{e} (pip install '.[test]')")
    # (only now: no server is started for a browser that cannot be)
    ui_server: UiServer = request.getfixturevalue("ui_server")
    with tempfile.TemporaryDirectory(prefix="buildbot-rest-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     # (containers give /dev/shm 64 MB, too little for Chromium's pages)
                     "--disable-dev-shm-usage",
                     "--window-size=1400,1000", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER),
                          log_output=str(artefacts / "chromedriver.log"))
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except Exception as e:  # noqa: BLE001 - any start failure is reported the same way
            cannot_run("working Chromium", f"it did not start: {e}")
        try:
            yield Browser(driver, ui_server.root, artefacts)
        finally:
            driver.quit()
