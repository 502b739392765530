"""A bounded pool of threads that runs model calls off the event loop.

Not `loop.run_in_executor` on a `ThreadPoolExecutor`: that hand-off runs some
thirty Python-level calls on the event loop per model call (the executor's future,
condition and locks, `wrap_future` chaining one future's state into another, the
check that the callable is not a coroutine function), which for a one-row request
was more than the whole HTTP exchange (`docs/benchmarks.md`, "The inference
hand-off"). Here a call costs the loop one queue put and, when it returns, one
callback scheduled by the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class InferencePool:
    """`await pool.run(fn, *args)` runs `fn` on one of `threads` worker threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (the app's lifespan calls this, after any fork)."""
        if self._workers:
            return
        self._workers = [
            threading.Thread(target=_work, args=(self._calls,), name=f"inference_{i}", daemon=True)
            for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args)` on the pool and wait for it without blocking the loop.

        If the caller is cancelled before a thread takes the call, the call is
        skipped; once it runs, its result is dropped.
        """
        if kwargs:
            raise TypeError("InferencePool.run takes positional arguments only")
        if not self._workers:
            raise RuntimeError("the inference pool is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return await future

    def close(self) -> None:
        """Finish the calls already given (running and queued), then stop the threads."""
        workers, self._workers = self._workers, []
        for _ in workers:
            self._calls.put(None)
        for worker in workers:
            worker.join()


def _work(calls: SimpleQueue[_Call | None]) -> None:
    """A worker thread: run calls until told to stop, handing each outcome to its loop."""
    while (call := calls.get()) is not None:
        loop, future, fn, args = call
        del call
        if future.cancelled():  # a benign race: at worst a call nobody awaits runs
            continue
        try:
            result = fn(*args)
        except BaseException as exc:  # as a ThreadPoolExecutor would: the caller sees it
            _hand_back(loop, future, None, exc)
        else:
            _hand_back(loop, future, result, None)
        del loop, future, fn, args


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the loop: the call's outcome, unless its caller stopped waiting."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
