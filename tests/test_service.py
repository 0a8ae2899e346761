"""Tests of RestService embedded in a program's own site, and of its clean stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, endpoints, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.web.resource import Resource
from twisted.web.server import Site

from buildbot_rest.config import Config
from buildbot_rest.service import RestService
from buildbot_rest.www.site import InFlight


async def fetch(url: str) -> tuple[int, Any]:
    response = await treq.get(url, headers={"Accept": ["application/json"]}, persistent=False)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_mounted_under_any_name(tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", port=None,
                              base_url="http://ci.example.org/"))
    root = Resource()
    root.putChild(b"api", rest.resource())
    other = Resource()
    root.putChild(b"bb", other)
    other.putChild(b"rest", rest.resource())
    rest.startService()
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(root))
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        assert await fetch(base + "/api") == (
            200, {"api_versions": {"v2": "http://ci.example.org/api/v2"}})
        for prefix in ("/api", "/bb/rest"):
            code, body = await fetch(base + prefix + "/v2")
            assert code == 200
            assert {"name": "builders"} in body["rootlinks"]
            code, body = await fetch(base + prefix + "/v2/builders")
            assert (code, body["builders"]) == (200, [])
    finally:
        await port.stopListening()
        await rest.stopService()
    assert not rest.running


@pytest_twisted.ensureDeferred
async def test_listens_and_stops(tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}",
                              port="tcp:0:interface=127.0.0.1"))
    rest.startService()
    await defer.succeed(None)
    host = rest.web.port.getHost()  # type: ignore[union-attr]
    # a derived base_url names the port actually bound
    assert rest.connector.base_url == f"http://localhost:{host.port}/"  # type: ignore[union-attr]
    code, body = await fetch(f"http://127.0.0.1:{host.port}/api")
    assert code == 200
    assert body == {"api_versions": {"v2": f"http://localhost:{host.port}/api/v2"}}
    await rest.stopService()
    with pytest.raises(ConnectionRefusedError):
        await fetch(f"http://127.0.0.1:{host.port}/api")


class FakeRequest:
    def __init__(self) -> None:
        self.finished: defer.Deferred[None] = defer.Deferred()

    def notifyFinish(self) -> defer.Deferred[None]:
        return self.finished


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_requests_in_flight() -> None:
    in_flight = InFlight(reactor)
    first, second = FakeRequest(), FakeRequest()
    in_flight.add(first)  # type: ignore[arg-type]
    in_flight.add(second)  # type: ignore[arg-type]
    drained = in_flight.drained(30)
    first.finished.callback(None)
    assert not drained.called
    second.finished.errback(Exception("connection lost"))
    assert await drained is True
    assert len(in_flight) == 0


@pytest_twisted.ensureDeferred
async def test_stop_gives_up_after_the_timeout() -> None:
    in_flight = InFlight(reactor)
    request = FakeRequest()
    in_flight.add(request)  # type: ignore[arg-type]
    assert await in_flight.drained(0.05) is False
    request.finished.callback(None)


async def _serve_and_get(rest: RestService, *paths: str) -> None:
    rest.startService()
    await defer.succeed(None)
    host = rest.web.port.getHost()  # type: ignore[union-attr]
    try:
        for path in paths:
            code, _ = await fetch(f"http://127.0.0.1:{host.port}{path}")
            assert code == 200
    finally:
        await rest.stopService()


@pytest.mark.parametrize("setting", ["-", "off", "file"])
@pytest_twisted.ensureDeferred
async def test_access_log(tmp_path: Path, setting: str) -> None:
    from twisted.logger import globalLogPublisher

    path = tmp_path / "http.log"
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}",
                                  port="tcp:0:interface=127.0.0.1",
                                  access_log=str(path) if setting == "file" else setting))
        await _serve_and_get(rest, "/api/v2/masters", "/api/v2/builders?limit=1")
    finally:
        globalLogPublisher.removeObserver(events.append)
    in_log = [e for e in events if "GET /api/v2/" in str(e.get("log_io", ""))]
    if setting == "-":
        assert len(in_log) == 2
    else:
        assert in_log == []
    if setting == "file":
        lines = path.read_text().splitlines()
        assert len(lines) == 2
        assert '"GET /api/v2/masters HTTP/1.1" 200' in lines[0]
        assert '"GET /api/v2/builders?limit=1 HTTP/1.1" 200' in lines[1]
    else:
        assert not path.exists()


def test_access_log_that_cannot_be_opened(tmp_path: Path) -> None:
    from buildbot_rest.config import ConfigError

    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}",
                              port="tcp:0:interface=127.0.0.1",
                              access_log=str(tmp_path / "no" / "such" / "dir" / "http.log")))
    with pytest.raises(ConfigError, match=r"cannot open the access log .*http\.log"):
        rest.prepare()
