"""The database layer: upstream's schema, the engine and its thread pool."""

from buildbot_rest.db.database import Database, DatabaseError, SchemaStatus
from buildbot_rest.db.pool import DatabaseUnavailable

__all__ = ["Database", "DatabaseError", "DatabaseUnavailable", "SchemaStatus"]
