"""Prometheus metrics owned by one app instance.

Nothing is registered at import time: `ServiceMetrics()` builds its own registry.
When `PROMETHEUS_MULTIPROC_DIR` is set (several worker processes), values go to
per-process files and `render()` sums them, so every scrape sees the totals.
Hot paths bind label children once per model version (`ModelMetrics`) instead of
calling `labels()` per request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
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


def _registry() -> CollectorRegistry:
    """A new app-owned registry, with process_* series when one process serves."""
    if multiprocess_dir() and getattr(values.ValueClass, "__name__", "") == "MutexValue":
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported, so "
            "worker metrics would not add up; set it first (service.multiproc)"
        )
    registry = CollectorRegistry(auto_describe=True)
    if not multiprocess_dir():
        # process_* series (start time, memory, CPU); per-process, so not in worker mode
        ProcessCollector(registry=registry)
    return registry


class HttpMetrics:
    """Requests as the HTTP layer sees them, by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tabserve_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tabserve_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "tabserve_http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        )


class InferenceMetrics:
    """Model calls and what they predicted, by model and version."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "tabserve_inference_duration_seconds",
            "Time of one model call (the predict work itself), by model and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "tabserve_inference_rows",
            "Rows predicted, by model and version.",
            ["model", "version"],
            registry=registry,
        )
        self.predictions = Counter(
            "tabserve_predictions",
            "Predicted labels of classifiers, by model, version and class.",
            ["model", "version", "class"],
            registry=registry,
        )


class BatchMetrics:
    """Adaptive batching: rows per call, queued rows, refused and dropped requests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows_per_call = Histogram(
            "tabserve_inference_batch_rows",
            "Rows per model call, by model and version.",
            ["model", "version"],
            buckets=ROWS_BUCKETS,
            registry=registry,
        )
        self.queue_rows = Gauge(
            "tabserve_queue_rows",
            "Rows waiting for a model call, by model and version.",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "tabserve_requests_rejected",
            "Requests refused because the queue was full (overloaded), or dropped before "
            "their model call because their deadline passed or their client disconnected.",
            ["model", "version", "reason"],
            registry=registry,
        )


class ValidationMetrics:
    """Inputs refused, and values served although outside the training range."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "tabserve_validation_errors",
            "Requests refused for bad input, by model and reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.out_of_range = Counter(
            "tabserve_out_of_range_values",
            "Input values outside the training range, by model, version and feature.",
            ["model", "version", "feature"],
            registry=registry,
        )


class LoadMetrics:
    """Model versions loaded, how long they took, and the ones that failed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "tabserve_model_info",
            "One series per loaded model version; the value is 1 when it is ready to serve.",
            ["model", "version", "sha256", "sklearn_version", "engine"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.seconds = Gauge(
            "tabserve_model_load_duration_seconds",
            "Time to load, verify and warm up a model version.",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.failures = Counter(
            "tabserve_model_load_failures",
            "Model versions that failed to load, by model.",
            ["model"],
            registry=registry,
        )
        self.versions_failed = Gauge(
            "tabserve_model_versions_failed",
            "Versions that failed to load and are still on disk, by model (0 once fixed or gone).",
            ["model"],
            registry=registry,
            # set by the process answering the scrape, just before it renders
            multiprocess_mode="livemostrecent",
        )


class ServiceMetrics:
    """The app's registry and the series of the serving core; features add their own.

    Each feature's metrics class (drift, prediction log, streams, sink) registers on
    `registry`; `render` exposes them all.
    """

    def __init__(self, *, created_series: bool = False) -> None:
        self.created_series = created_series
        """Whether `render` keeps the `*_created` series (`Settings.metrics_created_series`)."""
        self.registry = _registry()
        reg = self.registry
        self.http = HttpMetrics(reg)
        self.inference = InferenceMetrics(reg)
        self.batching = BatchMetrics(reg)
        self.loading = LoadMetrics(reg)
        self.validation = ValidationMetrics(reg)
        self.before_render: list[Callable[[], None]] = []
        """Called (on the event loop) before each exposition: buffered counts flush here."""

    def for_model(
        self, name: str, version: int, classes: list[str], features: list[str]
    ) -> ModelMetrics:
        """Bind the per-model series for one model version."""
        labels = (name, str(version))
        return ModelMetrics(
            inference_seconds=self.inference.seconds.labels(*labels),
            rows=self.inference.rows.labels(*labels),
            rows_per_call=self.batching.rows_per_call.labels(*labels),
            queue_rows=self.batching.queue_rows.labels(*labels),
            rejections={r: self.batching.rejections.labels(*labels, r) for r in REJECTION_REASONS},
            predictions={c: self.inference.predictions.labels(*labels, c) for c in classes},
            out_of_range=[self.validation.out_of_range.labels(*labels, f) for f in features],
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        for hook in self.before_render:
            hook()
        if multiprocess_dir():
            collected = CollectorRegistry()
            multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
            return generate_latest(collected), CONTENT_TYPE_LATEST
        if self.created_series:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_LATEST


class _WithoutCreated:
    """A registry's families without their `*_created` samples.

    Filtered here, per app, rather than with prometheus_client's process-wide
    `disable_created_metrics()`. Worker mode never has them: the multiprocess
    collector does not export them.
    """

    _TYPES = frozenset({"counter", "histogram", "summary"})

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        """The registry's families, `<name>_created` samples left out."""
        for family in self.registry.collect():
            if family.type in self._TYPES:
                created = family.name + "_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family
