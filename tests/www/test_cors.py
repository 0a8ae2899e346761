"""CORS on /api/v2 (buildbot_rest.www.cors): upstream's check made correct (COMPAT 35)."""

from __future__ import annotations

import json

import pytest
from twisted.web.test.requesthelper import DummyRequest

from buildbot_rest.www import cors, jsonrpc

BASE = "https://ci.example.org/"
ALLOWED = ("https://dash.example.org", "https://*.tools.example.org")


def _request(method: bytes = b"GET", origin: str | None = None, host: str = "ci.example.org",
             **headers: str) -> DummyRequest:
    request = DummyRequest([b"builds"])
    request.method = method
    request.requestHeaders.setRawHeaders(b"host", [host.encode()])
    if origin is not None:
        request.requestHeaders.setRawHeaders(b"origin", [origin.encode()])
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    request.isSecure = lambda: True  # type: ignore[method-assign]
    return request


def _handle(request: DummyRequest) -> bool:
    return cors.handle(request, allowed_origins=ALLOWED, base_url=BASE)


def _header(request: DummyRequest, name: str) -> str | None:
    value = request.responseHeaders.getRawHeaders(name.encode())
    return value[0].decode() if value else None


def test_no_origin_goes_on_with_vary() -> None:
    request = _request()
    assert not _handle(request)
    assert _header(request, "vary") == "Origin"
    assert _header(request, "access-control-allow-origin") is None


@pytest.mark.parametrize("origin", ["https://ci.example.org", "HTTPS://CI.EXAMPLE.ORG"])
def test_same_origin_passes_without_credentials(origin: str) -> None:
    request = _request(origin=origin)
    assert not _handle(request)
    assert _header(request, "access-control-allow-origin") == "https://ci.example.org"
    assert _header(request, "access-control-allow-credentials") is None
    assert _header(request, "vary") == "Origin"


def test_reached_by_address_is_same_origin() -> None:
    request = _request(origin="https://10.0.0.5:8443", host="10.0.0.5:8443")
    assert not _handle(request)


def test_dns_rebinding_name_is_not_same_origin() -> None:
    request = _request(origin="https://evil.example.com", host="evil.example.com")
    assert _handle(request)
    assert request.responseCode == 400


@pytest.mark.parametrize("origin", ["https://dash.example.org", "https://a.tools.example.org"])
def test_configured_origins_get_credentials(origin: str) -> None:
    request = _request(origin=origin)
    assert not _handle(request)
    assert _header(request, "access-control-allow-origin") == origin
    assert _header(request, "access-control-allow-credentials") == "true"
    assert _header(request, "vary") == "Origin"


@pytest.mark.parametrize(("method", "body"), [
    (b"GET", {"error": "invalid origin"}),
    (b"HEAD", {"error": "invalid origin"}),
    (b"POST", {"error": {"message": "invalid origin"}}),
])
def test_other_origins_are_refused(method: bytes, body: object) -> None:
    for origin in ("https://evil.example.com", "null", "https://dash.example.org.evil.com"):
        request = _request(method, origin=origin)
        assert _handle(request)
        assert request.responseCode == 400
        assert json.loads(b"".join(request.written)) == body
        assert _header(request, "content-type") == "application/json; charset=utf-8"
        assert _header(request, "vary") == "Origin"
        assert _header(request, "access-control-allow-origin") is None


def test_two_origins_are_refused() -> None:
    request = _request()
    request.requestHeaders.setRawHeaders(b"origin", [b"https://dash.example.org",
                                                      b"https://evil.example.com"])
    assert _handle(request)
    assert request.responseCode == 400


def test_preflight_allows_authorization() -> None:
    request = _request(b"OPTIONS", origin="https://dash.example.org",
                       access_control_request_method="POST",
                       access_control_request_headers="authorization, content-type")
    assert _handle(request)
    assert request.responseCode == 200
    assert request.finished and b"".join(request.written) == b""
    assert _header(request, "access-control-allow-headers") == "Content-Type, Authorization"
    assert _header(request, "access-control-allow-methods") == "GET, HEAD, POST"
    assert _header(request, "access-control-max-age") == "3600"
    assert _header(request, "access-control-allow-credentials") == "true"
    assert _header(request, "vary") == "Origin"


@pytest.mark.parametrize("method", [None, "DELETE", "get"])
def test_preflight_of_another_method_is_refused(method: str | None) -> None:
    headers = {} if method is None else {"access_control_request_method": method}
    request = _request(b"OPTIONS", origin="https://dash.example.org", **headers)
    assert _handle(request)
    assert request.responseCode == 400
    assert json.loads(b"".join(request.written)) == {"error": "invalid method"}


def test_origin_allowed_keeps_its_callers() -> None:
    assert jsonrpc.origin_allowed([b"https://ci.example.org"], secure=True,
                                  host=b"ci.example.org", base_url=BASE)
    assert not jsonrpc.origin_allowed([b"https://dash.example.org"], secure=True,
                                      host=b"ci.example.org", base_url=BASE)
    assert jsonrpc.origin_allowed([b"https://dash.example.org"], secure=True,
                                  host=b"ci.example.org", base_url=BASE,
                                  allowed_origins=ALLOWED)
