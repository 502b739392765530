"""The core request path: pick a ready model, validate, predict off the loop, record metrics."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.inference import InferencePool
from service.core.metrics import ServiceMetrics
from service.core.registry import ModelRegistry, ModelVersion
from service.core.runtime import Prediction
from service.core.validation import ValidatedBatch


class DataPlane:
    """What every API calls, whatever its wire format."""

    def __init__(self, registry: ModelRegistry, pool: InferencePool, metrics: ServiceMetrics):
        self.registry = registry
        self.pool = pool
        self.metrics = metrics

    def model(self, name: str, version: int | None = None) -> ModelVersion:
        """A ready model version, or ModelNotFoundError / ModelNotReadyError."""
        return self.registry.ready(name, version)

    async def predict(self, model: ModelVersion, batch: ValidatedBatch) -> Prediction:
        """Run the model on a validated batch on the inference pool."""
        prediction, seconds = await self.pool.run(_timed, model, batch.features)
        bound = model.metrics
        if bound is not None:
            bound.observe(batch.rows, seconds)
            if batch.out_of_range.any():
                bound.count_out_of_range(batch.out_of_range)
            if prediction.proba is not None:
                picked = prediction.proba.argmax(axis=1)
                bound.count_classes(np.bincount(picked, minlength=prediction.proba.shape[1]))
        return prediction


def _timed(model: ModelVersion, features: npt.NDArray[Any]) -> tuple[Prediction, float]:
    started = time.perf_counter()
    prediction = model.runtime.predict(features)
    return prediction, time.perf_counter() - started
