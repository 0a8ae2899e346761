"""buildbot_rest: a fast, independent server of Buildbot's REST API v2."""

__version__ = "0.1.0"
