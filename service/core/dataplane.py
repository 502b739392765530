"""The core request path: pick a ready model, queue the validated rows, record metrics.

Two kinds of listener see what is served, both called on the event loop, so both
must be quick (count, or hand off to a queue), never block, never raise:

* a *call listener* sees each model call: the coalesced rows of every request in
  it and their prediction (drift counting works on these whole batches);
* a *request listener* sees each answered request as a `Served` record (the
  prediction log and its sinks work per request, keyed by the request id);
* a *shadow listener* sees what a shadow rollout's challenger predicted for an
  answered request, under the same request id (the prediction log keeps it, under
  the challenger's version; the sink does not: nobody was answered).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tabserve.artifact.manifest import Manifest
from tabserve.service.core.batching import Batcher, BatchPolicy, TimedBatcher
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry, ModelVersion
from tabserve.service.core.rollout.plan import KeyReader, Rollout, S
from tabserve.service.core.runtime import Prediction, Runtime
from tabserve.service.core.served import Lanes, ServedModel
from tabserve.service.core.validation import FeatureSchema, ValidatedBatch


@dataclass(frozen=True, slots=True)
class Served:
    """One answered request."""

    request_id: str
    model: ServedModel
    features: npt.NDArray[Any]
    """The request's validated rows, as the model saw them (feature order of its schema)."""
    prediction: Prediction
    """A `call_timing.TimedPrediction` when the data plane is `timed`."""
    received: float
    """Wall-clock time (`time.time()`) when the request reached the data plane."""
    seconds: float
    """Time spent in the data plane: queueing plus the model call."""


CallListener = Callable[[ServedModel, npt.NDArray[Any], Prediction], None]
RequestListener = Callable[[Served], None]


class DataPlane:
    """What every API calls, whatever its wire format."""

    def __init__(
        self,
        registry: ModelRegistry,
        pool: InferencePool,
        metrics: ServiceMetrics,
        policy: BatchPolicy,
        *,
        timed: bool = False,
    ) -> None:
        """`timed`: every model's batcher says where each request's time went
        (`TimedBatcher`, for tracing); off, the plain batcher does no such work."""
        self.registry = registry
        self.pool = pool
        self.metrics = metrics
        self.policy = policy
        self._batcher: type[Batcher] = TimedBatcher if timed else Batcher
        self.call_listeners: list[CallListener] = []
        self.request_listeners: list[RequestListener] = []
        self.shadow_listeners: list[RequestListener] = []
        self.rollouts: dict[str, Rollout] = {}
        """Models with a rollout (kept by `rollout.Rollouts`); `route` reads it."""

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """A ready model version, or ModelNotFoundError / ModelNotReadyError.

        With no version: the default version, whatever rollout runs (metadata,
        explanations and drift describe the champion); predictions take `route`.
        """
        return self.registry.ready(name, version)

    def route(
        self,
        name: str,
        version: int | None = None,
        key: KeyReader[S] | None = None,
        source: S | None = None,
    ) -> ServedModel:
        """The version that predicts a request: the one it names, else its rollout's pick.

        `key(source)` reads the request's sticky key; only a split rollout calls it.
        With no rollout this costs `model` one dict lookup more.
        """
        if version is None:
            rollout = self.rollouts.get(name)
            if rollout is not None:
                version = rollout.version_for(key, source)
        return self.registry.ready(name, version)

    def serve(
        self,
        path: Path,
        manifest: Manifest,
        schema: FeatureSchema,
        runtime: Runtime,
        batch_rows: int | None = None,
    ) -> ServedModel:
        """The served model of a loaded, verified version: its metrics and batcher bound.

        `batch_rows` is the model's own limit on rows per call (None: the global one).
        """
        classes = [str(c) for c in manifest.target.classes or []]
        metrics = self.metrics.for_model(
            manifest.name, manifest.version, classes, manifest.feature_names
        )
        if batch_rows is not None:
            policy = replace(self.policy, max_rows=batch_rows)
        else:
            policy = self.policy
        listeners = self.call_listeners

        def observe(features: npt.NDArray[Any], seconds: float, prediction: Prediction) -> None:
            metrics.observe(features.shape[0], seconds)
            if prediction.proba is not None:
                metrics.count_classes(prediction.proba)
            for listener in listeners:
                # The batcher calls this only for requests, which come once `serve`
                # has returned, so `served` is bound by then.
                listener(served, features, prediction)

        batcher = self._batcher(runtime.predict, self.pool, policy, observe, metrics)
        served = ServedModel(
            name=manifest.name,
            version=manifest.version,
            path=path,
            manifest=manifest,
            schema=schema,
            runtime=runtime,
            metrics=metrics,
            batcher=batcher,
            batch_rows=policy.max_rows,
            lanes=Lanes(),
        )
        return served

    async def predict(
        self,
        model: ServedModel,
        batch: ValidatedBatch,
        *,
        deadline: float | None = None,
        abandoned: Callable[[], Awaitable[Any]] | None = None,
        left: Callable[[], bool] | None = None,
        request_id: str = "",
    ) -> Prediction:
        """Predict a validated batch; it may share a model call with concurrent requests.

        See `Batcher.submit` for `deadline`, `abandoned` and `left`; `request_id` is
        what request listeners record the answer under.
        """
        batcher = model.batcher
        if batch.any_out_of_range:
            model.metrics.count_out_of_range(batch.out_of_range)
        if not self.request_listeners:
            return await batcher.submit(
                batch.features, deadline=deadline, abandoned=abandoned, left=left
            )
        received = time.time()
        started = time.perf_counter()
        prediction = await batcher.submit(
            batch.features, deadline=deadline, abandoned=abandoned, left=left
        )
        served = Served(
            request_id,
            model,
            batch.features,
            prediction,
            received,
            time.perf_counter() - started,
        )
        for listener in self.request_listeners:
            listener(served)
        return prediction

    def batch_rows(self, model: ModelVersion) -> int:
        """Most rows one call of `model` takes (a version that does not serve: the global limit)."""
        return model.served.batch_rows if model.served is not None else self.policy.max_rows
