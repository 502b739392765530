"""The payload sink's metrics: every event ends sent, dropped or failed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

SINK_EVENTS = ("request", "response")
SINK_DROP_REASONS = ("queue_full", "shutdown", "error")
SINK_FAILURE_REASONS = ("connection", "timeout", "status")


class SinkMetrics:
    """The `tabserve_sink_events_*` series (`service.sinks`), on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "tabserve_sink_events_sent",
            "Events the payload sink delivered (the receiver answered 2xx), by event type.",
            ["event"],
            registry=registry,
        )
        self.dropped = Counter(
            "tabserve_sink_events_dropped",
            "Events the payload sink did not deliver: its queue was full (queue_full), "
            "shutdown's drain period ended first (shutdown) or the event could not be encoded "
            "(error), by event type and reason.",
            ["event", "reason"],
            registry=registry,
        )
        self.failed = Counter(
            "tabserve_sink_events_failed",
            "Events the payload sink sent but the receiver did not take: no connection "
            "(connection), no answer in time (timeout) or a non-2xx answer (status).",
            ["event", "reason"],
            registry=registry,
        )
