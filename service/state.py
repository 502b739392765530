"""What one app instance owns, built by `create_app` and filled by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.batching import BatchPolicy
from service.core.dataplane import DataPlane
from service.core.drift import DriftMonitor
from service.core.inference import InferencePool
from service.core.metrics import ServiceMetrics
from service.core.registry import ModelRegistry
from service.core.repository import ModelRepository
from service.predlog.log import PredictionLog
from service.settings import Settings


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
