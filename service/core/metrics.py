"""Prometheus metrics owned by one app instance.

Nothing is registered at import time: `ServiceMetrics()` builds its own registry.
When `PROMETHEUS_MULTIPROC_DIR` is set (several worker processes), values go to
per-process files and `render()` sums them, so every scrape sees the totals.
Hot paths bind label children once per model version (`ModelMetrics`) instead of
calling `labels()` per request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
REJECTION_REASONS = ("overloaded", "deadline", "disconnected")
SINK_EVENTS = ("request", "response")
SINK_DROP_REASONS = ("queue_full", "shutdown", "error")
SINK_FAILURE_REASONS = ("connection", "timeout", "status")
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    """The multiprocess metrics folder when several workers share metrics, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class ModelMetrics:
    """Series of one model version, bound once so the hot path only increments."""

    inference_seconds: Histogram
    rows: Counter
    rows_per_call: Histogram
    queue_rows: Gauge
    rejections: dict[str, Counter]
    predictions: dict[str, Counter] = field(default_factory=dict)
    out_of_range: list[Counter] = field(default_factory=list)

    def queued(self, rows: int) -> None:
        """The model's queue now holds `rows` rows."""
        self.queue_rows.set(rows)

    def rejected(self, reason: str) -> None:
        """A request refused (overloaded) or dropped (deadline, disconnected)."""
        self.rejections[reason].inc()

    def observe(self, rows: int, seconds: float) -> None:
        """One inference call of `rows` rows that took `seconds`."""
        self.inference_seconds.observe(seconds)
        self.rows.inc(rows)
        self.rows_per_call.observe(rows)

    def count_classes(self, proba: npt.NDArray[np.float64]) -> None:
        """Predictions per class, from the batch's class probabilities (argmax is the label)."""
        counts = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        for counter, count in zip(self.predictions.values(), counts.tolist(), strict=True):
            if count:
                counter.inc(count)

    def count_out_of_range(self, counts: npt.NDArray[np.intp]) -> None:
        """Values outside the training range, `counts[i]` for the i-th feature."""
        for index in np.flatnonzero(counts).tolist():
            self.out_of_range[index].inc(int(counts[index]))


class ServiceMetrics:
    """Every metric the service exports, registered on an app-owned registry."""

    def __init__(self) -> None:
        if multiprocess_dir() and getattr(values.ValueClass, "__name__", "") == "MutexValue":
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported, so "
                "worker metrics would not add up; set it first (service.multiproc)"
            )
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        if not multiprocess_dir():
            # process_* series (start time, memory, CPU); per-process, so not in worker mode
            ProcessCollector(registry=reg)
        self.http_requests = Counter(
            "tabserve_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.http_latency = Histogram(
            "tabserve_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.http_in_flight = Gauge(
            "tabserve_http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.inference_seconds = Histogram(
            "tabserve_inference_duration_seconds",
            "Time of one model call (the predict work itself), by model and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.rows = Counter(
            "tabserve_inference_rows",
            "Rows predicted, by model and version.",
            ["model", "version"],
            registry=reg,
        )
        self.rows_per_call = Histogram(
            "tabserve_inference_batch_rows",
            "Rows per model call, by model and version.",
            ["model", "version"],
            buckets=ROWS_BUCKETS,
            registry=reg,
        )
        self.predictions = Counter(
            "tabserve_predictions",
            "Predicted labels of classifiers, by model, version and class.",
            ["model", "version", "class"],
            registry=reg,
        )
        self.queue_rows = Gauge(
            "tabserve_queue_rows",
            "Rows waiting for a model call, by model and version.",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "tabserve_requests_rejected",
            "Requests refused because the queue was full (overloaded), or dropped before "
            "their model call because their deadline passed or their client disconnected.",
            ["model", "version", "reason"],
            registry=reg,
        )
        self.model_info = Gauge(
            "tabserve_model_info",
            "One series per loaded model version; the value is 1 when it is ready to serve.",
            ["model", "version", "sha256", "sklearn_version", "engine"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.model_load_seconds = Gauge(
            "tabserve_model_load_duration_seconds",
            "Time to load, verify and warm up a model version.",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.model_load_failures = Counter(
            "tabserve_model_load_failures",
            "Model versions that failed to load, by model.",
            ["model"],
            registry=reg,
        )
        self.model_versions_failed = Gauge(
            "tabserve_model_versions_failed",
            "Versions that failed to load and are still on disk, by model (0 once fixed or gone).",
            ["model"],
            registry=reg,
            # set by the process answering the scrape, just before it renders
            multiprocess_mode="livemostrecent",
        )
        self.validation_errors = Counter(
            "tabserve_validation_errors",
            "Requests refused for bad input, by model and reason.",
            ["model", "reason"],
            registry=reg,
        )
        self.out_of_range = Counter(
            "tabserve_out_of_range_values",
            "Input values outside the training range, by model, version and feature.",
            ["model", "version", "feature"],
            registry=reg,
        )
        # Drift (service.core.drift): live rows per bin beside each bin's training share.
        self.drift_rows = Counter(
            "tabserve_drift_rows",
            "Rows served, by model, version, feature and bin of that feature's training "
            "histogram (or category); `<missing>` and `<unseen>` are bins too.",
            ["model", "version", "feature", "bin"],
            registry=reg,
        )
        self.drift_reference = Gauge(
            "tabserve_drift_reference_ratio",
            "Share of the training rows in each bin of tabserve_drift_rows_total.",
            ["model", "version", "feature", "bin"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.drift_prediction_rows = Counter(
            "tabserve_drift_prediction_rows",
            "Predictions, by model, version and bin: the class for classifiers, the bin of "
            "the training target's histogram for regressors.",
            ["model", "version", "bin"],
            registry=reg,
        )
        self.drift_prediction_reference = Gauge(
            "tabserve_drift_prediction_reference_ratio",
            "Share of the training target in each bin of tabserve_drift_prediction_rows_total.",
            ["model", "version", "bin"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.before_render: list[Callable[[], None]] = []
        """Called (on the event loop) before each exposition: buffered counts flush here."""

        # --- prediction log, ground-truth feedback and live quality (service.predlog) ---
        self.predlog_written = Counter(
            "tabserve_prediction_log_rows_written",
            "Rows written to the prediction log.",
            registry=reg,
        )
        self.predlog_dropped = Counter(
            "tabserve_prediction_log_rows_dropped",
            "Rows not logged, by reason: queue_full (the writer's queue was full), "
            "write_failed (the database refused the batch), duplicate (the model's request id "
            "and row were logged already), closed (answered after the writer stopped).",
            ["reason"],
            registry=reg,
        )
        self.predlog_write_failures = Counter(
            "tabserve_prediction_log_write_failures",
            "Batches the prediction log failed to write (their rows count as dropped).",
            registry=reg,
        )
        self.predlog_queue_rows = Gauge(
            "tabserve_prediction_log_queue_rows",
            "Rows waiting to be written to the prediction log.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.predlog_expired = Counter(
            "tabserve_prediction_log_rows_expired",
            "Logged rows deleted by retention, by reason (age, size).",
            ["reason"],
            registry=reg,
        )
        self.feedback_items = Counter(
            "tabserve_feedback_items",
            "Ground-truth items received, by model and outcome "
            "(accepted, unknown_request, duplicate, invalid).",
            ["model", "outcome"],
            registry=reg,
        )
        self.feedback_rows = Counter(
            "tabserve_feedback_rows",
            "Logged rows whose ground truth was accepted, by model and (predicting) version.",
            ["model", "version"],
            registry=reg,
        )
        self.feedback_confusion = Counter(
            "tabserve_feedback_confusion",
            "Classifiers: rows with accepted ground truth, by model, version, actual class "
            "and predicted class (a confusion matrix).",
            ["model", "version", "actual", "predicted"],
            registry=reg,
        )
        self.feedback_correct = Counter(
            "tabserve_feedback_correct",
            "Classifiers: rows whose prediction equalled the ground truth, by model, version "
            "and class (the confusion matrix's diagonal, which PromQL cannot select).",
            ["model", "version", "class"],
            registry=reg,
        )
        self.feedback_absolute_error = Counter(
            "tabserve_feedback_absolute_error",
            "Regressors: sum of |prediction - truth| over rows with accepted ground truth, "
            "by model and version (divide by tabserve_feedback_rows for the MAE).",
            ["model", "version"],
            registry=reg,
        )
        # --- prediction streams over WebSocket (service.api.stream) ---
        self.stream_connections = Gauge(
            "tabserve_stream_connections",
            "WebSocket prediction streams open now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.stream_messages = Counter(
            "tabserve_stream_messages",
            "Stream messages answered, by model and code (`ok`, or the error code sent back).",
            ["model", "code"],
            registry=reg,
        )
        self.stream_rows = Counter(
            "tabserve_stream_rows",
            "Rows predicted for stream messages, by model and version.",
            ["model", "version"],
            registry=reg,
        )

        # Payload sink (service.sinks): every event ends sent, dropped or failed.
        self.sink_sent = Counter(
            "tabserve_sink_events_sent",
            "Events the payload sink delivered (the receiver answered 2xx), by event type.",
            ["event"],
            registry=reg,
        )
        self.sink_dropped = Counter(
            "tabserve_sink_events_dropped",
            "Events the payload sink did not deliver: its queue was full (queue_full), "
            "shutdown's drain period ended first (shutdown) or the event could not be encoded "
            "(error), by event type and reason.",
            ["event", "reason"],
            registry=reg,
        )
        self.sink_failed = Counter(
            "tabserve_sink_events_failed",
            "Events the payload sink sent but the receiver did not take: no connection "
            "(connection), no answer in time (timeout) or a non-2xx answer (status).",
            ["event", "reason"],
            registry=reg,
        )

    def for_model(
        self, name: str, version: int, classes: list[str], features: list[str]
    ) -> ModelMetrics:
        """Bind the per-model series for one model version."""
        labels = (name, str(version))
        return ModelMetrics(
            inference_seconds=self.inference_seconds.labels(*labels),
            rows=self.rows.labels(*labels),
            rows_per_call=self.rows_per_call.labels(*labels),
            queue_rows=self.queue_rows.labels(*labels),
            rejections={r: self.rejections.labels(*labels, r) for r in REJECTION_REASONS},
            predictions={c: self.predictions.labels(*labels, c) for c in classes},
            out_of_range=[self.out_of_range.labels(*labels, f) for f in features],
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        for hook in self.before_render:
            hook()
        if multiprocess_dir():
            collected = CollectorRegistry()
            multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
            return generate_latest(collected), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
