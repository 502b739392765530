"""The caller's trace from a request's headers or a call's metadata, and the current ids.

Extraction goes through OpenTelemetry's global propagator, so `OTEL_PROPAGATORS`
applies (the default reads W3C `traceparent`/`tracestate` and `baggage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

AsgiHeaders = Iterable[tuple[bytes, bytes]]


class _AsgiHeaderGetter(Getter[AsgiHeaders]):
    """Reads an ASGI scope's raw headers (lower-case names, as ASGI promises)."""

    def get(self, carrier: AsgiHeaders, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for header, value in carrier if header == name]
        return found or None

    def keys(self, carrier: AsgiHeaders) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


class _MetadataGetter(Getter[Sequence[Any]]):
    """Reads gRPC invocation metadata: `(key, value)` pairs, keys lower-case."""

    def get(self, carrier: Sequence[Any], key: str) -> list[str] | None:
        name = key.lower()
        found = [str(value) for header, value in carrier if header == name]
        return found or None

    def keys(self, carrier: Sequence[Any]) -> list[str]:
        return [str(header) for header, _ in carrier]


_HEADERS = _AsgiHeaderGetter()
_METADATA = _MetadataGetter()


def from_headers(headers: AsgiHeaders) -> Context:
    """The caller's context from an HTTP request's headers (empty if it sent none)."""
    return propagate.extract(headers, getter=_HEADERS)


def from_metadata(metadata: Sequence[Any] | None) -> Context:
    """The caller's context from a gRPC call's invocation metadata."""
    return propagate.extract(metadata or (), getter=_METADATA)


def current_trace_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id in hex, as the W3C header writes them;
    None outside a trace. The access log calls this to join its lines to traces."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
