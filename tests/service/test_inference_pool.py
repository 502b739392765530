"""The inference pool: calls run on its threads, outcomes come back to the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tabserve.service.core.inference import InferencePool

pytestmark = pytest.mark.anyio


async def test_a_call_runs_on_a_pool_thread_and_returns_its_result(pool: InferencePool) -> None:
    def where(x: int) -> tuple[int, str]:
        return x * 2, threading.current_thread().name

    value, thread = await pool.run(where, 21)
    assert value == 42
    assert thread.startswith("inference_")
    assert thread != threading.current_thread().name


async def test_an_exception_reaches_the_caller_as_raised(pool: InferencePool) -> None:
    def explode() -> None:
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        await pool.run(explode)


async def test_no_more_calls_run_at_once_than_the_pool_has_threads(pool: InferencePool) -> None:
    lock = threading.Lock()
    running, most = 0, 0
    release = threading.Event()

    def hold() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1

    calls = [asyncio.ensure_future(pool.run(hold)) for _ in range(6)]
    while True:  # both threads busy: the other four wait in the queue
        with lock:
            if running == 2:
                break
        await asyncio.sleep(0.001)
    release.set()
    await asyncio.gather(*calls)
    assert most == 2


async def test_a_call_cancelled_before_a_thread_takes_it_never_runs(pool: InferencePool) -> None:
    release = threading.Event()
    ran: list[int] = []
    busy = [asyncio.ensure_future(pool.run(release.wait, 10)) for _ in range(2)]
    waiting = asyncio.ensure_future(pool.run(ran.append, 1))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await asyncio.gather(*busy)
    assert await pool.run(ran.append, 2) is None
    assert ran == [2]


async def test_close_finishes_the_calls_already_given() -> None:
    pool = InferencePool(1)
    pool.start()
    done: list[int] = []
    release = threading.Event()
    first = asyncio.ensure_future(pool.run(release.wait, 10))
    queued = asyncio.ensure_future(pool.run(done.append, 1))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.to_thread(pool.close)
    assert done == [1]
    assert await first is True
    await queued


async def test_a_pool_not_started_or_closed_refuses_calls() -> None:
    pool = InferencePool(1)
    with pytest.raises(RuntimeError, match="not started"):
        await pool.run(int)
    pool.start()
    assert await pool.run(int, "7") == 7
    pool.close()
    with pytest.raises(RuntimeError, match="not started"):
        await pool.run(int)
