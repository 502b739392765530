"""A bounded pool of threads that runs model calls off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class InferencePool:
    """`await pool.run(fn, *args)` runs `fn` on one of `threads` worker threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Create the threads' executor (the app's lifespan calls this)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix="inference"
            )

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args)` on the pool and wait for it without blocking the loop."""
        if kwargs:
            raise TypeError("InferencePool.run takes positional arguments only")
        if self._executor is None:
            raise RuntimeError("the inference pool is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Finish running calls and stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
