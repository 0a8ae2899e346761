# -*- test-case-name: tests.test_service -*-
"""Serving the web application: the site, its listening port (or an inherited socket),
the server's other processes, the access log, and a stop that waits for the requests in
flight."""

from __future__ import annotations

import os
import socket
from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints, task
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from buildbot_rest.auth.service import AuthService
from buildbot_rest.config import (
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    Config,
    derive_base_url,
)
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.mq.live import LiveEvents
from buildbot_rest.processes import KILL_MARGIN, ServerProcesses, process_config
from buildbot_rest.www.app import WebApp
from buildbot_rest.www.channel import ABORT_AFTER, ApiChannel, Connections, Drain, origin_form
from buildbot_rest.www.headers import set_common_headers
from buildbot_rest.www.ws import CLOSE_TIMEOUT

log = Logger()

#: How long a stop waits for requests in flight before it cuts their connections (the
#: default of ``Config.shutdown_timeout``).
SHUTDOWN_TIMEOUT = DEFAULT_SHUTDOWN_TIMEOUT
#: How long it then waits for the cut connections to be closed.
ABORT_TIMEOUT = ABORT_AFTER


class WebService(MultiService):
    """The web application of one server, as a service.

    It always counts the requests in flight, so that a stop waits for them (up to
    ``shutdown_timeout`` seconds, ``config.shutdown_timeout`` unless given). Standalone,
    it also listens on ``config.port`` (or serves an inherited listening socket, in a
    server's other process), writes the access log, and starts the other processes
    ``config.workers`` asks for; its stop then waits for every connection to have sent
    its answer, and for the other processes to stop (each does the same).
    """

    name = "www"

    def __init__(self, config: Config, connector: DataConnector, *, reactor: Any,
                 auth: AuthService | None = None, live: LiveEvents | None = None,
                 shutdown_timeout: float | None = None,
                 inherited_socket: tuple[int, int] | None = None,
                 access_file: AccessLogFile | None = None) -> None:
        super().__init__()
        self.config = config
        self.connector = connector
        self.shutdown_timeout = (config.shutdown_timeout if shutdown_timeout is None
                                 else shutdown_timeout)
        self._reactor = reactor
        self._requests = InFlight(reactor)
        self.app = WebApp(connector, auth=auth, live=live, reactor=reactor)
        self.root: Resource = Tracked(self.app.resource(), self._requests)
        #: (descriptor, address family) of a listening socket to serve
        self._inherited = inherited_socket
        self._access_file = access_file
        self._adopted: IListeningPort | None = None
        self._listener: Listener | None = None
        self.site: ApiSite | None = None
        #: the server's other processes, once listening (``config.workers`` > 1)
        self.processes: ServerProcesses | None = None
        #: the port listened on, once listening
        self.port: IListeningPort | None = None
        #: once stopped: the URIs of the answers the stop cut short in this process, and
        #: the numbers of the other processes that did not stop cleanly
        self.cut: list[str] = []
        self.workers_cut: list[int] = []

    def resource(self) -> IResource:
        """What to mount at ``/api`` of a site of one's own."""
        return cast(IResource, Mounted(self.root))

    def startService(self) -> None:
        if self._inherited is not None and self._adopted is None:
            self.site = ApiSite(self.root, self.config.access_log, self._access_file,
                                self._reactor, timeout=self.config.client_timeout)
            fileno, family = self._inherited
            os.set_blocking(fileno, False)  # a blocking accept would stall the reactor
            self._adopted = self._reactor.adoptStreamPort(fileno, family, self.site)
        elif self.config.port is not None and self._listener is None:
            self.site = ApiSite(self.root, self.config.access_log, self._access_file,
                                self._reactor, timeout=self.config.client_timeout)
            self._listener = Listener(self.config.port, self.site, self._reactor,
                                      self._listening)
            self._listener.setServiceParent(self)
        super().startService()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        log.info("serving {base}api/v2 on {address}", base=self.config.base_url,
                 address=address)
        if self.config.base_url_derived and self.config.port is not None:
            # `tcp:0` picks a port only now: links must name the real one.
            number = getattr(address, "port", None)
            if number is not None:
                self.connector.base_url = derive_base_url(
                    f"{self.config.port.partition(':')[0]}:{number}")
        if self.config.workers > 1:
            # (each process has its own message queue until a shared one exists)
            log.warn("with workers = {n}, /ws and /sse clients only get the events of "  # noqa: G010
                     "writes their own process makes", n=self.config.workers)
            self.processes = ServerProcesses(self._reactor)
            family = socket.AF_INET6 if isinstance(address, IPv6Address) else socket.AF_INET
            fileno: int = port.fileno()  # type: ignore[attr-defined]
            self.processes.start(self.config.workers - 1, fileno, family,
                                 process_config(self.config, self.connector.base_url))

    def stopService(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await super().stopService()  # stops listening first
        if self.app.live is not None:
            # Live connections last until their client leaves: close them now (a /ws
            # close handshake, the end of an /sse stream).
            self.app.live.close_clients(1001, "server stopping")
            # (a close handshake takes a round trip; /ws cuts a client that does not
            # answer after its CLOSE_TIMEOUT)
            await self.app.live.closed(self._reactor, CLOSE_TIMEOUT + 1)
        if self._adopted is not None:
            await defer.maybeDeferred(self._adopted.stopListening)
            self._adopted = None
        workers: defer.Deferred[list[int]] | None = None
        if self.processes is not None:
            # They stop meanwhile, each as this one does and within the same bound.
            workers = defer.ensureDeferred(self.processes.stop(
                self.shutdown_timeout + ABORT_TIMEOUT + KILL_MARGIN))
            self.processes = None
        connections = self.site.connections if self.site is not None else None
        if connections is not None:
            # An idle connection closes now, one that answers once its answer is sent.
            connections.close_when_done()
        pending = len(self._requests)
        if pending:
            log.info("waiting up to {t:g}s for {n} answers in flight",
                     t=self.shutdown_timeout, n=pending)
        if not await self._drained(connections, self.shutdown_timeout):
            # Cut them: an answer that streams holds a database thread until its client
            # reads it or goes away, and the database cannot close under it; an answer
            # written whole may still be on its way to a client that does not read it.
            self.cut = connections.abort() if connections is not None else []
            self.cut += self._requests.abort(connections)
            log.warn("{n} answers still running after {t:g}s were cut: {uris}",  # noqa: G010
                     n=len(self.cut), t=self.shutdown_timeout, uris=", ".join(self.cut))
            await self._drained(connections, ABORT_TIMEOUT)
        if workers is not None:
            self.workers_cut = await workers

    async def _drained(self, connections: Connections | None, timeout: float) -> bool:
        """Whether no request is in flight and no connection open within ``timeout``."""
        waits: list[defer.Deferred[Any]] = [self._requests.drained(timeout)]
        if connections is not None:
            waits.append(connections.drained(timeout))
        return all(await defer.gatherResults(waits))


class AccessLogFile:
    """An access log file written in blocks of whole lines, so that several processes
    (workers) can append to one file without cutting each other's lines."""

    BLOCK = 1 << 16

    def __init__(self, path: str) -> None:
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines: list[str] = []
        self._size = 0

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.BLOCK:
            self.flush()

    def flush(self) -> None:
        if not self._lines or self._fd is None:
            return
        data = "".join(self._lines).encode("utf-8")
        self._lines, self._size = [], 0
        view = memoryview(data)
        while view:  # one write with O_APPEND; the loop only for a short write
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None


class ApiRequest(Request):
    """A request of the standalone site. Its answer carries the headers of every answer
    (:func:`~buildbot_rest.www.headers.set_common_headers`) even when Twisted writes it
    without asking a resource (``OPTIONS *``, RFC 9110 9.3.7). An absolute-form target
    (``GET http://host/api/v2 HTTP/1.1``, as sent to a proxy) is read as its path, with
    its host in place of the ``Host`` header (RFC 9112 3.2.2)."""

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        absolute = origin_form(path)
        if absolute is not None:
            authority, path = absolute
            if authority:
                self.requestHeaders.setRawHeaders(b"host", [authority])
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            set_common_headers(self)
        super().write(data)


class ApiSite(Site):
    """The standalone server's site. Its access log goes to the server's log ("-", as
    Twisted's default), nowhere ("off"), or to a file written in blocks and flushed every
    second: far cheaper per request than a line through the logging system.

    Its connections are :class:`~buildbot_rest.www.channel.ApiChannel` (HTTP/1.1, with
    the limits and the ``timeout`` of a client there), kept in :attr:`connections` so
    that a stop can wait for them."""

    protocol = ApiChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, access_log: str, access_file: Any,
                 reactor: Any, *, timeout: float | None = None) -> None:
        super().__init__(resource, requestFactory=ApiRequest, reactor=reactor,
                         timeout=timeout if timeout is not None else DEFAULT_CLIENT_TIMEOUT)
        #: the open connections
        self.connections = Connections(reactor)
        self.noisy = False
        self._access_log = access_log
        self._access_file = access_file
        self._flusher: task.LoopingCall | None = None
        self._clock = reactor

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if isinstance(channel, ApiChannel):
            channel.connections = self.connections
        return channel

    def startFactory(self) -> None:
        super().startFactory()
        if self._access_log == "off":
            self._logFile = None
        elif self._access_file is not None:
            self._logFile = self._access_file
            self._flusher = task.LoopingCall(self._access_file.flush)
            self._flusher.clock = self._clock
            self._flusher.start(1.0, now=False)

    def stopFactory(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        self._flusher = None
        super().stopFactory()  # closes (and so flushes) a file of its own


class Listener(Service):
    """Listens on an endpoint while running; a failure to listen at start is raised."""

    def __init__(self, description: str, site: Site, reactor: Any,
                 on_listening: Any) -> None:
        self.description = description
        self.site = site
        self._reactor = reactor
        self._on_listening = on_listening
        self._port: defer.Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()
        endpoint = endpoints.serverFromString(self._reactor, self.description)
        d = endpoint.listen(self.site)
        failures: list[Any] = []
        d.addCallbacks(self._listened, failures.append)
        if failures:  # TCP and UNIX endpoints fail at once: tell the caller now
            self.running = False
            failures[0].raiseException()
        self._port = d
        d.addErrback(lambda f: log.failure("cannot listen on {d}", f, d=self.description))

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self._on_listening(port)
        return port

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        d, self._port = self._port, None
        if d is None:
            return None

        def stop(port: Any) -> Any:
            return port.stopListening() if port is not None else None
        return d.addCallback(stop)


class InFlight(Drain[Request]):
    """The requests being answered, and a way to wait until there are none."""

    def add(self, request: Request) -> None:
        super().add(request)
        request.notifyFinish().addBoth(self._done, request)

    def _done(self, _result: Any, request: Request) -> None:
        self.discard(request)

    def abort(self, cut_already: Connections | None = None) -> list[str]:
        """Close the connection of every request in flight, at once (but those of the
        connections ``cut_already``); their URIs."""
        cut = []
        done = set(cut_already or ())
        for request in self:
            channel = getattr(request, "channel", None)
            if channel in done:
                continue
            cut.append(request.uri.decode("ascii", "replace"))
            transport = getattr(channel, "transport", None)
            if transport is not None:
                transport.abortConnection()
        return cut


class Tracked(Resource):
    """Counts the requests in flight through a leaf resource, for a clean stop."""

    isLeaf = True

    def __init__(self, inner: Any, requests: InFlight) -> None:
        super().__init__()
        self._inner = inner
        self._requests = requests

    def render(self, request: Request) -> bytes | int:
        # (a /ws request becomes a WebSocket connection: it never finishes as a request,
        # and the stop closes it through the live events)
        if (request.postpath or [])[:1] != [b"ws"]:
            self._requests.add(request)
        result: bytes | int = self._inner.render(request)
        return result


class Mounted(Resource):
    """Serves the web application's ``/api`` routes below any mount point of a site."""

    isLeaf = True

    def __init__(self, root: Any) -> None:
        super().__init__()
        self._root = root

    def render(self, request: Any) -> bytes | int:
        # The application routes on paths that start with /api: present the mount point
        # as that segment, and keep what comes before it as the script name.
        if request.prepath:
            request.prepath = request.prepath[:-1]
        request.postpath = [b"api", *request.postpath]
        result: bytes | int = self._root.render(request)
        return result

