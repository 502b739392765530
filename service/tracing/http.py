"""SERVER spans for HTTP requests and WebSocket connections, as plain ASGI.

`TracingMiddleware` is the app's outermost middleware when tracing is on (none at
all when off): its span covers the whole exchange, whichever answers it (the express
lanes, a documented route, or the request middleware's own refusals and 500s), and
it is the current span while the request middleware writes the access-log line, so
the line carries the trace id. The span is named `{method} {route}` with the route
template that metrics use (`POST /v2/models/{model}/infer`), known once the lanes or
the router have matched (`scope["route"]`); before that, and for a path no route
matches, it is the method alone, as OpenTelemetry's HTTP conventions say.

Probes and the metrics scrape are not traced: they would be most of the spans and
tell nothing. A WebSocket connection is one span from handshake to close; its messages
get no child spans (docs/tracing.md says why).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tabserve.service.scope_keys import UNEXPECTED_ERROR
from tabserve.service.tracing.calls import CALL_SPAN, MODEL, REQUEST_ID
from tabserve.service.tracing.component import Tracing
from tabserve.service.tracing.propagation import from_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNTRACED_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
"""Liveness and readiness probes and the Prometheus scrape."""
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class TracingMiddleware:
    """One SERVER span per HTTP request or WebSocket connection, child of the caller's trace."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracing.tracer
        kind = scope["type"]
        if tracer is None or kind not in ("http", "websocket") or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        method = _method(scope) if kind == "http" else "GET"
        parent = from_headers(scope["headers"])
        span = tracer.start_span(
            method if kind == "http" else "WS",
            parent,
            SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        # A stream's messages run in the connection's task: no call span, no child spans.
        call_token = CALL_SPAN.set(span if kind == "http" else None)
        status: int | None = None
        raised: Exception | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            event = message["type"]
            if event in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif event == "websocket.accept":
                status = 101
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except Exception as exc:
            raised, status = exc, status or 500
            raise
        finally:
            if span.is_recording():
                _finish(span, scope, method, kind, status, raised)
            span.end()
            CALL_SPAN.reset(call_token)
            otel_context.detach(token)


def _finish(
    span: Span, scope: Scope, method: str, kind: str, status: int | None, raised: Exception | None
) -> None:
    """Name the span by its route, give it the answer's attributes, and its status."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.update_name(f"{method if kind == 'http' else 'WS'} {route}")
        span.set_attribute("http.route", route)
    span.set_attributes(_connection_attributes(scope))
    state = scope.get("state") or {}
    model = scope.get("path_params", {}).get("model") or state.get("model")
    if model:
        span.set_attribute(MODEL, model)
    request_id = state.get("request_id")
    if request_id:
        span.set_attribute(REQUEST_ID, request_id)
    if kind == "websocket" and status is None:
        status = 403  # closed before accepting: the server answers the handshake with 403
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    # A bug answered with the JSON 500 by an error handler (the lanes' do not re-raise),
    # or one that escaped: recorded once either way.
    failure: Exception | None = scope.get(UNEXPECTED_ERROR) or raised
    if failure is not None:
        span.record_exception(failure)
    if status is not None and status >= 500:
        # Server spans: 5xx is an error; 4xx is the client's, so the status stays unset.
        span.set_attribute("error.type", type(failure).__qualname__ if failure else str(status))
        span.set_status(Status(StatusCode.ERROR))


def _connection_attributes(scope: Scope) -> dict[str, Any]:
    """Where the request came from and arrived, as the ASGI server gives them."""
    found: dict[str, Any] = {"network.protocol.version": scope.get("http_version", "1.1")}
    server = scope.get("server")
    if server:
        found["server.address"] = server[0]
        if server[1] is not None:
            found["server.port"] = server[1]
    client = scope.get("client")
    if client:
        found["client.address"] = client[0]  # its port is opt-in in the conventions: left out
    return found


def _method(scope: Scope) -> str:
    """The request's method; `_OTHER` for one HTTP does not define, as the conventions say."""
    method: str = scope["method"]
    return method if method in _METHODS else "_OTHER"
