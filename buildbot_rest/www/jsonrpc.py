# -*- test-case-name: tests.www.test_jsonrpc -*-
"""JSON-RPC 2.0 control over ``POST /api/v2/<path>``: checking the call in upstream's
order (protocol.md 4.1), injecting the owner (4.2), and upstream's replies (4.3).

The checks, the first failure answering: ``Content-Type`` (up to its first ``;``) is
``application/json``; the body is UTF-8 JSON; not an array; an object; the keys
``jsonrpc``, ``method``, ``id`` and ``params`` present, in that order; their types;
``jsonrpc`` is ``"2.0"``; the path names an endpoint (404, COMPAT 9: before authz);
then the endpoint runs the action. A reply to a call that got as far as its ``id`` holds
that ``id``; earlier failures have none (upstream's)."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from buildbot_rest.data.errors import ApiError

#: JSON-RPC 2.0's error codes (upstream's ``JSONRPC_CODES``)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: a success's content type (upstream's carries no charset; JSON is UTF-8 anyway)
JSON = b"application/json"


class BadCall(ApiError):
    """A JSON-RPC call that is malformed (HTTP 400 with its JSON-RPC ``code``)."""

    status = 400

    def __init__(self, message: str, code: int = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.jsonrpc_code = code


class Call:
    """A checked JSON-RPC call: ``method``, ``params`` and ``id``."""

    def __init__(self, method: str, params: dict[str, Any], call_id: Any) -> None:
        self.method = method
        self.params = params
        self.id = call_id


class UnsupportedCoding(BadCall):
    """A body in a content coding the server does not decode (RFC 9110 15.5.16)."""

    status = 415


def check_coding(codings: Sequence[bytes] | None) -> None:
    """A call's body is read as sent: a ``Content-Encoding`` other than ``identity``
    is :class:`UnsupportedCoding` (415), never taken for JSON (upstream reads the coded
    bytes as they are)."""
    for coding in codings or ():
        for part in coding.split(b","):
            if part.strip().lower() not in (b"", b"identity"):
                raise UnsupportedCoding(f"unsupported Content-Encoding: "
                                        f"{part.strip().decode('latin-1')} (send the JSON "
                                        f"body as it is)")


def parse(content_type: bytes | None, body: bytes) -> Call:
    """The call in a POST, checked in upstream's order; :class:`BadCall` for the first
    thing wrong (protocol.md 4.1 checks 2-7)."""
    mime = (content_type or b"").split(b";", 1)[0].strip()
    if mime.lower() != JSON:
        raise BadCall("Invalid content-type (use application/json)")
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadCall(f"JSON parse error: the body is not UTF-8 ({e.reason} at byte "
                      f"{e.start})", PARSE_ERROR) from None
    except ValueError as e:
        raise BadCall(f"JSON parse error: {e}", PARSE_ERROR) from None
    except RecursionError:
        raise BadCall("JSON parse error: nested too deeply", PARSE_ERROR) from None
    if isinstance(doc, list):
        raise BadCall("JSONRPC batch requests are not supported")
    if not isinstance(doc, dict):
        raise BadCall("JSONRPC root object must be an object")
    for key in ("jsonrpc", "method", "id", "params"):
        if key not in doc:
            raise BadCall(f"missing key '{key}'")
    if not isinstance(doc["jsonrpc"], str):
        raise BadCall("'jsonrpc' must be a string")
    if not isinstance(doc["method"], str):
        raise BadCall("'method' must be a string")
    # upstream's test lets a boolean through (an int in Python) and refuses a float
    if doc["id"] is not None and not isinstance(doc["id"], (str, int)):
        raise BadCall("'id' must be a string, number, or null")
    if not isinstance(doc["params"], dict):
        raise BadCall("'params' must be an object")
    if doc["jsonrpc"] != "2.0":
        raise BadCall("only JSONRPC 2.0 is supported")
    return Call(doc["method"], doc["params"], doc["id"])


def origin_of(url: str) -> str:
    """The origin (RFC 6454) of an absolute URL, lowercased: ``scheme://host[:port]``
    (a default port left out); "" for what is not a URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def origin_allowed(origins: Sequence[bytes], *, secure: bool, host: bytes | None,
                   base_url: str, allowed_origins: Sequence[str] = ()) -> bool:
    """Whether a call that carries ``Origin`` headers (``origins``, as sent) may run: a
    browser sends one, and a page of another site must not make the server act (CSRF).

    Allowed: the origin of ``base_url`` (upstream's default ``allowed_origins``), and
    the server's own origin as the client reached it (its scheme and ``Host``, COMPAT
    35) when that ``Host`` is ``base_url``'s host, an IP address or ``localhost``: a
    name of someone else's that resolves to this server (DNS rebinding) is not the
    server's own. Compared lowercased, as upstream. More than one ``Origin`` is
    refused. ``allowed_origins``: more origins, as lowercased fnmatch patterns
    (upstream's ``allowed_origins``, see :func:`configured_origin`)."""
    if len(origins) != 1:
        return False
    try:
        sent = origins[0].decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return False
    if not sent or sent == "null" or origin_of(sent) != sent.rstrip("/"):
        return False
    allowed = set()
    base = urlsplit(base_url)
    if base.scheme in ("http", "https"):
        allowed.add(origin_of(base_url))
    if host:
        own = origin_of(("https://" if secure else "http://")
                        + host.decode("ascii", "replace"))
        name = urlsplit(own).hostname or ""
        if name and (name == (base.hostname or "").lower() or name == "localhost"
                     or _is_address(name)):
            allowed.add(own)
    allowed.discard("")
    return origin_of(sent) in allowed or configured_origin(sent, allowed_origins)


def configured_origin(origin: str, allowed_origins: Sequence[str]) -> bool:
    """Whether ``origin`` (one ``Origin`` value) matches one of ``allowed_origins``
    (lowercased fnmatch patterns, as upstream translates them; "null" and what is not
    an origin never do)."""
    sent = origin.strip().lower()
    if not allowed_origins or not sent or sent == "null" or origin_of(sent) != sent.rstrip("/"):
        return False
    return any(fnmatch.fnmatchcase(origin_of(sent), pattern) for pattern in allowed_origins)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def owner(user: Mapping[str, Any]) -> str | None:
    """The ``owner`` injected into every call's params (protocol.md 4.2, COMPAT 10):
    ``"anonymous"`` for an anonymous user, else the first non-empty of the user's
    ``email``, ``username`` and ``full_name``, else None."""
    if user.get("anonymous"):
        return "anonymous"
    for key in ("email", "username", "full_name"):
        if user.get(key):
            return str(user[key])
    return None


def success(call_id: Any, result: Any) -> bytes:
    """A success reply: compact JSON with sorted keys, as upstream writes it."""
    return json.dumps({"id": call_id, "jsonrpc": "2.0", "result": result},
                      sort_keys=True, separators=(",", ":")).encode()


def failure(error: ApiError, call: Call | None) -> bytes:
    """An error reply, as upstream writes it: ``{"jsonrpc", "id", "error": {"code",
    "message"}}`` with ``id`` only once the call got as far as it."""
    doc: dict[str, Any] = {"jsonrpc": "2.0"}
    if call is not None:
        doc["id"] = call.id
    doc["error"] = {"code": error.jsonrpc_code, "message": error.jsonrpc_message}
    return json.dumps(doc).encode()
