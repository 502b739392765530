"""The timed batcher (tracing on): each request gets its own rows, and when its call ran."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tabserve.service.core.batching import BatchPolicy, TimedBatcher
from tabserve.service.core.call_timing import TimedPrediction
from tabserve.service.core.inference import InferencePool
from tests.service.test_batching import RecordingModel, occupy, rows

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_coalesced_requests_get_their_own_rows_and_their_shared_call(
    pool: InferencePool,
) -> None:
    model = RecordingModel()
    batcher = TimedBatcher(model.predict, pool, BatchPolicy(max_rows=64))
    before = time.monotonic()
    first = await occupy(batcher, model, 0.0)
    later = [
        asyncio.ensure_future(batcher.submit(rows(0.1, 0.2))),
        asyncio.ensure_future(batcher.submit(rows(0.3))),
    ]
    await asyncio.sleep(0.01)
    model.gate.set()
    alone, pair, single = await asyncio.gather(first, *later)
    assert model.calls == [1, 3]
    for result in (alone, pair, single):
        assert isinstance(result, TimedPrediction)
    np.testing.assert_array_equal(pair.predict, [0.1, 0.2])
    np.testing.assert_array_equal(pair.proba, [[0.1, 0.9], [0.2, 0.8]])
    np.testing.assert_array_equal(single.predict, [0.3])
    assert (alone.timing.rows, alone.timing.requests) == (1, 1)
    assert (pair.timing.rows, pair.timing.requests) == (3, 2)
    assert pair.timing.started == single.timing.started
    assert pair.timing.ended == single.timing.ended
    assert before <= alone.timing.queued <= alone.timing.started <= alone.timing.ended
    # The pair waited while the first call ran, and its call began after that one ended.
    assert pair.timing.queued < alone.timing.ended <= pair.timing.started < pair.timing.ended
