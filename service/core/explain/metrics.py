"""The explanation feature's series (`tabserve_explain_*`), on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from tabserve.service.core.metrics import LATENCY_BUCKETS

OUTCOMES = ("ok", "not_explainable")


class ExplainMetrics:
    """Explain calls by outcome, their rows and their time (building the explainer included)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "tabserve_explain_calls",
            "Explain calls that reached a model, by model, version and outcome (`ok`, or "
            "`not_explainable` for a model without exact attributions).",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self.rows = Counter(
            "tabserve_explain_rows",
            "Rows explained, by model and version.",
            ["model", "version"],
            registry=registry,
        )
        self.seconds = Histogram(
            "tabserve_explain_duration_seconds",
            "Time of one answered explain call, waiting for an explanation thread included, "
            "by model and version (the first call of a version also builds its explainer).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, model: str, version: int, rows: int, seconds: float) -> None:
        """One answered explain call."""
        labels = (model, str(version))
        self.calls.labels(*labels, "ok").inc()
        self.rows.labels(*labels).inc(rows)
        self.seconds.labels(*labels).observe(seconds)

    def refused(self, model: str, version: int) -> None:
        """One explain call refused: the model has no exact explanation."""
        self.calls.labels(model, str(version), "not_explainable").inc()
