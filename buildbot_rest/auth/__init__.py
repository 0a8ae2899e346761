"""Who makes a request: sessions, API tokens and authorization plug in here."""

from buildbot_rest.auth.service import AuthService

__all__ = ["AuthService"]
