"""The core request path: pick a ready model, queue the validated rows, record metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from service.core.batching import Batcher, BatchPolicy, CallObserver
from service.core.inference import InferencePool
from service.core.metrics import ModelMetrics, ServiceMetrics
from service.core.registry import ModelRegistry, ModelVersion
from service.core.runtime import Prediction
from service.core.validation import ValidatedBatch


class DataPlane:
    """What every API calls, whatever its wire format."""

    def __init__(
        self,
        registry: ModelRegistry,
        pool: InferencePool,
        metrics: ServiceMetrics,
        policy: BatchPolicy,
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.metrics = metrics
        self.policy = policy

    def model(self, name: str, version: int | None = None) -> ModelVersion:
        """A ready model version, or ModelNotFoundError / ModelNotReadyError."""
        return self.registry.ready(name, version)

    async def predict(
        self,
        model: ModelVersion,
        batch: ValidatedBatch,
        *,
        deadline: float | None = None,
        abandoned: Callable[[], Awaitable[Any]] | None = None,
    ) -> Prediction:
        """Predict a validated batch; it may share a model call with concurrent requests.

        See `Batcher.submit` for `deadline` and `abandoned`.
        """
        batcher = model.batcher
        if batcher is None:
            batcher = model.batcher = self._batcher(model)
        if model.metrics is not None and batch.out_of_range.any():
            model.metrics.count_out_of_range(batch.out_of_range)
        return await batcher.submit(batch.features, deadline=deadline, abandoned=abandoned)

    def _batcher(self, model: ModelVersion) -> Batcher:
        bound = model.metrics
        observe = None if bound is None else _observer(bound)
        return Batcher(model.runtime.predict, self.pool, self.policy, observe, bound)


def _observer(bound: ModelMetrics) -> CallObserver:
    """Per-call metrics: rows, time, and predicted classes counted on the whole batch."""

    def observe(rows: int, seconds: float, prediction: Prediction) -> None:
        bound.observe(rows, seconds)
        if prediction.proba is not None:
            bound.count_classes(prediction.proba)

    return observe
