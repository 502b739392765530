"""One app's prediction log: its store, writer, feedback and quality, built from settings.

`create_app` builds it (no I/O); `migrate` runs in the gunicorn master before the
workers fork (or in `start`, for a single process); `start` attaches the writer to
the data plane; `close` writes what is queued and releases the database.
"""

from __future__ import annotations

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.predlog.feedback import FeedbackRecorder
from tabserve.service.predlog.quality import VersionQuality, measure
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.predlog.writer import PredictionLogWriter, WriterPolicy
from tabserve.service.settings import Settings


class PredictionLog:
    """The prediction log as the service runs it."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, registry: ModelRegistry):
        self.settings = settings
        self.registry = registry
        self.store = PredictionStore(settings.predlog_database_url)
        policy = WriterPolicy(
            fraction=settings.predlog_sample_fraction if settings.predlog_mode == "sampled" else 1,
            queue_rows=settings.predlog_queue_rows,
            batch_rows=settings.predlog_batch_rows,
            flush_seconds=settings.predlog_flush_seconds,
            retention_seconds=settings.predlog_retention_seconds,
            max_rows=settings.predlog_max_rows,
            retention_interval=settings.predlog_retention_interval_seconds,
        )
        self.writer = PredictionLogWriter(self.store, policy, metrics, settings.log_redact)
        self.feedback = FeedbackRecorder(self.store, self.writer, registry, metrics)
        self.migrated = False

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: ServiceMetrics, registry: ModelRegistry
    ) -> PredictionLog | None:
        """The log, or None when `predlog_mode` is off."""
        if settings.predlog_mode == "off":
            return None
        return cls(settings, metrics, registry)

    def migrate(self) -> None:
        """Bring the schema up to date; leaves no open connection (safe to fork after)."""
        self.store.migrate()
        self.store.dispose()
        self.migrated = True

    def start(self, dataplane: DataPlane) -> None:
        """Migrate if not done yet, start the writer, listen to answered requests."""
        if not self.migrated:
            self.migrate()
        self.feedback.prepare()
        self.writer.start()
        dataplane.request_listeners.append(self.writer)

    def close(self) -> None:
        """Write what is queued, then close the database connections."""
        self.writer.close()
        self.store.dispose()

    def quality(self, model: str, since: float) -> list[VersionQuality]:
        """Per version: quality over the ground truth that arrived at or after `since`."""
        manifest = self.registry.get(model).manifest
        rows = self.store.labelled(model, since=since)
        return measure(rows, manifest.task if manifest is not None else "classification")
