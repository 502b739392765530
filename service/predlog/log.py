"""One app's prediction log: its store, writer, feedback and quality, built from its settings.

`create_app` builds it (no I/O); `migrate` runs in the gunicorn master before the
workers fork (or in `start`, for a single process); `start` attaches the writer to
the data plane; `stop` writes what is queued and releases the database.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.predlog.feedback import FeedbackRecorder
from tabserve.service.predlog.journal import Journal
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.quality import VersionQuality, measure
from tabserve.service.predlog.settings import PredictionLogSettings
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.predlog.writer import PredictionLogWriter, WriterPolicy


class PredictionLog:
    """The prediction log as the service runs it: a start/stop component of the app."""

    def __init__(
        self,
        settings: PredictionLogSettings,
        metrics: PredictionLogMetrics,
        dataplane: DataPlane,
        *,
        redact: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.dataplane = dataplane
        self.registry: ModelRegistry = dataplane.registry
        self.store = PredictionStore(settings.database_url)
        journal = (
            Journal(settings.data_dir / "predlog-journal")
            if settings.durability == "journal"
            else None
        )
        self.writer = PredictionLogWriter(
            self.store, _policy(settings), metrics, redact, journal=journal
        )
        self.feedback = FeedbackRecorder(self.store, self.writer, self.registry, metrics)
        self.migrated = False

    def migrate(self) -> None:
        """Bring the schema up to date; leaves no open connection (safe to fork after)."""
        self.store.migrate()
        self.store.dispose()
        self.migrated = True

    async def start(self) -> None:
        """Migrate if not done yet, start the writer, listen to answered requests."""
        await anyio.to_thread.run_sync(self._start)

    def _start(self) -> None:
        if not self.migrated:
            self.migrate()
        self.feedback.prepare()
        self.writer.start()
        self.dataplane.request_listeners.append(self.writer)
        self.dataplane.shadow_listeners.append(self.writer)

    async def stop(self) -> None:
        """Write what is queued, then close the database connections."""
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        self.writer.close()
        self.store.dispose()

    def quality(self, model: str, since: float) -> list[VersionQuality]:
        """Per version: quality over the ground truth that arrived at or after `since`."""
        served = self.registry.get(model).served
        rows = self.store.labelled(model, since=since)
        return measure(rows, served.manifest.task if served is not None else "classification")


def _policy(settings: PredictionLogSettings) -> WriterPolicy:
    return WriterPolicy(
        fraction=settings.sample_fraction if settings.mode == "sampled" else 1,
        queue_rows=settings.queue_rows,
        batch_rows=settings.batch_rows,
        flush_seconds=settings.flush_seconds,
        retention_seconds=settings.retention_seconds,
        max_rows=settings.max_rows,
        retention_interval=settings.retention_interval_seconds,
    )
