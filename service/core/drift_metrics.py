"""Drift's metrics: live rows per bin beside each bin's training share."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DriftMetrics:
    """The `tabserve_drift_*` series (`service.core.drift`), on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "tabserve_drift_rows",
            "Rows served, by model, version, feature and bin of that feature's training "
            "histogram (or category); `<missing>` and `<unseen>` are bins too.",
            ["model", "version", "feature", "bin"],
            registry=registry,
        )
        self.reference = Gauge(
            "tabserve_drift_reference_ratio",
            "Share of the training rows in each bin of tabserve_drift_rows_total.",
            ["model", "version", "feature", "bin"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.prediction_rows = Counter(
            "tabserve_drift_prediction_rows",
            "Predictions, by model, version and bin: the class for classifiers, the bin of "
            "the training target's histogram for regressors.",
            ["model", "version", "bin"],
            registry=registry,
        )
        self.prediction_reference = Gauge(
            "tabserve_drift_prediction_reference_ratio",
            "Share of the training target in each bin of tabserve_drift_prediction_rows_total.",
            ["model", "version", "bin"],
            registry=registry,
            multiprocess_mode="max",
        )
