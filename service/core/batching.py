"""Adaptive batching: concurrent requests' rows become one model call.

The batcher wraps a model's `predict`; it never changes it. While a call is
running, arriving requests wait in a queue; when it finishes, everything queued
(up to `max_rows`) goes in the next call. An idle model therefore answers a lone
request at once (a batch of one), and a busy one amortises the per-call cost and
the thread hop over many requests. `max_wait` optionally holds an idle model's
first request a little longer to gather company.

Validation happens before a request joins a batch, so one bad request never
fails its neighbours; a request whose caller went away is dropped before its
batch is built. Watching for that costs a task per request (~90 µs of CPU on the
event loop, more than the rest of a V2 request), so a request starts watching
only once it has waited `watch_after` in the queue: under ordinary load a call
takes it long before. Where the HTTP server offers a flag for a client that has
left (tabserve's protocol does), a call checks it as it takes each request, so
a client that leaves a short queue costs nothing either. Deadlines and watching
are driven by one timer per model (a timer per request cost 6 % of a V2
request), which looks at the queue when the earliest of them is due and at
most every SWEEP_SECONDS.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tabserve.service.core.call_timing import CallTiming, TimedPrediction
from tabserve.service.core.errors import DeadlineExceededError, OverloadedError
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.runtime import Prediction

PredictFn = Callable[[npt.NDArray[Any]], Prediction]
SWEEP_SECONDS = 0.01
"""Deadlines are honoured, and watching starts, to within this."""
CallObserver = Callable[[npt.NDArray[Any], float, Prediction], None]
"""Told of each model call: the coalesced rows, the seconds it took, its prediction."""


@dataclass(frozen=True)
class BatchPolicy:
    """How a model's requests are coalesced."""

    max_rows: int = 256
    max_wait: float = 0.0
    concurrency: int = 1
    max_queue_rows: int = 4096
    watch_after: float = 0.25
    """Seconds a queued request waits before it starts watching for its client leaving."""

    @property
    def enabled(self) -> bool:
        """Batching with one row or one call in flight per batch is no batching."""
        return self.max_rows > 1


@dataclass(slots=True)
class _Pending:
    features: npt.NDArray[Any]
    rows: int
    future: asyncio.Future[Prediction]
    arrived: float
    started: bool = False
    deadline: float | None = None
    abandoned: Callable[[], Awaitable[Any]] | None = None
    left: Callable[[], bool] | None = None
    queued_at: float = 0.0
    watcher: asyncio.Future[Any] | None = None


class QueueEvents(Protocol):
    """What the batcher reports about its queue (metrics implement it)."""

    def queued(self, rows: int) -> None:
        """The queue now holds `rows` rows."""

    def rejected(self, reason: str) -> None:
        """A request was refused or dropped: overloaded, deadline or disconnected."""


class Batcher:
    """Queues validated batches for one model and runs them in coalesced calls."""

    def __init__(
        self,
        predict: PredictFn,
        pool: InferencePool,
        policy: BatchPolicy,
        observe: CallObserver | None = None,
        events: QueueEvents | None = None,
    ) -> None:
        self._predict = predict
        self._pool = pool
        self._policy = policy
        self._observe = observe
        self._events = events
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a call."""
        return self._queued_rows

    async def submit(
        self,
        features: npt.NDArray[Any],
        *,
        deadline: float | None = None,
        abandoned: Callable[[], Awaitable[Any]] | None = None,
        left: Callable[[], bool] | None = None,
    ) -> Prediction:
        """Predict `features` (one request's rows) as part of the next call.

        `deadline` (event-loop time) drops the request with DeadlineExceededError
        if no call has taken it by then; when the awaitable from `abandoned` finishes
        (the client went away) first, the request is dropped silently, and so it is
        when `left()` (a cheap check the server may offer) says so as a call is about
        to take it. A request that a call has taken always runs to the end.
        """
        rows = features.shape[0]
        limit = self._policy.max_queue_rows
        if self._queued_rows and self._queued_rows + rows > limit:
            self._report_rejected("overloaded")
            raise OverloadedError(
                f"the model's queue holds {self._queued_rows} rows and takes at most {limit}; "
                "retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(features, rows, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        self._queued_rows += rows
        self._dispatch()
        if not pending.started:
            pending.deadline = deadline
            pending.abandoned = abandoned
            pending.left = left
            pending.queued_at = loop.time()
            due = self._due(pending)
            if due is not None:
                self._schedule(due, loop)
            self._report_queue()
        try:
            return await pending.future
        finally:
            if pending.watcher is not None:
                pending.watcher.cancel()

    def _due(self, pending: _Pending) -> float | None:
        """When the sweep must next look at `pending`: its deadline or when it starts watching."""
        due = pending.deadline
        if pending.abandoned is not None and pending.watcher is None:
            watch_at = pending.queued_at + self._policy.watch_after
            if due is None or watch_at < due:
                due = watch_at
        return due

    def _schedule(self, due: float, loop: asyncio.AbstractEventLoop) -> None:
        if due < self._sweep_at:
            if self._sweep is not None:
                self._sweep.cancel()
            self._sweep = loop.call_at(due, self._on_sweep)
            self._sweep_at = due

    def _on_sweep(self) -> None:
        """Expire queued requests past their deadline; start watching those queued long enough."""
        self._sweep, self._sweep_at = None, math.inf
        loop = asyncio.get_running_loop()
        now = loop.time() + SWEEP_SECONDS / 10  # a timer may fire a hair early
        later = math.inf
        for pending in list(self._queue):
            if pending.started or pending.future.done():
                continue
            if pending.deadline is not None and pending.deadline <= now:
                self._expire(pending)
                continue
            watch_at = pending.queued_at + self._policy.watch_after
            if pending.abandoned is not None and pending.watcher is None and watch_at <= now:
                self._watch(pending)
            due = self._due(pending)
            if due is not None:
                later = min(later, due)
        if later < math.inf:
            self._schedule(max(later, now + SWEEP_SECONDS), loop)

    def _watch(self, pending: _Pending) -> None:
        """Queued for `watch_after`: from now on, drop the request if its client leaves."""
        assert pending.abandoned is not None
        pending.watcher = asyncio.ensure_future(pending.abandoned())
        pending.watcher.add_done_callback(lambda _: self._abandon(pending))

    def _expire(self, pending: _Pending) -> None:
        if not pending.started and not pending.future.done():
            self._report_rejected("deadline")
            pending.future.set_exception(
                DeadlineExceededError(
                    "no model call took the request before its deadline "
                    f"({self._queued_rows} rows were queued); its work was dropped"
                )
            )

    def _abandon(self, pending: _Pending) -> None:
        if not pending.started and not pending.future.done():
            self._report_rejected("disconnected")
            pending.future.cancel()

    def _report_rejected(self, reason: str) -> None:
        if self._events is not None:
            self._events.rejected(reason)

    def _report_queue(self) -> None:
        if self._events is not None:
            self._events.queued(self._queued_rows)

    def _dispatch(self) -> None:
        policy = self._policy
        while self._queue and self._in_flight < policy.concurrency:
            if self._in_flight == 0 and self._should_wait():
                return
            batch = self._take()
            if batch:
                self._in_flight += 1
                task = asyncio.ensure_future(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _should_wait(self) -> bool:
        """Hold an idle model's queue until it is full or its oldest request waited max_wait."""
        policy = self._policy
        if policy.max_wait <= 0 or self._queued_rows >= policy.max_rows:
            return False
        remaining = self._queue[0].arrived + policy.max_wait - time.monotonic()
        if remaining <= 0:
            return False
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._on_timer)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Pending]:
        """Pop queued requests up to max_rows (at least one); drop abandoned ones."""
        taken: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if taken and rows + head.rows > self._policy.max_rows:
                break
            self._queue.popleft()
            self._queued_rows -= head.rows
            if head.future.done():  # expired, abandoned or cancelled while queued
                continue
            if head.left is not None and head.left():
                self._abandon(head)  # its client left before any watcher noticed
                continue
            head.started = True
            taken.append(head)
            rows += head.rows
        if self._timer is not None and not self._queue:
            self._timer.cancel()
            self._timer = None
        self._report_queue()
        return taken

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                features = batch[0].features
            else:
                features = np.concatenate([p.features for p in batch])
            prediction, started, ended = await self._pool.run(_timed, self._predict, features)
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
        else:
            if self._observe is not None:
                self._observe(features, ended - started, prediction)
            self._deliver(batch, prediction, started, ended)
        finally:
            self._in_flight -= 1
            self._dispatch()

    def _deliver(
        self, batch: list[_Pending], prediction: Prediction, started: float, ended: float
    ) -> None:
        """Give each request of a call its rows of `prediction`.

        `started` and `ended` (monotonic clock) bound the call on its inference thread;
        `TimedBatcher` hands them to the requests, this one has no use for them.
        """
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(prediction)
            return
        start = 0
        for pending in batch:
            end = start + pending.rows
            if not pending.future.done():
                # Inline, not `_rows`: a call per request here showed in `bench.asgi_calls`.
                proba = prediction.proba[start:end] if prediction.proba is not None else None
                pending.future.set_result(Prediction(prediction.predict[start:end], proba))
            start = end


class TimedBatcher(Batcher):
    """A batcher whose answers say where each request's time went (`TimedPrediction`).

    Chosen for every model when tracing is on (`DataPlane(timed=True)`), so a plain
    `Batcher` keeps the hot path exactly as it was: nothing here runs when tracing is off.
    """

    def _deliver(
        self, batch: list[_Pending], prediction: Prediction, started: float, ended: float
    ) -> None:
        rows = sum(pending.rows for pending in batch)
        start = 0
        for pending in batch:
            end = start + pending.rows
            if not pending.future.done():
                part = prediction if len(batch) == 1 else _rows(prediction, start, end)
                timing = CallTiming(pending.arrived, started, ended, rows, len(batch))
                pending.future.set_result(TimedPrediction(part.predict, part.proba, timing=timing))
            start = end


def _timed(predict: PredictFn, features: npt.NDArray[Any]) -> tuple[Prediction, float, float]:
    """`predict(features)` on an inference thread, with when it started and ended."""
    started = time.monotonic()
    prediction = predict(features)
    return prediction, started, time.monotonic()


def _rows(prediction: Prediction, start: int, end: int) -> Prediction:
    """One request's rows of a coalesced call's prediction."""
    proba = prediction.proba[start:end] if prediction.proba is not None else None
    return Prediction(prediction.predict[start:end], proba)
