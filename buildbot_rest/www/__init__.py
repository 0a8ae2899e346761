"""The HTTP layer: a Klein application over the data API."""

from buildbot_rest.www.app import WebApp

__all__ = ["WebApp"]
