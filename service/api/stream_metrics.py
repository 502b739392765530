"""The streams' metrics: WebSocket prediction streams open, messages and rows answered."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class StreamMetrics:
    """The `tabserve_stream_*` series (`service.api.stream`), on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "tabserve_stream_connections",
            "WebSocket prediction streams open now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.messages = Counter(
            "tabserve_stream_messages",
            "Stream messages answered, by model and code (`ok`, or the error code sent back).",
            ["model", "code"],
            registry=registry,
        )
        self.rows = Counter(
            "tabserve_stream_rows",
            "Rows predicted for stream messages, by model and version.",
            ["model", "version"],
            registry=registry,
        )
