"""Tests of RestService embedded in a program's own site, and of its clean stop."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.error import ConnectionRefusedError
from twisted.web.resource import Resource
from twisted.web.server import Site

from buildbot_rest.config import Config
from buildbot_rest.service import RestService
from buildbot_rest.www.site import InFlight
from tests.www.test_disconnect import (  # noqa: F401 - big_sqlite is a fixture
    PROMPT,
    BigData,
    Client,
    Watch,
    big_sqlite,
    connect,
    mine,
    until,
    within,
)


async def fetch(url: str) -> tuple[int, Any]:
    response = await treq.get(url, headers={"Accept": ["application/json"]}, persistent=False)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_mounted_under_any_name(tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True, port=None,
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
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
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
        rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
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

    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
                              port="tcp:0:interface=127.0.0.1",
                              access_log=str(tmp_path / "no" / "such" / "dir" / "http.log")))
    with pytest.raises(ConfigError, match=r"cannot open the access log .*http\.log"):
        rest.prepare()


@pytest_twisted.ensureDeferred
async def test_children_start_in_order_and_stop_one_after_the_other(
        tmp_path: Path) -> None:
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True, port=None))
    rest.prepare()
    assert [child.name for child in rest] == ["db", "mq", "live", "auth", "www"]
    events: list[str] = []
    for child in rest:
        start, stop = child.startService, child.stopService

        def started(name: str = child.name, start: Any = start) -> None:
            events.append("start " + name)
            start()

        def stopped(name: str = child.name, stop: Any = stop) -> Any:
            events.append("stop " + name)
            result = defer.maybeDeferred(stop)
            result.addCallback(lambda _: events.append("stopped " + name))
            return result

        child.startService = started  # type: ignore[method-assign]
        child.stopService = stopped  # type: ignore[method-assign]
    rest.startService()
    assert rest.getServiceNamed("db").running and rest.getServiceNamed("www").running
    await rest.stopService()
    assert events == ["start db", "start mq", "start live", "start auth", "start www",
                      "stop www", "stopped www", "stop auth", "stopped auth",
                      "stop live", "stopped live", "stop mq", "stopped mq",
                      "stop db", "stopped db"]
    assert not any(child.running for child in rest)


def test_a_failed_start_stops_what_had_started(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
                                  port=f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"))
        with pytest.raises(Exception, match=r"[Aa]ddress already in use"):
            rest.startService()
    finally:
        taken.close()
    assert not rest.running
    assert not any(child.running for child in rest)
    assert rest.db is not None and not rest.db.pool._started


#: after this, a test's watchdog unblocks a stream that a fault left stuck
WATCHDOG = 20.0


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_a_streamed_answer_in_flight(
        big_sqlite: BigData) -> None:  # noqa: F811 - the fixture imported above
    """A stop with a real request in flight: a raw log of ~32 MB streamed to a client
    that does not read for a while, over a real port, from a pool of one connection.
    stopService() stops listening, then waits; once the client reads again, it gets the
    whole log, and only then is the database closed and the stop done."""
    rest = RestService(Config(db_url=big_sqlite.url, port="tcp:0:interface=127.0.0.1",
                              pool_size=1), shutdown_timeout=60)
    rest.prepare()
    assert rest.db is not None
    watch = Watch(rest.db)
    # Without the wait, stopping the pool would join the stream's thread, which waits for
    # the (then blocked) reactor: this unblocks it, so that the test fails, not hangs.
    watchdog = threading.Timer(WATCHDOG, watch.release_from_thread)
    watchdog.daemon = True
    rest.startService()
    client = Client(big_sqlite.raw_path, stalled=True)
    stopped: defer.Deferred[None] | None = None
    try:
        await defer.succeed(None)
        port = rest.web.port.getHost().port  # type: ignore[union-attr]
        await connect(port, client)
        run = await within(watch.started(), "the log starting to stream")
        await within(mine(run.paused), "the server pausing its answer for a client that "
                     "reads nothing")
        watchdog.start()
        stopped = rest.stopService()

        async def refused() -> bool:
            try:
                await fetch(f"http://127.0.0.1:{port}/api")
            except ConnectionRefusedError:
                return True
            return False
        for _ in range(int(PROMPT / 0.01)):
            if await refused():
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        else:
            pytest.fail("the server still listens after stopService()")
        assert not stopped.called, "the stop did not wait for the request in flight"
        assert rest.getServiceNamed("db").running
        assert not run.closed

        client.resume()
        await within(client.closed, "the client reading the rest of the log")
        status, _, body, complete = client.response()
        assert (status, complete, len(body)) == (200, True, big_sqlite.raw_length)
        assert hashlib.sha256(body).hexdigest() == big_sqlite.raw_sha256
        await within(mine(stopped), "the stop, once the request is done")
        assert run.exhausted
        assert not rest.running
        assert not any(child.running for child in rest)
    finally:
        watchdog.cancel()
        client.hang_up()
        watch.cancel_all()
        if stopped is None:
            await rest.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_cuts_an_answer_still_running_after_the_timeout(
        big_sqlite: BigData) -> None:  # noqa: F811 - the fixture imported above
    """A client that never reads a streamed log: the stop waits ``shutdown_timeout``, then
    cuts that connection, says which answer it cut, closes the database and ends."""
    from twisted.logger import globalLogPublisher

    rest = RestService(Config(db_url=big_sqlite.url, port="tcp:0:interface=127.0.0.1",
                              pool_size=1), shutdown_timeout=0.5)
    rest.prepare()
    assert rest.db is not None
    watch = Watch(rest.db)
    watchdog = threading.Timer(WATCHDOG, watch.release_from_thread)
    watchdog.daemon = True
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    rest.startService()
    client = Client(big_sqlite.raw_path, stalled=True)
    try:
        await defer.succeed(None)
        port = rest.web.port.getHost().port  # type: ignore[union-attr]
        await connect(port, client)
        run = await within(watch.started(), "the log starting to stream")
        await within(mine(run.paused), "the server pausing its answer")
        watchdog.start()
        await within(mine(rest.stopService()), "the stop, once the answer is cut")
        client.resume()  # it reads what reached it, then sees the connection closed
        await within(client.closed, "the client's connection closing")
        status, _, body, complete = client.response()
        assert status == 200 and not complete and len(body) < big_sqlite.raw_length
        assert run.closed and not run.exhausted
        assert not any(child.running for child in rest)
    finally:
        watchdog.cancel()
        globalLogPublisher.removeObserver(events.append)
        client.hang_up()
        watch.cancel_all()
    from twisted.logger import formatEvent
    lines = [formatEvent(e) for e in events]
    assert any("1 answers still running after 0.5s were cut: " + big_sqlite.raw_path in line
               for line in lines), lines


@pytest_twisted.ensureDeferred
async def test_stop_cancels_a_programs_read_still_streaming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that embeds the server holds a streamed read it does not consume: the
    stop cancels it (its database thread lets go) instead of waiting for it forever, and
    the read ends as cut short."""
    from buildbot_rest.data import reads

    monkeypatch.setattr(reads, "STREAM_BATCH", 2)
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True, port=None,
                              demo=True))
    rest.startService()
    assert rest.connector is not None
    endpoint, kwargs = rest.connector.match(("builds",))
    spec = rest.connector.parse_spec(endpoint, {})
    answer = await rest.connector.read(rest.connector.context(endpoint, kwargs), endpoint,
                                       spec, kwargs)
    assert isinstance(answer, reads.CollectionStream)
    stream = answer.producer
    fired: list[bool] = []

    def watchdog() -> None:
        # A last resort if the stop blocks the reactor: let the stream's thread go.
        fired.append(True)
        stream._cancelled = True
        stream._permits.release()

    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()
    try:
        await within(mine(rest.stopService()), "the stop")
    finally:
        timer.cancel()
    assert not fired, "the stop waited for the stream's thread"
    batches = 0
    while await within(mine(defer.ensureDeferred(answer.next())), "the held read") is not None:
        batches += 1
    assert batches <= 5  # the first batch it held, and what was read ahead: not 100
    assert answer.cancelled
    await within(mine(defer.ensureDeferred(answer.close())), "closing the read")


@pytest_twisted.ensureDeferred
async def test_stop_closes_idle_connections_at_once(tmp_path: Path) -> None:
    """A kept-alive connection with no request in flight is closed when the stop begins:
    the stop does not wait for it (nor for its client to go), and it is clean."""
    rest = RestService(Config(db_url=f"sqlite:///{tmp_path / 's.sqlite'}", create=True,
                              port="tcp:0:interface=127.0.0.1"), shutdown_timeout=60)
    rest.startService()
    await defer.succeed(None)
    port = rest.web.port.getHost().port  # type: ignore[union-attr]
    client = Client("/api/v2/builders")
    client.request = client.request.replace(b"Connection: close\r\n", b"")
    try:
        await connect(port, client)

        def answered() -> bool:
            head, _, body = bytes(client.data).partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
            return length is not None and len(body) == int(length[1])
        await until(answered, "the answer")
        assert client.data.startswith(b"HTTP/1.1 200 OK")
        assert not client.closed.called  # (kept alive)
        await within(mine(rest.stopService()), "the stop")
        await within(client.closed, "the idle connection closing")
    finally:
        client.hang_up()
    assert rest.stopped_cleanly


@pytest_twisted.ensureDeferred
async def test_the_demo_has_upstreams_usual_force_scheduler(tmp_path: Path) -> None:
    """With ``demo`` and no force schedulers of its own, the server serves "force" on
    every builder (the demo's schedulers row of that name), so that the web UI's force
    button works; one configured replaces it."""
    url = f"sqlite:///{tmp_path / 's.sqlite'}"

    async def served(config: Config) -> tuple[list[str], list[Any], list[Any]]:
        rest = RestService(config)
        rest.startService()
        try:
            data = rest.data
            read = [defer.ensureDeferred(data.get((path,)))
                    for path in ("builders", "forceschedulers", "schedulers")]
            # (each collection as (items, total))
            (builders, _), (forceschedulers, _), (schedulers, _) = await within(
                defer.gatherResults(read), "the reads")
            return [b["name"] for b in builders], forceschedulers, schedulers
        finally:
            await within(mine(rest.stopService()), "the stop")

    builders, [forced], schedulers = await served(Config(db_url=url, port=None, demo=True))
    assert (forced["name"], sorted(forced["builder_names"])) == ("force", sorted(builders))
    assert [s["name"] for s in schedulers].count("force") == 1
    own = {"name": "mine", "builder_names": builders[:1]}
    _, forceschedulers, _ = await served(Config(db_url=url, port=None, demo=True,
                                                forceschedulers=[own]))
    assert [f["name"] for f in forceschedulers] == ["mine"]
