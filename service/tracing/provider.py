"""The tracer provider: OpenTelemetry's SDK as its environment variables configure it.

The SDK reads the standard variables itself: the sampler (`OTEL_TRACES_SAMPLER`,
`OTEL_TRACES_SAMPLER_ARG`; default `parentbased_always_on`), the batch processor
(`OTEL_BSP_*`), the OTLP/HTTP exporter (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
`OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`, else `http://localhost:4318/v1/traces`;
`..._HEADERS`, `..._TIMEOUT`, `..._COMPRESSION`, ...) and the resource
(`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`). tabserve only supplies defaults
the environment overrides: `service.name=tabserve` and `service.version`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tabserve.service import __version__
from tabserve.service.tracing.metrics import TracingMetrics


def tracer_provider(
    metrics: TracingMetrics, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider exporting in batches to `exporter` (None: OTLP/HTTP from the environment),
    counting what it exports in `metrics`.

    Not the global provider: each app owns its own, and shuts it down with itself.
    """
    provider = TracerProvider(resource=service_resource(), shutdown_on_exit=False)
    counted = CountingExporter(exporter or otlp_exporter(), metrics)
    provider.add_span_processor(BatchSpanProcessor(counted))
    return provider


class CountingExporter(SpanExporter):
    """Another exporter, with each batch counted by result (on the exporting thread)."""

    def __init__(self, inner: SpanExporter, metrics: TracingMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the inner exporter; a raised error counts as a failure too."""
        result = SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        finally:
            counter = self.metrics.succeeded if result is SpanExportResult.SUCCESS else None
            (counter or self.metrics.failed).inc(len(spans))
        return result

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis)


def otlp_exporter() -> OTLPSpanExporter:
    """The OTLP/HTTP exporter; a protocol variable asking for another is refused, naming it.

    Only http/protobuf is shipped: spans sent over HTTP to a gRPC port (4317) would
    fail at every export, so the server refuses to start instead.
    """
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(name, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise ValueError(
                    f"{name}={protocol!r}: tabserve exports traces over OTLP/HTTP only; "
                    "expected 'http/protobuf' (or unset), with the endpoint's HTTP port (4318)"
                )
            break
    return OTLPSpanExporter()


def service_resource() -> Resource:
    """tabserve's name and version, under what `OTEL_RESOURCE_ATTRIBUTES` and
    `OTEL_SERVICE_NAME` say (they win), with the SDK's own attributes."""
    ours = {SERVICE_NAME: "tabserve", SERVICE_VERSION: __version__}
    return Resource.create(ours).merge(OTELResourceDetector().detect())
