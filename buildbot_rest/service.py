# -*- test-case-name: tests.test_service -*-
"""RestService: Buildbot's REST API over one database, as a tree of Twisted services."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.resource import IResource

from buildbot_rest.auth import AuthService
from buildbot_rest.config import Config, ConfigError
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.resources.forceschedulers import sync_scheduler_rows
from buildbot_rest.db import Database, schema
from buildbot_rest.db.service import DatabaseService
from buildbot_rest.mq import LiveEvents, SimpleMQ
from buildbot_rest.www.site import SHUTDOWN_TIMEOUT, AccessLogFile, WebService

log = Logger()

__all__ = ["SHUTDOWN_TIMEOUT", "RestService"]


class RestService(MultiService):
    """Buildbot's REST API over one database, as a Twisted service.

    Its children, started in this order and stopped in the reverse one: ``db`` (the
    database's thread pool), ``mq`` (the message queue), ``live`` (the queue's events
    numbered for /ws and /sse clients), ``auth`` (who makes a request) and ``www`` (the
    web application: it stops first, closing the live connections and waiting for the
    requests in flight). Find them with ``getServiceNamed``.

    Standalone, it listens on ``config.port``. Embedded, a program leaves ``port`` as
    ``None``, mounts :meth:`resource` at ``/api`` of its own ``Site``, and starts this
    service with its own service tree.

    :meth:`prepare` (called by :meth:`startService` if not called before) opens the
    database, creates the schema in an empty one and refuses any other revision than
    upstream's head; it blocks, so call it before the reactor runs where that matters.
    """

    def __init__(self, config: Config, *, reactor: Any = None,
                 shutdown_timeout: float | None = None,
                 inherited_socket: tuple[int, int] | None = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.config = config
        #: how long a stop waits for the answers in flight before it cuts them
        #: (``config.shutdown_timeout`` unless given)
        self.shutdown_timeout = (config.shutdown_timeout if shutdown_timeout is None
                                 else shutdown_timeout)
        #: once stopped: False if the stop cut answers in flight (here or in a worker)
        self.stopped_cleanly = True
        self._reactor = reactor
        #: (descriptor, address family) of a listening socket to serve (a child
        #: process's; see :mod:`buildbot_rest.child_process`)
        self._inherited = inherited_socket
        self.db: Database | None = None
        self.mq: SimpleMQ | None = None
        self.live: LiveEvents | None = None
        self.auth: AuthService | None = None
        self.connector: DataConnector | None = None
        self.web: WebService | None = None

    # -- set-up (synchronous) -------------------------------------------------------------

    def prepare(self) -> None:
        """Open the database and build the data API and the service tree; raises
        DatabaseError, DatabaseUnavailable or ConfigError (a bad port) with a one-line
        message."""
        if self.connector is not None:
            return
        config = self.config
        if config.port is not None:
            # Only parses the description: a bad one fails here, not once running.
            try:
                endpoints.serverFromString(self._reactor, config.port)
            except ValueError as e:
                raise ConfigError(f"invalid port {config.port!r}: {e}") from None
        if config.workers > 1 and (config.port or "").partition(":")[0] not in (
                "tcp", "tcp6"):
            raise ConfigError(f"workers = {config.workers} needs a tcp: or tcp6: port, "
                              f"not {config.port!r}")
        access_file = None
        serving = config.port is not None or self._inherited is not None
        if serving and config.access_log not in ("-", "off"):
            try:  # opened now, so that a bad path stops the start with one line
                access_file = AccessLogFile(config.access_log)
            except OSError as e:
                raise ConfigError(f"cannot open the access log {config.access_log}: "
                                  f"{e.strerror or e}") from None
        db = Database(config.db_url, pool_size=config.pool_size, reactor=self._reactor)
        try:
            status = db.prepare_sync(create=config.demo or config.create)
            log.info("database {url}: {message}", url=db.safe_url, message=status.message)
            if config.demo:
                self._fill_demo(db)
                config = self.config = self._demo_forcescheduler(db)
            self._sync_forceschedulers(db)
        finally:
            # Connections opened here must not outlive a fork (twistd daemonizing).
            db.engine.dispose()
        self.db = db
        self.mq = SimpleMQ()
        self.live = LiveEvents(self.mq, window=config.resume_window)
        self.auth = AuthService(config, db)
        try:
            self.auth.prepare_sync()  # (the session secret, shared with upstream masters)
        finally:
            db.engine.dispose()
        self.connector = DataConnector(db, config=config, base_url=config.base_url or "/",
                                       mq=self.mq)
        self.web = WebService(config, self.connector, reactor=self._reactor, auth=self.auth,
                              live=self.live, shutdown_timeout=self.shutdown_timeout,
                              inherited_socket=self._inherited, access_file=access_file)
        for child in (DatabaseService(db), self.mq, self.live, self.auth, self.web):
            child.setServiceParent(self)

    @property
    def data(self) -> DataConnector:
        """The data API (prepared on first use): reads with ``data.get(...)``, a
        program's own work recorded with ``data.updates.<method>(...)``."""
        self.prepare()
        assert self.connector is not None
        return self.connector

    def _sync_forceschedulers(self, db: Database) -> None:
        # Each configured force scheduler has its ``schedulers`` row, found or created by
        # name as upstream's master does, so that /schedulers lists it. A database this
        # server may not write to is served all the same.
        if not self.config.forceschedulers:
            return
        try:
            with db.engine.begin() as conn:
                ids = sync_scheduler_rows(conn, self.config.forceschedulers)
        except sa.exc.SQLAlchemyError as e:
            log.warn("cannot record the force schedulers in the schedulers table: "  # noqa: G010
                     "{error}", error=str(e).splitlines()[0])
            return
        log.info("force schedulers: {ids}", ids=", ".join(f"{n} (schedulerid {i})"
                                                          for n, i in ids.items()))

    def _demo_forcescheduler(self, db: Database) -> Config:
        # A demo without force schedulers of its own gets upstream's usual one, "force"
        # on every builder (the demo's schedulers row of that name), so that the web UI's
        # force button works out of the box.
        if self.config.forceschedulers:
            return self.config
        with db.engine.connect() as conn:
            names = list(conn.execute(sa.select(schema.builders.c.name)
                                      .order_by(schema.builders.c.name)).scalars())
        if not names:
            return self.config
        return self.config.merged(forceschedulers=[{"name": "force",
                                                    "builder_names": names}])

    def _fill_demo(self, db: Database) -> None:
        from buildbot_rest import demo
        with db.engine.connect() as conn:
            used = [t.name for t in (schema.masters, schema.builders, schema.builds)
                    if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()]
        if used:
            log.info("demo: the database already has data ({tables}); adding none",
                     tables=", ".join(used))
            return
        counts = demo.populate(db.engine)
        log.info("demo: filled the database with {builds} builds", builds=counts["builds"])

    def resource(self) -> IResource:
        """The resource to mount at ``/api`` of a site: ``root.putChild(b"api", ...)``.

        It answers ``/api``, ``/api/v2/...`` and ``/api/latest/...`` under whatever name
        it is mounted."""
        self.prepare()
        assert self.web is not None
        return self.web.resource()

    def root_resource(self) -> IResource:
        """The whole web application, to serve as the root of a site of its own."""
        self.prepare()
        assert self.web is not None
        return self.web.root

    # -- running --------------------------------------------------------------------------

    def startService(self) -> None:
        self.prepare()
        try:
            super().startService()
        except BaseException:
            # A child that failed (a port in use) leaves the others to stop: the pool's
            # threads would keep a failing process alive.
            self.running = False
            for child in reversed(list(self)):
                if child.running:
                    child.stopService()
            raise

    def stopService(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        # One child after the other, in reverse order (MultiService would stop them all
        # at once): www first, which waits for the requests in flight; db last.
        Service.stopService(self)
        for child in reversed(list(self)):
            if child.running:
                await defer.maybeDeferred(child.stopService)
        problems = []
        if self.web is not None and self.web.cut:
            problems.append(f"{len(self.web.cut)} answers in flight were cut")
        if self.web is not None and self.web.workers_cut:
            problems.append("workers " + ", ".join(map(str, self.web.workers_cut))
                            + " did not stop cleanly")
        self.stopped_cleanly = not problems
        if problems:
            # (never "stopped" alone: that says every answer was sent whole)
            log.warn("stopped, not cleanly: {problems}",  # noqa: G010
                     problems="; ".join(problems))
        else:
            log.info("stopped")
