# -*- test-case-name: tests.www.test_tokens_api -*-
"""``/auth/tokens``: a logged-in user's own bearer tokens (beyond upstream).

- ``GET /auth/tokens``: ``{"tokens": [<token>...], "meta": {"total": n}}``, the caller's
  tokens, oldest first (revoked and expired ones included); ``GET /auth/tokens/<id>``:
  ``{"tokens": [<token>], "meta": {}}``. A token is
  :meth:`~buildbot_rest.auth.tokens.TokenInfo.as_json`: never its secret or digest.
- ``POST /auth/tokens``, JSON-RPC 2.0 method ``create``, params (all optional):
  ``scope`` (``"read"``, the default, or ``"control"``), ``expires`` (seconds, a text
  such as ``"30d"``, or ``"never"``/null; default 90 days), ``description`` (text),
  ``roles`` (a list, a subset of the caller's own roles; default: the user's roles when
  the token is used). Result: the token's fields and ``token``, shown this once.
- ``POST /auth/tokens/<id>``, method ``revoke``: the token's fields, revoked.

As on ``/api/v2``: JSON-RPC needs ``Content-Type: application/json`` and a browser's
``Origin`` must be allowed (CSRF, protocol.md 4.1). An anonymous caller is a 401; a
caller authenticated by a bearer token may list and revoke but not create (a stolen
token must not make others that outlive its revocation): 403. Another user's token is
a 404, as one that does not exist."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from buildbot_rest.auth.service import AuthService, Caller, client_address
from buildbot_rest.auth.tokens import MAX_DESCRIPTION, MAX_ID, TokenStore, parse_duration
from buildbot_rest.data.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InvalidControl,
    InvalidParams,
    NotFound,
    Unauthenticated,
)
from buildbot_rest.www import jsonrpc
from buildbot_rest.www.rest import Responder, answer_async, decode_path, error_body, error_headers

log = Logger()

#: a token's lifetime when ``create`` names none: 90 days, in seconds
DEFAULT_EXPIRES = 90 * 86400

#: the params ``create`` takes
CREATE_PARAMS = ("scope", "expires", "description", "roles")


class MethodNotAllowed(ApiError):
    """An HTTP method the resource does not answer (RFC 9110 15.5.6)."""

    status = 405


class TokensResource(Resource):
    """The self-service token API of ``auth`` (mounted at ``/auth/tokens``; its
    ``postpath`` is what follows). Without a database (``auth.tokens`` None), every
    request is a 404 saying that tokens are not available."""

    isLeaf = True

    def __init__(self, auth: AuthService, *, base_url: str = "") -> None:
        super().__init__()
        self.auth = auth
        #: for the Origin check of JSON-RPC calls (the server's ``base_url``)
        self.base_url = base_url or auth.config.base_url or ""

    def render(self, request: Request) -> Any:
        return answer_async(request, lambda responder: self._handle(request, responder),
                            rpc=True)

    async def _handle(self, request: Request, responder: Responder) -> None:
        if request.method == b"POST":
            await self._control(request, responder)
            return
        try:
            if request.method not in (b"GET", b"HEAD"):
                raise MethodNotAllowed("method not allowed: use GET, HEAD or POST")
            token_id = self._token_id(request)
            caller = await self._caller(request)
            store = self._store()
            if token_id is None:
                tokens = await store.list(caller.user)
                doc: dict[str, Any] = {"tokens": [t.as_json() for t in tokens],
                                       "meta": {"total": len(tokens)}}
            else:
                info = await store.get(token_id, caller.user)
                doc = {"tokens": [info.as_json()], "meta": {}}
        except ApiError as e:
            if not responder.disconnected:
                headers = error_headers(e) or {}
                if isinstance(e, MethodNotAllowed):
                    headers[b"allow"] = b"GET, HEAD, POST"
                responder.send(e.status, error_body(e.message), headers=headers)
            return
        if not responder.disconnected:
            responder.send(200, json.dumps(doc).encode(),
                           headers={b"cache-control": b"no-store"})

    async def _control(self, request: Request, responder: Responder) -> None:
        origins = request.requestHeaders.getRawHeaders(b"origin")
        if origins is not None and not jsonrpc.origin_allowed(
                origins, secure=request.isSecure(), host=request.getHeader(b"host"),
                base_url=self.base_url):
            # as /api/v2 answers it (protocol.md 4.1 check 1)
            responder.send(400, json.dumps({"error": {"message": "invalid origin"}}).encode())
            return
        call = None
        try:
            body = request.content.read() if request.content is not None else b""
            jsonrpc.check_coding(request.requestHeaders.getRawHeaders(b"content-encoding"))
            caller = await self._caller(request)
            call = jsonrpc.parse(request.getHeader(b"content-type"), body)
            token_id = self._token_id(request)
            store = self._store()
            if token_id is None and call.method == "create":
                result = await self._create(store, caller, call.params,
                                            client_address(request))
            elif token_id is not None and call.method == "revoke":
                if call.params:
                    raise InvalidParams({name: "unknown parameter" for name in call.params})
                info, _ = await store.revoke(token_id, caller.user)
                result = info.as_json()
                log.info("bearer token #{id} revoked by its user {user}", id=token_id,
                         user=info.name)
            else:
                raise InvalidControl(call.method)
        except ApiError as e:
            if not responder.disconnected:
                responder.send(e.status, jsonrpc.failure(e, call), headers=error_headers(e))
            return
        if not responder.disconnected:
            responder.send(200, jsonrpc.success(call.id, result),
                           headers={b"cache-control": b"no-store"})

    async def _create(self, store: TokenStore, caller: Caller, params: Mapping[str, Any],
                      address: str) -> dict[str, Any]:
        if caller.token_id is not None:
            raise Forbidden("a bearer token cannot make tokens: log in (a session) to "
                            "make one")
        scope, expires, description, roles = _create_params(params, caller)
        # The session's groups are not kept: a token's roles come from the configuration
        # at each use, so a user taken out of a group loses that role on their tokens too.
        user = {key: value for key, value in caller.user.items() if key != "groups"}
        try:
            token, info = await store.create(user, roles, scope, expires, description,
                                             within_user=True)
        except ValueError as e:  # (a user without username or email)
            raise BadRequest(str(e)) from None
        log.info("bearer token #{id} made by its user {user} from {address} (scope "
                 "{scope})", id=info.id, user=info.name, address=address,
                 scope=info.scope)
        return {**info.as_json(), "token": token}

    async def _caller(self, request: Request) -> Caller:
        caller = await self.auth.caller(request)
        if caller.anonymous:
            raise Unauthenticated("log in, or send a bearer token, to manage your tokens")
        return caller

    def _store(self) -> TokenStore:
        store = self.auth.tokens
        if store is None:
            raise NotFound("bearer tokens are not available on this server (no database)")
        return store

    def _token_id(self, request: Request) -> int | None:
        """The ``<id>`` of ``/auth/tokens/<id>``, None for the collection (with or
        without a final slash); 404 for any other path."""
        segments = decode_path(request, request.postpath or ())
        if segments in ((), ("",)):
            return None
        if len(segments) == 1 and segments[0].isascii() and segments[0].isdigit():
            value = int(segments[0])
            if 0 < value <= MAX_ID:
                return value
            raise NotFound(f"no such token: #{value}")
        raise NotFound("Invalid path: /auth/tokens/" + "/".join(segments))


def _create_params(params: Mapping[str, Any],
                   caller: Caller) -> tuple[str, int | None, str, list[str] | None]:
    """The checked params of ``create``: scope, lifetime in seconds (None: never),
    description, roles (None: the user's). InvalidParams (-32602) naming each bad
    one."""
    errors: dict[str, str] = {}
    for name in params:
        if name not in CREATE_PARAMS:
            errors[name] = "unknown parameter"
    scope = params.get("scope", "read")
    if scope not in ("read", "control"):
        errors["scope"] = "must be \"read\" or \"control\""
    expires: int | None = DEFAULT_EXPIRES
    if "expires" in params:
        value = params["expires"]
        if value is None:
            expires = None
        elif isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                expires = parse_duration(value)
            except ValueError as e:
                errors["expires"] = str(e)
        else:
            errors["expires"] = "seconds, a text such as \"30d\", or \"never\""
    description = params.get("description", "")
    if not isinstance(description, str):
        errors["description"] = "must be a string"
        description = ""
    elif len(description) > MAX_DESCRIPTION:
        errors["description"] = f"at most {MAX_DESCRIPTION} characters"
    roles = params.get("roles")
    if roles is not None:
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            errors["roles"] = "must be a list of role names"
        else:
            extra = sorted(set(roles) - caller.roles)
            if extra:
                raise Forbidden(f"a token may only have roles of yours; not yours: "
                                f"{', '.join(extra)}")
    if errors:
        raise InvalidParams(errors)
    return scope, expires, description, roles
