"""What one app instance owns, built by `create_app` and filled by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from tabserve.service.core.batching import BatchPolicy
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.drift import DriftMonitor
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.repository import ModelRepository
from tabserve.service.predlog.log import PredictionLog
from tabserve.service.settings import Settings


@dataclass
class AppState:
    """Settings, metrics, models and the inference pool of one app."""

    settings: Settings
    metrics: ServiceMetrics
    registry: ModelRegistry
    pool: InferencePool
    dataplane: DataPlane
    repository: ModelRepository
    predlog: PredictionLog | None = None
    drift: DriftMonitor | None = None
    loaded: bool = False
    draining: bool = False

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        """Everything empty: the lifespan loads the models."""
        metrics = ServiceMetrics()
        registry = ModelRegistry()
        pool = InferencePool(settings.inference_threads)
        policy = BatchPolicy(
            max_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
            concurrency=settings.batch_concurrency,
            max_queue_rows=settings.queue_max_rows,
        )
        dataplane = DataPlane(registry, pool, metrics, policy)
        drift = DriftMonitor(registry, metrics, settings) if settings.drift_enabled else None
        if drift is not None:
            drift.attach(dataplane)
        return cls(
            settings,
            metrics,
            registry,
            pool,
            dataplane,
            ModelRepository(settings, metrics, registry),
            PredictionLog.from_settings(settings, metrics, registry),
            drift,
        )
