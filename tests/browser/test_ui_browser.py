"""Upstream's web UI (``buildbot-www`` 4.3.0) in headless Chromium against our standalone
server over a demo database (issue 12).

Each page is loaded afresh and must show the database's data (the expected text is read
from the REST API, never written here), with no failed request, no request off-site, no
error on the console and its one WebSocket to ``/ws`` still open; failures that upstream's
own server gives the same UI are accepted only as listed in ``KNOWN_FAILURES`` of
conftest.py, each with its reason (ui-client.md section 6). Then events: a build request
forced through the API appears on the open builder page, and leaves it when cancelled,
without a reload; a scheduler switched off through the API is unticked on the open
schedulers page. The force form of the UI starts a request; and the server stops cleanly
after it all.

Screenshots of every page are kept (see tests/browser/conftest.py for where).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import (
    FORCE_SCHEDULER,
    PASSWORD,
    USER,
    Browser,
    PageRecord,
    UiServer,
    problems,
)


def check_page(browser: Browser, server: UiServer, name: str) -> PageRecord:
    """Once the page shows what it must: wait for its requests to end, keep a screenshot
    and check that nothing went wrong, in the page or in the server's log."""
    record = browser.settle()
    browser.screenshot(name)
    ws = browser.root.replace("http://", "ws://", 1) + "ws"
    assert list(record.websockets.values()) == [ws], record.websockets
    assert problems(record, browser.root) == []
    assert server.log_problems() == []
    return record


# -- what each page must show, from the REST API --------------------------------------------

def _names(server: UiServer, collection: str) -> dict[int, str]:
    key = collection.rstrip("s") + "id"
    return {e[key]: e["name"] for e in server.get(collection)[collection]}


def _failed_build(server: UiServer) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The newest failed build, its failed step and that step's first log."""
    build = server.get("builds?results=2&complete=true&order=-buildid&limit=1")["builds"][0]
    step = server.get(f"builds/{build['buildid']}/steps?results=2")["steps"][0]
    log = server.get(f"steps/{step['stepid']}/logs")["logs"][0]
    return build, step, log


def _log_lines(server: UiServer, log: dict[str, Any]) -> list[str]:
    """The log's lines as the UI shows them: without the stream letter of a stdio log."""
    chunks = server.get(f"logs/{log['logid']}/contents")["logchunks"]
    lines = "".join(c["content"] for c in chunks).splitlines()
    if log["type"] == "s":
        lines = [line[1:] for line in lines]
    return [line for line in lines if line.strip()]


def home(server: UiServer) -> tuple[str, list[str]]:
    builders = _names(server, "builders")
    recent = server.get("builds?order=-buildid&complete=true&limit=20")["builds"]
    running = server.get("builds?complete=false")["builds"]
    return "#/", [f"{len(recent)} recent builds",
                  *(f"{builders[b['builderid']]}/{b['number']}" for b in recent + running)]


def builders(server: UiServer) -> tuple[str, list[str]]:
    active = {m["masterid"] for m in server.get("masters")["masters"] if m["active"]}
    shown = [b for b in server.get("builders")["builders"] if active & set(b["masterids"])]
    return "#/builders", [text for b in shown for text in (b["name"], *b["tags"])]


def builder(server: UiServer) -> tuple[str, list[str]]:
    build, _, _ = _failed_build(server)
    one = server.get(f"builders/{build['builderid']}")["builders"][0]
    workers = _names(server, "workers")
    builds = server.get(f"builds?builderid={one['builderid']}&order=-number&limit=10")["builds"]
    return f"#/builders/{one['builderid']}", [
        one["name"], *([one["description"]] if one["description"] else []), FORCE_SCHEDULER,
        *(f"({b['number']})" for b in builds), *(b["state_string"] for b in builds),
        *(workers[b["workerid"]] for b in builds)]


def build(server: UiServer) -> tuple[str, list[str]]:
    failed, _, log = _failed_build(server)
    steps = server.get(f"builds/{failed['buildid']}/steps")["steps"]
    worker = server.get(f"workers/{failed['workerid']}")["workers"][0]["name"]
    # the failed step is expanded and previews the end of its log (LogPreview.loadlines)
    return f"#/builders/{failed['builderid']}/builds/{failed['number']}", [
        failed["state_string"], f"Worker: {worker}", log["name"],
        *(s["name"] for s in steps), *(s["state_string"] for s in steps),
        *_log_lines(server, log)[-5:]]


def log_page(server: UiServer) -> tuple[str, list[str]]:
    failed, step, log = _failed_build(server)
    lines = _log_lines(server, log)
    return (f"#/builders/{failed['builderid']}/builds/{failed['number']}/steps/"
            f"{step['number']}/logs/{log['slug']}",
            # (the viewer draws the lines in view: the start, and all of a short log)
            [step["name"], log["name"], *lines[:10], *(lines[-1:] if len(lines) <= 40 else [])])


def workers(server: UiServer) -> tuple[str, list[str]]:
    rows = server.get("workers")["workers"]
    return "#/workers", [w["name"] for w in rows] + [
        w["pause_reason"] for w in rows if w.get("pause_reason")]


def changes(server: UiServer) -> tuple[str, list[str]]:
    rows = server.get("changes?limit=10&order=-changeid")["changes"]
    return "#/changes", [c["comments"].splitlines()[0] for c in rows]


def pending(server: UiServer) -> tuple[str, list[str]]:
    builders = _names(server, "builders")
    rows = server.get("buildrequests?claimed=false")["buildrequests"]
    return "#/pendingbuildrequests", [
        text for r in rows for text in (f"#{r['buildrequestid']}", builders[r["builderid"]])]


def masters(server: UiServer) -> tuple[str, list[str]]:
    return "#/masters", list(_names(server, "masters").values())


def schedulers(server: UiServer) -> tuple[str, list[str]]:
    masters = _names(server, "masters")
    rows = server.get("schedulers")["schedulers"]
    return "#/schedulers", [r["name"] for r in rows] + [
        masters[r["master"]["masterid"]] for r in rows if r["master"]]


PAGES: dict[str, Callable[[UiServer], tuple[str, list[str]]]] = {
    "home": home, "builders": builders, "builder": builder, "build": build, "log": log_page,
    "workers": workers, "changes": changes, "pending": pending, "masters": masters,
    "schedulers": schedulers,
}


@pytest.mark.parametrize("name", PAGES)
def test_page_shows_the_database(browser: Browser, ui_server: UiServer, name: str) -> None:
    fragment, expected = PAGES[name](ui_server)
    assert expected
    browser.open(fragment)
    text = browser.wait_for_texts(expected)
    if name == "home":
        # the page warns when its URL is not the configured buildbotURL (base_url)
        assert "misconfigured" not in text
    check_page(browser, ui_server, name)


def test_change_details(browser: Browser, ui_server: UiServer) -> None:
    """A change unfolds to its author, repository, branch and revision."""
    from selenium.webdriver.common.by import By

    change = ui_server.get("changes?limit=1&order=-changeid")["changes"][0]
    browser.open("#/changes")
    subject = change["comments"].splitlines()[0]
    browser.wait_for_texts([subject])
    item = browser.driver.find_element(
        By.XPATH, f"//a[@href='#/changes/{change['changeid']}']/ancestor::li[1]")
    item.find_element(By.CSS_SELECTOR, "svg.clickable").click()
    browser.wait_for_texts([change["author"], change["repository"], change["branch"],
                            change["revision"], *change["files"]])
    check_page(browser, ui_server, "change-details")


# -- events over /ws ------------------------------------------------------------------------

def _requests_section(text: str) -> str:
    """The builder page's table of waiting requests."""
    return text.partition("Builds requests:")[2].partition("Builds:")[0]


def _frames(record: PageRecord) -> list[str]:
    return [json.loads(f).get("k", "") for f in record.frames]


def test_forced_request_appears_live(browser: Browser, ui_server: UiServer) -> None:
    waiting = {r["builderid"] for r in ui_server.get("buildrequests?claimed=false")
               ["buildrequests"]}
    one = next(b for b in ui_server.get("builders?order=name")["builders"]
               if b["builderid"] not in waiting)
    browser.open(f"#/builders/{one['builderid']}")
    browser.wait_until("no waiting request",
                       lambda text: _requests_section(text).split() == ["None"])
    check_page(browser, ui_server, "builder-before-force")
    browser.driver.execute_script("window.buildbotRestMark = 1")

    _, brids = ui_server.rpc(f"forceschedulers/{FORCE_SCHEDULER}", "force",
                                builderid=one["builderid"], reason="browser test")
    brid = brids[str(one["builderid"])]
    browser.wait_until(f"request {brid}", lambda text: any(
        line.split()[:1] == [str(brid)] for line in _requests_section(text).splitlines()))
    check_page(browser, ui_server, "builder-forced")

    ui_server.rpc(f"buildrequests/{brid}", "cancel", reason="browser test done")
    browser.wait_until(f"request {brid} gone",
                       lambda text: _requests_section(text).split() == ["None"])
    record = check_page(browser, ui_server, "builder-cancelled")
    # the same page all along, told over its WebSocket
    assert browser.driver.execute_script("return window.buildbotRestMark") == 1
    keys = _frames(record)
    # (the page subscribes to buildrequests/*/*, not to buildsets: no buildsets/{bsid}/new)
    assert f"buildrequests/{brid}/new" in keys
    assert f"buildrequests/{brid}/complete" in keys


def test_scheduler_switch_appears_live(browser: Browser, ui_server: UiServer) -> None:
    from selenium.webdriver.common.by import By

    scheduler = next(s for s in ui_server.get("schedulers?order=name")["schedulers"]
                     if s["enabled"])
    browser.open("#/schedulers")
    browser.wait_for_texts([scheduler["name"]])
    box = browser.driver.find_element(
        By.XPATH, f"//tr[td[2][normalize-space()='{scheduler['name']}']]//input")
    assert box.is_selected()
    browser.driver.execute_script("window.buildbotRestMark = 2")
    try:
        ui_server.rpc(f"schedulers/{scheduler['schedulerid']}", "enable", enabled=False)
        browser.wait_until(f"{scheduler['name']} unticked", lambda _: not box.is_selected())
    finally:
        ui_server.rpc(f"schedulers/{scheduler['schedulerid']}", "enable", enabled=True)
    browser.wait_until(f"{scheduler['name']} ticked again", lambda _: box.is_selected())
    record = check_page(browser, ui_server, "schedulers-switched")
    assert browser.driver.execute_script("return window.buildbotRestMark") == 2
    assert _frames(record).count(f"schedulers/{scheduler['schedulerid']}/updated") == 2


def test_force_dialog_starts_a_request(browser: Browser, ui_server: UiServer) -> None:
    """The builder page's force form, as a user fills it: the UI posts its own body (the
    builder's id as a string) and follows the answer to the new request's page."""
    from selenium.webdriver.common.by import By

    one = ui_server.get("builders?order=name&limit=1")["builders"][0]
    browser.open(f"#/builders/{one['builderid']}/force/{FORCE_SCHEDULER}")
    browser.wait_for_texts(["Start build", one["name"]])
    browser.driver.find_element(By.XPATH, "//button[normalize-space()='Start build']").click()
    browser.wait_until("the new request's page",
                       lambda _: "#/buildrequests/" in browser.driver.current_url)
    brid = int(re.findall(r"#/buildrequests/(\d+)", browser.driver.current_url)[0])
    try:
        request = ui_server.get(f"buildrequests/{brid}")["buildrequests"][0]
        assert request["builderid"] == one["builderid"]
        properties = ui_server.get(f"buildsets/{request['buildsetid']}/properties")[
            "properties"][0]
        assert properties["scheduler"] == [FORCE_SCHEDULER, "Scheduler"]
        # the request's page lists its buildset's properties, values as JSON
        browser.wait_for_texts([one["name"], str(brid), *(
            text for name, (value, source) in properties.items()
            for text in (name, json.dumps(value), source))])
        check_page(browser, ui_server, "force-dialog")
    finally:
        ui_server.rpc(f"buildrequests/{brid}", "cancel", reason="browser test done")


def _login_bar(browser: Browser, title: str) -> None:
    """Open the login bar's menu (its toggle shows ``title``)."""
    from selenium.webdriver.common.by import By
    toggle = browser.driver.find_element(By.ID, "bb-loginbar-dropdown")
    assert toggle.text.strip() == title
    toggle.click()


def _menu_item(browser: Browser, label: str) -> Any:
    """The item ``label`` of the open menu, once shown."""
    from selenium.webdriver.common.by import By
    found: list[Any] = []

    def shown(_: str) -> bool:
        found[:] = [e for e in browser.driver.find_elements(By.CSS_SELECTOR, "a.dropdown-item")
                    if e.text.strip() == label]
        return bool(found)

    browser.wait_until(f"the menu item {label!r}", shown)
    return found[0]


def test_login_and_logout_through_the_ui(browser: Browser, ui_server: UiServer) -> None:
    """The login bar's own items: "Login" goes to ``/auth/login``, whose Basic challenge
    the browser answers (headless Chromium has no password prompt, so the credentials a
    user would type there are given to it through DevTools); the page comes back logged
    in (the session cookie: HttpOnly, SameSite=Lax), acts as the user (a build forced
    from the UI is owned by the user's email), and "Logout" makes it anonymous again."""
    import base64

    from selenium.webdriver.common.by import By

    one = ui_server.get("builders?order=name&limit=1")["builders"][0]
    browser.open(f"#/builders/{one['builderid']}")
    browser.wait_for_texts(["Anonymous", one["name"]])
    _login_bar(browser, "Anonymous")
    login = _menu_item(browser, "Login")
    assert login.get_attribute("href") == (
        f"{browser.root}auth/login?redirect=/builders/{one['builderid']}")
    credentials = base64.b64encode(f"{USER['username']}:{PASSWORD}".encode()).decode()
    driver = browser.driver
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {"Authorization": f"Basic {credentials}"}})
    try:
        login.click()
        browser.wait_until("the logged-in page", lambda text: USER["full_name"] in text)
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    # back on the page the login started from, as the user, by the cookie alone
    assert driver.current_url == f"{browser.root}#/builders/{one['builderid']}"
    cookie = driver.get_cookie("TWISTED_SESSION")
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Lax")
    browser.open(f"#/builders/{one['builderid']}/force/{FORCE_SCHEDULER}")
    browser.wait_for_texts(["Start build", USER["full_name"]])
    driver.find_element(By.XPATH, "//button[normalize-space()='Start build']").click()
    browser.wait_until("the new request's page",
                       lambda _: "#/buildrequests/" in driver.current_url)
    brid = int(re.findall(r"#/buildrequests/(\d+)", driver.current_url)[0])
    try:
        request = ui_server.get(f"buildrequests/{brid}")["buildrequests"][0]
        properties = ui_server.get(f"buildsets/{request['buildsetid']}/properties")[
            "properties"][0]
        assert properties["owner"] == [USER["email"], "Force Build Form"]
    finally:
        ui_server.rpc(f"buildrequests/{brid}", "cancel", reason="browser test done")
    check_page(browser, ui_server, "logged-in")
    _login_bar(browser, USER["full_name"])
    _menu_item(browser, "Logout").click()
    browser.wait_until("the logged-out page", lambda text: "Anonymous" in text)
    assert driver.current_url.startswith(f"{browser.root}#/buildrequests/{brid}")
    assert driver.get_cookie("TWISTED_SESSION") is None
    # (the logout reloaded the page: its check starts from a fresh load)
    browser.open(f"#/buildrequests/{brid}")
    browser.wait_for_texts(["Anonymous", str(brid)])
    check_page(browser, ui_server, "logged-out")


def test_server_stops_cleanly_after_the_ui(browser: Browser, ui_server: UiServer) -> None:
    """Last (it stops the module's server): after the UI's pages and their WebSockets, a
    SIGTERM stops the server with nothing left in flight."""
    fragment, expected = builders(ui_server)
    browser.open(fragment)
    browser.wait_for_texts(expected)
    check_page(browser, ui_server, "before-stop")
    log = ui_server.stop()
    assert "[buildbot_rest.service#info] stopped" in log
    assert "not cleanly" not in log
    assert "were cut" not in log
