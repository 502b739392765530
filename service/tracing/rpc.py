"""SERVER spans for gRPC calls of the inference service, as a `grpc.aio` interceptor.

Each unary call of `inference.GRPCInferenceService` gets a span named by its method
(`inference.GRPCInferenceService/ModelInfer`) with the `rpc.*` attributes, child of
the trace the caller's metadata carries (`traceparent`). Health checks and reflection
are not traced, as HTTP's probes are not. A call's status is an error for the codes
OpenTelemetry's gRPC conventions call server errors; the others (a bad request, a model
not found) are the caller's and leave it unset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tabserve.service.core.digits import parse_digits
from tabserve.service.tracing.calls import CALL_SPAN
from tabserve.service.tracing.propagation import from_metadata

if TYPE_CHECKING:
    from tabserve.service.tracing.component import Tracing

TRACED_SERVICE = "inference.GRPCInferenceService"
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""The codes that make a gRPC server span an error (OpenTelemetry's rpc conventions)."""

Behaviour = Callable[[Any, Any], Awaitable[Any]]


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each unary inference RPC's handler in a SERVER span."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        """The handler `continuation` gives, traced if it is a unary inference RPC."""
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, name = method.lstrip("/").partition("/")
        if service != TRACED_SERVICE:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._traced(handler.unary_unary, service, name, details.invocation_metadata),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _traced(self, behaviour: Behaviour, service: str, name: str, metadata: Any) -> Behaviour:
        async def traced(request: Any, context: Any) -> Any:
            tracer = self.tracing.tracer
            if tracer is None:
                return await behaviour(request, context)
            parent = from_metadata(metadata)
            span = tracer.start_span(
                f"{service}/{name}",
                parent,
                SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            call_token = CALL_SPAN.set(span)
            try:
                return await behaviour(request, context)
            finally:
                if span.is_recording():
                    _finish(span, context)
                span.end()
                CALL_SPAN.reset(call_token)
                otel_context.detach(token)

        return traced


def _finish(span: Span, context: Any) -> None:
    """The call's status code and peer; an error status for the server's own failures."""
    code = context.code() or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    peer = _peer(context.peer())
    if peer is not None:
        span.set_attributes({"network.peer.address": peer[0], "network.peer.port": peer[1]})
    if code in SERVER_ERRORS:
        span.set_attribute("error.type", code.name)
        span.set_status(Status(StatusCode.ERROR, context.details() or None))


def _peer(peer: str) -> tuple[str, int] | None:
    """`ipv4:127.0.0.1:5555` or `ipv6:[::1]:5555` as (address, port); None for others."""
    kind, _, rest = peer.partition(":")
    address, _, port = rest.rpartition(":")
    number = parse_digits(port, max_digits=5)
    if kind not in ("ipv4", "ipv6") or number is None:
        return None
    return address.strip("[]"), number
