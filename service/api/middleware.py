"""Per-request bookkeeping as plain ASGI (cheaper than BaseHTTPMiddleware).

Gives each request an id (`X-Request-ID`, echoed back), adds the security headers
to every response, enforces the body size limit while the body streams in, and
records HTTP metrics and one access-log line.
"""

from __future__ import annotations

import re
import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabserve.service.access_log import AccessLog
from tabserve.service.api.asgi_io import request_headers, route_path
from tabserve.service.api.docs import DOCS_PAGES, STATIC_URL
from tabserve.service.api.errors import error_response
from tabserve.service.api.exchange import Exchange
from tabserve.service.api.origins import STATE_CHANGING, origin_refusal
from tabserve.service.api.request_ids import new_request_id
from tabserve.service.core.digits import parse_digits
from tabserve.service.core.errors import TooLargeError
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.web_config import WebConfig

PROBE_ROUTES = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

Headers = tuple[tuple[bytes, bytes], ...]
_ALWAYS: Headers = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# JSON and probes load nothing, so nothing is allowed; nor may any page frame them.
_LOCKED = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc come from this server (see docs.py). Their pages start the
# bundle with an inline script and the bundles set inline styles, load the OpenAPI
# document with fetch, draw data: images, and ReDoc searches in a blob: worker.
_DOCS = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    b"worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
API_HEADERS: Headers = (
    *_ALWAYS,
    (b"cache-control", b"no-store"),
    (b"content-security-policy", _LOCKED),
)
DOCS_HEADERS: Headers = (
    *_ALWAYS,
    (b"cache-control", b"no-store"),
    (b"content-security-policy", _DOCS),
)
# The docs' scripts and styles never change under one version: caches may keep them.
ASSET_HEADERS: Headers = (*_ALWAYS, (b"content-security-policy", _LOCKED))


class RequestContextMiddleware:
    """Request id, body limit, HTTP metrics and the access log around the app."""

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, web: WebConfig, access: AccessLog
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access = access
        self.max_body = web.max_body_bytes
        self.log_probes = web.log_probes
        self.origins = web.cors_origins
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        heads = request_headers(scope)
        request_id = _request_id(heads.get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        headers = ((b"x-request-id", request_id.encode()), *_security_headers(scope))
        declared = _content_length(heads.get(b"content-length"))
        # A declared length bounds the body (the HTTP parser reads no further); only a
        # chunked body needs counting as it streams in.
        limit = None if declared is not None else self.max_body
        exchange = Exchange(scope, receive, send, headers, limit)
        in_flight = self.metrics.http.in_flight
        in_flight.inc()
        try:
            refusal = self._refusal(scope, heads, declared)
            if refusal is not None:
                await refusal(scope, receive, exchange.send)
                return
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except Exception as exc:
                if not await exchange.settle(exc):
                    raise
            else:
                if exchange.too_large is not None:
                    await exchange.settle(None)
        finally:
            in_flight.dec()
            seconds = time.perf_counter() - started
            status, timed = exchange.outcome()
            self._record(scope, status, seconds, request_id, timed=timed)

    def _refusal(
        self, scope: Scope, heads: dict[bytes, bytes], declared: int | None
    ) -> Response | None:
        """The answer to a request refused before the app sees it, or None."""
        if declared is not None and declared > self.max_body:
            return error_response(
                413,
                f"request body is {declared} bytes; the limit is {self.max_body}",
                TooLargeError.code,
            )
        origin = heads.get(b"origin")
        if origin is None or scope["method"] not in STATE_CHANGING:
            return None  # most callers are not browsers: no Origin
        return origin_refusal(origin, heads.get(b"host"), self.origins)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket gets a request id (echoed on the handshake) and one access-log line.

        The line is written when the connection ends, with status 101 if it was
        accepted (403 if refused before) and its whole duration. Streams limit their
        own messages and have their own metrics (`tabserve_stream_*`), so neither the
        body limit nor the HTTP request metrics apply.
        """
        started = time.perf_counter()
        request_id = _request_id(request_headers(scope).get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 403  # closed before accepting: the server answers the handshake with 403
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "websocket.http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header, *API_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access.enabled:
                route = getattr(scope.get("route"), "path", None) or "<unmatched>"
                model = scope["state"].get("model", "-")
                seconds = time.perf_counter() - started
                principal = scope["state"].get("principal")  # api/access.py, when on
                self.access.record(
                    "WS", scope["path"], route, status, seconds, model, request_id, principal
                )

    def _record(
        self, scope: Scope, status: int, seconds: float, request_id: str, *, timed: bool = True
    ) -> None:
        route_obj = scope.get("route")
        route = getattr(route_obj, "path", None) or "<unmatched>"
        method = scope["method"]
        key = (route, method, str(status))
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.http.requests.labels(*key)
        counter.inc()
        if timed:
            latency = self._latency.get(key[:2])
            if latency is None:
                latency = self._latency[key[:2]] = self.metrics.http.latency.labels(route, method)
            latency.observe(seconds)
        if route in PROBE_ROUTES and not self.log_probes:
            return
        if self.access.enabled:
            model = scope.get("path_params", {}).get("model") or scope["state"].get("model", "-")
            principal = scope["state"].get("principal")  # api/access.py, when on
            self.access.record(
                method, scope["path"], route, status, seconds, model, request_id, principal
            )


def _security_headers(scope: Scope) -> Headers:
    """The precomputed headers for this path: API, docs page or docs asset."""
    path = route_path(scope)
    if path.startswith(STATIC_URL):
        return ASSET_HEADERS
    return DOCS_HEADERS if path in DOCS_PAGES else API_HEADERS


def _request_id(given: bytes | None) -> str:
    if given is not None and _REQUEST_ID.match(given):
        return given.decode()
    return new_request_id()


def _content_length(raw: bytes | None) -> int | None:
    """The declared length; None when absent or not plain digits (then the body is counted)."""
    return parse_digits(raw.strip()) if raw is not None else None


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    """The id the middleware gave this request."""
    return str(scope.get("state", {}).get("request_id", ""))
