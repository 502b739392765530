"""Shadow copies: the champion answers, the challenger predicts the same rows later.

`ShadowRunner` is a request listener of the data plane while a shadow rollout runs.
On the event loop it only looks the model up and puts the answered request on a
bounded queue (a full queue drops the copy and counts it), so the champion's answer
never waits. A few workers take copies off the queue and submit the very rows the
champion predicted to the challenger's batcher, then compare the two predictions:
same class or not (classifiers), absolute difference (regressors), and hand the
challenger's prediction to the data plane's shadow listeners (the prediction log
keeps it under the challenger's version and the same request id, so ground truth
for the request measures both versions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np

from tabserve.service.core.dataplane import DataPlane, Served
from tabserve.service.core.rollout.metrics import RolloutMetrics
from tabserve.service.core.rollout.plan import Rollout
from tabserve.service.core.rollout.settings import RolloutSettings
from tabserve.service.core.runtime import Prediction

log = logging.getLogger("tabserve.rollout")

_Copy = tuple[Rollout, Served]


class ShadowRunner:
    """Copies the champion's answered requests to shadow challengers, bounded, in the background."""

    def __init__(
        self, dataplane: DataPlane, metrics: RolloutMetrics, settings: RolloutSettings
    ) -> None:
        self.dataplane = dataplane
        self.registry = dataplane.registry
        self.metrics = metrics
        self.settings = settings
        self.shadows: dict[str, Rollout] = {}
        """Shadow rollouts by model; `Rollouts` keeps it."""
        self._queue: asyncio.Queue[_Copy] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._warned: set[int] = set()

    def __call__(self, served: Served) -> None:
        """Queue a copy of a request the champion answered (on the event loop: O(1))."""
        rollout = self.shadows.get(served.model.name)
        if rollout is None or served.model.version != rollout.champion:
            return
        queue = self._queue
        if queue is None or queue.full():
            self._count(rollout, "dropped")
            return
        queue.put_nowait((rollout, served))

    async def start(self) -> None:
        """Start the workers (on the app's loop, which the queue belongs to)."""
        self._queue = asyncio.Queue(self.settings.shadow_queue)
        self._workers = [
            asyncio.create_task(self._work(self._queue))
            for _ in range(self.settings.shadow_concurrency)
        ]

    async def stop(self) -> None:
        """Stop the workers; copies still queued are dropped (nobody waits for them)."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        self._queue = None

    async def join(self) -> None:
        """Wait until every queued copy has been predicted and compared (tests, benchmarks)."""
        if self._queue is not None:
            await self._queue.join()

    async def _work(self, queue: asyncio.Queue[_Copy]) -> None:
        while True:
            rollout, served = await queue.get()
            try:
                await self._shadow(rollout, served)
            except Exception:  # a worker must outlive any one copy
                log.exception("shadow copy for %s failed unexpectedly", rollout.model)
            finally:
                queue.task_done()

    async def _shadow(self, rollout: Rollout, served: Served) -> None:
        if self.shadows.get(rollout.model) is not rollout:
            return  # the rollout ended (or changed) while the copy waited
        started = time.perf_counter()
        try:
            challenger = self.registry.ready(rollout.model, rollout.challenger)
            prediction = await challenger.batcher.submit(served.features)
        except Exception as exc:
            self._failed(rollout, exc)
            return
        seconds = time.perf_counter() - started
        labels = (rollout.model, str(rollout.challenger))
        self.metrics.shadow_seconds.labels(*labels).observe(seconds)
        self._compare(rollout, served, prediction)
        self._count(rollout, "compared")
        copy = Served(
            served.request_id, challenger, served.features, prediction, served.received, seconds
        )
        for listener in self.dataplane.shadow_listeners:
            listener(copy)

    def _compare(self, rollout: Rollout, served: Served, prediction: Prediction) -> None:
        labels = (rollout.model, str(rollout.challenger))
        champion = np.asarray(served.prediction.predict)
        challenger = np.asarray(prediction.predict)
        if served.model.manifest.task == "regression":
            difference = self.metrics.shadow_difference.labels(*labels)
            gaps = np.abs(champion.astype(np.float64) - challenger.astype(np.float64))
            for gap in gaps.reshape(-1).tolist():
                difference.observe(gap)
            return
        agree = int(np.count_nonzero(champion.astype(str) == challenger.astype(str)))
        if agree:
            self.metrics.shadow_rows.labels(*labels, "agree").inc(agree)
        if champion.size - agree:
            self.metrics.shadow_rows.labels(*labels, "disagree").inc(champion.size - agree)

    def _failed(self, rollout: Rollout, exc: Exception) -> None:
        self._count(rollout, "failed")
        if id(rollout) not in self._warned:  # once per rollout: the counter has the rest
            self._warned.add(id(rollout))
            log.warning(
                "shadow challenger %s version %s failed (counted; later failures are not "
                "logged): %s",
                rollout.model,
                rollout.challenger,
                exc,
            )

    def _count(self, rollout: Rollout, outcome: str) -> None:
        self.metrics.shadow_requests.labels(rollout.model, str(rollout.challenger), outcome).inc()
