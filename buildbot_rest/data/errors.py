# -*- test-case-name: tests.www.test_core -*-
"""Errors of the data API: each carries the HTTP status and a message a user can act on."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client; ``status`` is the HTTP status code."""

    status = 500
    #: the JSON-RPC error code for the same error
    jsonrpc_code = -32603

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400
    jsonrpc_code = -32602


class InvalidQuery(BadRequest):
    """A query parameter that cannot be honoured."""

    jsonrpc_code = -32601


class Forbidden(ApiError):
    status = 403
    jsonrpc_code = -32600


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
