"""The prediction log's metrics: rows written, dropped and expired; feedback and quality."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PredictionLogMetrics:
    """The `tabserve_prediction_log_*` and `tabserve_feedback_*` series, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "tabserve_prediction_log_rows_written",
            "Rows written to the prediction log.",
            registry=registry,
        )
        self.dropped = Counter(
            "tabserve_prediction_log_rows_dropped",
            "Rows not logged, by reason: queue_full (the writer's queue was full), "
            "write_failed (the database refused the batch), duplicate (the model's request id "
            "and row were logged already), closed (answered after the writer stopped).",
            ["reason"],
            registry=registry,
        )
        self.write_failures = Counter(
            "tabserve_prediction_log_write_failures",
            "Batches the prediction log failed to write (their rows count as dropped).",
            registry=registry,
        )
        self.queue_rows = Gauge(
            "tabserve_prediction_log_queue_rows",
            "Rows waiting to be written to the prediction log.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.expired = Counter(
            "tabserve_prediction_log_rows_expired",
            "Logged rows deleted by retention, by reason (age, size).",
            ["reason"],
            registry=registry,
        )
        self.feedback_items = Counter(
            "tabserve_feedback_items",
            "Ground-truth items received, by model and outcome "
            "(accepted, unknown_request, duplicate, invalid).",
            ["model", "outcome"],
            registry=registry,
        )
        self.feedback_rows = Counter(
            "tabserve_feedback_rows",
            "Logged rows whose ground truth was accepted, by model and (predicting) version.",
            ["model", "version"],
            registry=registry,
        )
        self.feedback_confusion = Counter(
            "tabserve_feedback_confusion",
            "Classifiers: rows with accepted ground truth, by model, version, actual class "
            "and predicted class (a confusion matrix).",
            ["model", "version", "actual", "predicted"],
            registry=registry,
        )
        self.feedback_correct = Counter(
            "tabserve_feedback_correct",
            "Classifiers: rows whose prediction equalled the ground truth, by model, version "
            "and class (the confusion matrix's diagonal, which PromQL cannot select).",
            ["model", "version", "class"],
            registry=registry,
        )
        self.feedback_absolute_error = Counter(
            "tabserve_feedback_absolute_error",
            "Regressors: sum of |prediction - truth| over rows with accepted ground truth, "
            "by model and version (divide by tabserve_feedback_rows for the MAE).",
            ["model", "version"],
            registry=registry,
        )
