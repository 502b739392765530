"""The gRPC server's metrics: RPCs answered, their time, and those in flight."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tabserve.service.core.metrics import LATENCY_BUCKETS


class GrpcMetrics:
    """The `tabserve_grpc_*` series, on the app's registry.

    Labelled as `tabserve_http_requests_total` is (`route`, `status`), so a panel or
    rule can add both: `route` is the RPC's name (`ModelInfer`), `status` the gRPC
    code's name (`OK`, `INVALID_ARGUMENT`, `UNAVAILABLE`, ...).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tabserve_grpc_requests",
            "gRPC calls answered, by RPC name and status code name.",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tabserve_grpc_request_duration_seconds",
            "Time from a gRPC call's start to its answer, by RPC name.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "tabserve_grpc_requests_in_flight",
            "gRPC calls being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
