"""Access control's metrics: refusals by reason, rereads of the keys file, keys held."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AuthMetrics:
    """The `tabserve_auth_*` series, on the app's registry (registered whether on or not)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.refusals = Counter(
            "tabserve_auth_refusals",
            "Requests refused by access control, by transport (http, websocket, grpc) and "
            "reason (missing, malformed, unknown: 401/UNAUTHENTICATED; scope: 403/"
            "PERMISSION_DENIED).",
            ["transport", "reason"],
            registry=registry,
        )
        self.reloads = Counter(
            "tabserve_auth_reloads",
            "Rereads of a changed keys file, by result (ok; error: the previous keys stay).",
            ["result"],
            registry=registry,
        )
        self.failing = Gauge(
            "tabserve_auth_keys_file_failing",
            "1 while the keys file's last reread failed (the keys read before stay in use), "
            "else 0.",
            registry=registry,
            multiprocess_mode="max",
        )
        self.keys = Gauge(
            "tabserve_auth_keys",
            "API keys this process accepts now.",
            registry=registry,
            multiprocess_mode="max",
        )
