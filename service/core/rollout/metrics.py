"""The rollout's series (`tabserve_rollout_*`), on the app's registry.

`version` is always the version the series is about: the arm's for routed requests,
the challenger's for shadow copies.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tabserve.service.core.metrics import LATENCY_BUCKETS
from tabserve.service.core.rollout.plan import Arms

SHADOW_OUTCOMES = ("compared", "failed", "dropped")
END_REASONS = ("deleted", "promoted", "challenger_gone", "champion_changed")
DIFFERENCE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0)


class RolloutMetrics:
    """Routed requests by arm, shadow copies and how they compared, rollouts ended."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tabserve_rollout_requests",
            "Requests naming no version that a rollout routed, by model, the version that "
            "answered and its arm (`champion` or `challenger`).",
            ["model", "version", "arm"],
            registry=registry,
        )
        self.shadow_requests = Counter(
            "tabserve_rollout_shadow_requests",
            "Copies of the champion's requests for a shadow challenger, by model, challenger "
            "version and outcome: `compared`, `failed` (the challenger raised or refused), "
            "`dropped` (the shadow queue was full: the champion never waits).",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self.shadow_rows = Counter(
            "tabserve_rollout_shadow_rows",
            "Rows a shadow classifier predicted, by model, challenger version and whether its "
            "class `agree`s or `disagree`s with the champion's.",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self.shadow_difference = Histogram(
            "tabserve_rollout_shadow_difference",
            "Absolute difference between a shadow regressor's prediction and the champion's, "
            "per row, by model and challenger version.",
            ["model", "version"],
            buckets=DIFFERENCE_BUCKETS,
            registry=registry,
        )
        self.shadow_seconds = Histogram(
            "tabserve_rollout_shadow_duration_seconds",
            "Time of the challenger's prediction of one shadow copy (its queue and model call), "
            "by model and challenger version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "tabserve_rollout_active",
            "1 while a rollout runs (0 once it ended), by model, champion and challenger "
            "version and mode.",
            ["model", "champion", "challenger", "mode"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.ended = Counter(
            "tabserve_rollout_ended",
            "Rollouts ended, by model and reason: `deleted`, `promoted`, `challenger_gone` "
            "(unloaded, or its folder removed) or `champion_changed` (the default version "
            "changed or went).",
            ["model", "reason"],
            registry=registry,
        )

    def arms(self, model: str, champion: int, challenger: int) -> Arms:
        """The routed-request counters of both arms, bound once per rollout."""
        return Arms(
            self.requests.labels(model, str(champion), "champion"),
            self.requests.labels(model, str(challenger), "challenger"),
        )
