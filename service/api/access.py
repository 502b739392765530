"""Access control in front of every route: an API key with the route's scope, or a refusal.

Plain ASGI, placed inside the request context (so a refusal gets its request id,
security headers, metrics and access-log line) and outside the express lanes (so the
lanes are covered like any route), and inside CORS (a browser's preflight carries no
key; CORS answers it first). Added only when a keys file is set: with access control
off the app has no such layer at all.

Clients send `Authorization: Bearer <key>`; no other header is read, so there is one
place a key can be and one header to keep out of logs. Without a valid key: 401
`unauthenticated` with `WWW-Authenticate: Bearer`; with a key lacking the scope: 403
`forbidden`, naming the scope and the key. A WebSocket is checked on its handshake
and refused with the same statuses and body (ASGI's denial response) or, where the
server cannot send one, closed with 1008 before it is accepted (the handshake's 403).
The key's name (never the key) goes in the scope's state as `principal`, for the
access log; a request to an open route has principal `-`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabserve.service.api.access_openapi import install_security
from tabserve.service.api.access_policy import UNLISTED, AccessPolicy, Rule
from tabserve.service.api.asgi_io import header
from tabserve.service.api.errors import error_response
from tabserve.service.auth.errors import ForbiddenError, UnauthenticatedError
from tabserve.service.auth.key_store import KeyStore
from tabserve.service.auth.scopes import Scope as KeyScope
from tabserve.service.auth.settings import AuthSettings

PRINCIPAL = "principal"
"""The scope state's key for the key's name (the access log's)."""
ACCESS_KEY = "access_key"
"""The scope state's key for the `Key` a request was let in with (absent: none)."""
ANONYMOUS = "-"
CLOSE_POLICY = 1008
_EXPECTED = "an `Authorization: Bearer <key>` header"


class AccessControl:
    """Every HTTP request and WebSocket handshake needs a key with its route's scope."""

    def __init__(self, app: ASGIApp, keys: KeyStore, policy: AccessPolicy) -> None:
        self.app = app
        self.keys = keys
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        rule = self.policy.rule_for(scope)
        state = scope.setdefault("state", {})
        if rule.scope is None:
            state[PRINCIPAL] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        needed = rule.scope
        try:
            key = self.keys.authorize(header(scope, b"authorization"), needed, kind)
        except (UnauthenticatedError, ForbiddenError) as exc:
            state[PRINCIPAL] = _principal_of(exc)
            await _refuse(scope, receive, send, _refusal(exc, _route_named(scope, rule), needed))
            return
        state[PRINCIPAL] = key.name
        state[ACCESS_KEY] = key
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 401 or 403: status, error body and the `WWW-Authenticate` challenge."""

    status: int
    message: str
    code: str
    challenge: str


def _refusal(exc: UnauthenticatedError | ForbiddenError, what: str, needed: KeyScope) -> Refusal:
    """What to answer: `what` names the request (`POST /v2/models/{model}/infer`)."""
    if isinstance(exc, ForbiddenError):
        challenge = f'Bearer error="insufficient_scope", scope="{needed.value}"'
        return Refusal(403, f"{exc.message}: {what}", exc.code, challenge)
    message = (
        f"{exc.message}; {what} needs {_EXPECTED} with a key holding the {needed.value!r} scope"
    )
    challenge = "Bearer" if exc.reason == "missing" else 'Bearer error="invalid_token"'
    return Refusal(401, message, exc.code, challenge)


def _route_named(scope: Scope, rule: Rule) -> str:
    method = scope["method"] if scope["type"] == "http" else "WebSocket"
    if rule is UNLISTED:
        return f"{method} {scope['path']} (no documented route: such paths need 'admin')"
    return f"{method} {rule.template}"


def _principal_of(exc: UnauthenticatedError | ForbiddenError) -> str:
    """The key's name for a 403 (the message names it); `-` for a 401."""
    return exc.key_name if isinstance(exc, ForbiddenError) else ANONYMOUS


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    response = error_response(refusal.status, refusal.message, refusal.code)
    response.headers["WWW-Authenticate"] = refusal.challenge
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    await receive()  # the handshake's `websocket.connect`
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": ""})
        return
    start: Message = {
        "type": "websocket.http.response.start",
        "status": refusal.status,
        "headers": response.raw_headers,
    }
    await send(start)
    await send({"type": "websocket.http.response.body", "body": response.body})


def install_access_control(app: FastAPI, keys: KeyStore, auth: AuthSettings) -> None:
    """Add the access middleware (call after the express lanes, before CORS) and declare
    it in the OpenAPI document."""
    policy = AccessPolicy(metrics_open=auth.metrics_open, docs_open=auth.docs_open)
    app.add_middleware(AccessControl, keys=keys, policy=policy)
    install_security(app, policy)
