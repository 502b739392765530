"""Tracing's metrics: spans handed to the exporter, by whether the export succeeded.

Registered whether tracing is on or not, so the exposition lists the same families
whatever the settings. Imports no OpenTelemetry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class TracingMetrics:
    """The `tabserve_tracing_*` series, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exported = Counter(
            "tabserve_tracing_spans_exported",
            "Spans sent to the OTLP endpoint, by result: `success`, or `failure` when the "
            "export failed after the exporter's retries (those spans are lost).",
            ["result"],
            registry=registry,
        )
        self.succeeded = self.exported.labels("success")
        self.failed = self.exported.labels("failure")
