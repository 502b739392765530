"""Adaptive batching: coalescing, order, isolation, max wait, cancellation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tabserve.service.core.batching import Batcher, BatchPolicy
from tabserve.service.core.errors import DeadlineExceededError, OverloadedError
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.runtime import Prediction

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingModel:
    """Label = first feature; proba = [x, 1 - x]; records each call's row count."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on: float | None = None

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.calls.append(features.shape[0])
        if self.fail_on is not None and (features[:, 0] == self.fail_on).any():
            raise ValueError("model exploded")
        first = features[:, 0].astype(float)
        return Prediction(first.copy(), np.stack([first, 1 - first], axis=1))


def rows(*values: float) -> npt.NDArray[np.float64]:
    return np.array([[v, 0.0] for v in values])


async def until(condition: Any) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


async def occupy(
    batcher: Batcher, model: RecordingModel, value: float
) -> asyncio.Future[Prediction]:
    """Start a one-row call that holds the model until `model.gate` is set."""
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(rows(value)))
    await until(model.entered.is_set)
    return running


async def test_idle_model_answers_a_lone_request_as_a_batch_of_one(pool: InferencePool) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64))
    result = await batcher.submit(rows(0.25))
    assert model.calls == [1]
    np.testing.assert_array_equal(result.predict, [0.25])
    np.testing.assert_array_equal(result.proba, [[0.25, 0.75]])


async def test_requests_queued_while_busy_share_one_call_in_order(pool: InferencePool) -> None:
    model = RecordingModel()
    observed: list[int] = []
    batcher = Batcher(
        model.predict, pool, BatchPolicy(max_rows=64), lambda x, _s, _p: observed.append(x.shape[0])
    )
    first = await occupy(batcher, model, 0.0)
    later = [
        asyncio.ensure_future(batcher.submit(rows(i / 10, i / 10 + 0.01))) for i in range(1, 6)
    ]
    await asyncio.sleep(0.01)
    assert batcher.queued_rows == 10
    model.gate.set()
    results = await asyncio.gather(first, *later)
    assert model.calls == [1, 10]
    assert observed == [1, 10]
    for i, result in enumerate(results[1:], start=1):
        np.testing.assert_allclose(result.predict, [i / 10, i / 10 + 0.01])
        np.testing.assert_allclose(result.proba[:, 1], [1 - i / 10, 1 - i / 10 - 0.01])


async def test_max_rows_caps_each_call(pool: InferencePool) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=4))
    first = await occupy(batcher, model, 0.0)
    later = [asyncio.ensure_future(batcher.submit(rows(0.5, 0.5, 0.5))) for _ in range(3)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *later)
    # 3-row requests: one fits under 4 rows per call, so each goes alone
    assert model.calls == [1, 3, 3, 3]


async def test_a_failing_call_fails_only_its_own_batch(pool: InferencePool) -> None:
    model = RecordingModel()
    model.fail_on = 0.9
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64))
    first = await occupy(batcher, model, 0.1)
    doomed = asyncio.ensure_future(batcher.submit(rows(0.9)))
    await asyncio.sleep(0.01)
    model.gate.set()
    assert (await first).predict.tolist() == [0.1]
    with pytest.raises(ValueError, match="model exploded"):
        await doomed
    # the batcher keeps serving after a failure
    assert (await batcher.submit(rows(0.3))).predict.tolist() == [0.3]


async def test_max_wait_gathers_requests_into_one_call(pool: InferencePool) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=3, max_wait=30.0))
    first = asyncio.ensure_future(batcher.submit(rows(0.1)))
    await asyncio.sleep(0.01)
    assert model.calls == []  # held: the model is idle and the batch is not full
    second = asyncio.ensure_future(batcher.submit(rows(0.2, 0.3)))
    results = await asyncio.gather(first, second)  # full at 3 rows: sent without waiting 30 s
    assert model.calls == [3]
    assert results[1].predict.tolist() == [0.2, 0.3]


async def test_max_wait_sends_a_lone_request_once_it_expires(pool: InferencePool) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64, max_wait=0.02))
    result = await batcher.submit(rows(0.4))
    assert model.calls == [1]
    assert result.predict.tolist() == [0.4]


async def test_a_cancelled_request_is_dropped_before_its_batch_is_built(
    pool: InferencePool,
) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64))
    first = await occupy(batcher, model, 0.0)
    gone = asyncio.ensure_future(batcher.submit(rows(0.5, 0.5, 0.5)))
    kept = asyncio.ensure_future(batcher.submit(rows(0.7)))
    await asyncio.sleep(0.01)
    gone.cancel()
    model.gate.set()
    await first
    assert (await kept).predict.tolist() == [0.7]
    assert model.calls == [1, 1]


class Events:
    """Records what the batcher reports."""

    def __init__(self) -> None:
        self.depths: list[int] = []
        self.rejections: list[str] = []

    def queued(self, rows: int) -> None:
        self.depths.append(rows)

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)


async def test_a_full_queue_refuses_at_once_and_the_queue_stays_bounded(
    pool: InferencePool,
) -> None:
    model = RecordingModel()
    events = Events()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64, max_queue_rows=4), None, events)
    first = await occupy(batcher, model, 0.0)
    queued = [asyncio.ensure_future(batcher.submit(rows(0.1, 0.2))) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(OverloadedError, match="holds 4 rows and takes at most 4"):
        await batcher.submit(rows(0.3))
    assert events.rejections == ["overloaded"]
    model.gate.set()
    await asyncio.gather(first, *queued)
    assert max(events.depths) == 4
    assert model.calls == [1, 4]


async def test_a_started_request_finishes_even_past_its_deadline(pool: InferencePool) -> None:
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64))
    model.gate.clear()
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(batcher.submit(rows(0.6), deadline=loop.time() + 0.01))
    await until(model.entered.is_set)
    await asyncio.sleep(0.03)
    model.gate.set()
    assert (await running).predict.tolist() == [0.6]


async def test_a_client_that_leaves_while_queued_has_its_work_dropped(pool: InferencePool) -> None:
    model = RecordingModel()
    events = Events()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64), None, events)
    first = await occupy(batcher, model, 0.0)
    gone = asyncio.Event()
    leaving = asyncio.ensure_future(batcher.submit(rows(0.8, 0.8), abandoned=gone.wait))
    staying = asyncio.ensure_future(batcher.submit(rows(0.9), abandoned=asyncio.Event().wait))
    await asyncio.sleep(0.01)
    gone.set()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    model.gate.set()
    await first
    assert (await staying).predict.tolist() == [0.9]
    assert model.calls == [1, 1]
    assert events.rejections == ["disconnected"]


async def test_a_client_that_left_is_skipped_when_a_call_takes_the_queue(
    pool: InferencePool,
) -> None:
    """With the server's free `left` check, leaving needs no watcher to be noticed."""
    model = RecordingModel()
    events = Events()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64), None, events)
    first = await occupy(batcher, model, 0.0)
    gone = {"leaving": False}
    leaving = asyncio.ensure_future(
        batcher.submit(rows(0.8, 0.8), abandoned=asyncio.Event().wait, left=lambda: gone["leaving"])
    )
    staying = asyncio.ensure_future(batcher.submit(rows(0.9), left=lambda: False))
    await until(lambda: batcher.queued_rows == 3)
    gone["leaving"] = True  # long before any watcher would start (watch_after 0.25 s)
    model.gate.set()
    await first
    assert (await staying).predict.tolist() == [0.9]
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert model.calls == [1, 1]
    assert events.rejections == ["disconnected"]


async def test_a_request_taken_quickly_never_watches_its_client(pool: InferencePool) -> None:
    """Watching costs a task per request, so it starts only after `watch_after` in the queue."""
    model = RecordingModel()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64, watch_after=0.05))
    watched: list[str] = []

    async def watch(label: str) -> None:
        watched.append(label)
        await asyncio.Event().wait()

    first = await occupy(batcher, model, 0.0)
    quick = asyncio.ensure_future(batcher.submit(rows(0.1), abandoned=lambda: watch("quick")))
    await asyncio.sleep(0.01)
    model.gate.set()
    assert (await quick).predict.tolist() == [0.1]
    await first
    assert watched == []

    first = await occupy(batcher, model, 0.0)
    slow = asyncio.ensure_future(batcher.submit(rows(0.2), abandoned=lambda: watch("slow")))
    await until(lambda: watched == ["slow"])
    model.gate.set()
    assert (await slow).predict.tolist() == [0.2]
    await first


@pytest.mark.parametrize(
    ("watch_after", "timeout", "watched"),
    [(0.25, 0.01, False), (5.0, 0.01, True), (0.005, 0.05, True)],
    ids=["no client to watch", "deadline before watching", "deadline while watching"],
)
async def test_a_request_whose_deadline_passes_in_the_queue_is_dropped(
    pool: InferencePool, watch_after: float, timeout: float, watched: bool
) -> None:
    model = RecordingModel()
    events = Events()
    policy = BatchPolicy(max_rows=64, watch_after=watch_after)
    batcher = Batcher(model.predict, pool, policy, None, events)
    first = await occupy(batcher, model, 0.0)
    loop = asyncio.get_running_loop()
    abandoned = asyncio.Event().wait if watched else None
    late = asyncio.ensure_future(
        batcher.submit(rows(0.5), deadline=loop.time() + timeout, abandoned=abandoned)
    )
    with pytest.raises(DeadlineExceededError, match="its work was dropped"):
        await late
    model.gate.set()
    await first
    assert model.calls == [1]  # the expired request never reached the model
    assert events.rejections == ["deadline"]


async def test_each_queued_request_expires_at_its_own_deadline(pool: InferencePool) -> None:
    """One timer serves the whole queue: a later, shorter deadline still comes first."""
    model = RecordingModel()
    events = Events()
    batcher = Batcher(model.predict, pool, BatchPolicy(max_rows=64), None, events)
    first = await occupy(batcher, model, 0.0)
    loop = asyncio.get_running_loop()
    patient = asyncio.ensure_future(batcher.submit(rows(0.1), deadline=loop.time() + 0.4))
    hasty = asyncio.ensure_future(batcher.submit(rows(0.2), deadline=loop.time() + 0.03))
    with pytest.raises(DeadlineExceededError):
        await hasty
    assert not patient.done()
    with pytest.raises(DeadlineExceededError):
        await patient
    model.gate.set()
    await first
    assert events.rejections == ["deadline", "deadline"]
    assert model.calls == [1]
