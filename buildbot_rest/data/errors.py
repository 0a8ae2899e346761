# -*- test-case-name: tests.www.test_core -*-
"""Errors of the data API: each carries the HTTP status and a message a user can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error answered to the client; ``status`` is the HTTP status code."""

    status = 500
    #: the JSON-RPC error code for the same error
    jsonrpc_code = -32603

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def jsonrpc_message(self) -> Any:
        """The ``error.message`` of a JSON-RPC reply (usually :attr:`message`)."""
        return self.message


class BadRequest(ApiError):
    status = 400
    jsonrpc_code = -32602


class InvalidParams(BadRequest):
    """Control parameters that cannot be used (JSON-RPC -32602). ``errors`` maps each
    bad parameter to what is wrong with it; the JSON-RPC reply's ``message`` is that
    object when ``as_object`` (upstream's force scheduler validation), else the text."""

    def __init__(self, errors: Mapping[str, str], *, as_object: bool = False) -> None:
        super().__init__("invalid params: " + "; ".join(
            f"{name}: {error}" for name, error in errors.items()))
        self.errors = dict(errors)
        self.as_object = as_object

    @property
    def jsonrpc_message(self) -> Any:
        return self.errors if self.as_object else self.message


class InvalidQuery(BadRequest):
    """A query parameter that cannot be honoured."""

    jsonrpc_code = -32601


class Forbidden(ApiError):
    status = 403
    jsonrpc_code = -32600


class Unauthenticated(ApiError):
    """Credentials were presented and are wrong: a bad, expired or revoked bearer token
    (COMPAT 33), or failed Basic credentials at ``/auth/login``. The answer carries
    ``WWW-Authenticate: <challenge>`` (RFC 9110 11.6.1; RFC 6750 3 for ``Bearer``)."""

    status = 401
    jsonrpc_code = -32600

    def __init__(self, message: str, *, challenge: str = 'Bearer realm="buildbot"') -> None:
        super().__init__(message)
        self.challenge = challenge


class TooManyRequests(ApiError):
    """Too many failed logins or bad tokens from one client address: try again after
    ``retry_after`` seconds (RFC 6585 4, ``Retry-After``)."""

    status = 429
    jsonrpc_code = -32000

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(ApiError):
    status = 404
    jsonrpc_code = -32600


class InvalidPath(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(f"Invalid path: {path}")


class InvalidControl(ApiError):
    """An unknown control method (JSON-RPC ``method``)."""

    status = 501
    jsonrpc_code = -32601

    def __init__(self, method: str) -> None:
        # upstream's message
        super().__init__(f"action: {method} is not supported")


class Conflict(ApiError):
    status = 409
    jsonrpc_code = -32000


class ServiceUnavailable(ApiError):
    """The answer cannot be given now (the database is down or stopping); the client may
    try again after ``retry_after`` seconds (HTTP ``Retry-After``, RFC 9110 10.2.3)."""

    status = 503
    jsonrpc_code = -32000

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
