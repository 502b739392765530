"""Adaptive batching: coalescing, order, isolation, max wait, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from service.core.batching import Batcher, BatchPolicy
from service.core.inference import InferencePool
from service.core.runtime import Prediction

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


@pytest.fixture
async def pool() -> AsyncIterator[InferencePool]:
    running = InferencePool(2)
    running.start()
    yield running
    running.close()


def rows(*values: float) -> npt.NDArray[np.float64]:
    return np.array([[v, 0.0] for v in values])


async def until(condition: Any) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


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
        model.predict, pool, BatchPolicy(max_rows=64), lambda n, _s, _p: observed.append(n)
    )
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0.0)))
    await until(model.entered.is_set)
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
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0.0)))
    await until(model.entered.is_set)
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
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0.1)))
    await until(model.entered.is_set)
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
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0.0)))
    await until(model.entered.is_set)
    gone = asyncio.ensure_future(batcher.submit(rows(0.5, 0.5, 0.5)))
    kept = asyncio.ensure_future(batcher.submit(rows(0.7)))
    await asyncio.sleep(0.01)
    gone.cancel()
    model.gate.set()
    await first
    assert (await kept).predict.tolist() == [0.7]
    assert model.calls == [1, 1]
