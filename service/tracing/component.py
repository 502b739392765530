"""The tracing component: the tracer provider's life inside the app's.

Started first and stopped last of the app's components, so every span (HTTP requests
drained on SIGTERM, gRPC calls finished in gRPC's grace) has ended before the batch
processor is shut down, which exports what it still holds: spans are not lost when
the process is told to stop.
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer

from tabserve.service import __version__
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.tracing.calls import CallSpans
from tabserve.service.tracing.metrics import TracingMetrics
from tabserve.service.tracing.propagation import current_trace_ids
from tabserve.service.tracing.provider import tracer_provider
from tabserve.service.tracing.rpc import TracingInterceptor


class Tracing:
    """Owns the tracer provider; the HTTP middleware and the gRPC interceptor read `tracer`."""

    def __init__(
        self, dataplane: DataPlane, metrics: TracingMetrics, exporter: SpanExporter | None = None
    ) -> None:
        """`exporter`: where spans go (None: OTLP/HTTP as the environment says)."""
        self.dataplane = dataplane
        self.metrics = metrics
        self.exporter = exporter
        self.tracer: Tracer | None = None
        """Set while the app runs; None before start (requests then pass untraced)."""
        self._provider: TracerProvider | None = None
        self._listener: CallSpans | None = None

    @staticmethod
    def trace_ids() -> tuple[str, str] | None:
        """The current trace and span ids, for the access log's lines."""
        return current_trace_ids()

    def grpc_interceptors(self) -> list[TracingInterceptor]:
        """What the gRPC server adds so that its calls get SERVER spans too."""
        return [TracingInterceptor(self)]

    async def start(self) -> None:
        """Build the provider in the serving process (a forked worker gets its own
        exporting thread) and watch answered requests for their queue and call spans."""
        self._provider = tracer_provider(self.metrics, self.exporter)
        self.tracer = self._provider.get_tracer("tabserve", __version__)
        self._listener = CallSpans(self.tracer)
        self.dataplane.request_listeners.append(self._listener)

    async def stop(self) -> None:
        """Export every span still held, then stop the exporting thread (off the loop)."""
        self.tracer = None
        if self._listener is not None:
            self.dataplane.request_listeners.remove(self._listener)
            self._listener = None
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)
            self._provider = None
