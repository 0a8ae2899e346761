# -*- test-case-name: tests.test_service -*-
"""The database as a service: its thread pool runs while the service does."""

from __future__ import annotations

from twisted.application.service import Service

from buildbot_rest.db.database import Database


class DatabaseService(Service):
    """Starts the database's thread pool, and stops it (closing every connection)."""

    name = "db"

    def __init__(self, db: Database) -> None:
        self.db = db

    def startService(self) -> None:
        self.db.start()
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        self.db.stop()
