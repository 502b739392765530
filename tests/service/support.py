"""Helpers the service tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy.typing as npt
from fastapi.testclient import TestClient

from tabserve.service.core.registry import ModelVersion
from tabserve.service.core.runtime import Prediction, Runtime
from tabserve.service.state import AppState

R = TypeVar("R", bound=Runtime)


def serve_with(
    state: AppState, name: str, wrap: Callable[[Runtime], R], version: int | None = None
) -> R:
    """Serve `name` (its default version, or `version`) with `wrap(runtime)` from now on.

    A served model never changes, so this serves a new one around the wrapped runtime,
    as a reload would, and returns the wrapper.
    """
    entry = state.registry.get(name, version)
    old = state.registry.ready(name, entry.version)
    runtime = wrap(old.runtime)
    served = state.dataplane.serve(old.path, old.manifest, old.schema, runtime, old.batch_rows)
    state.registry.add(ModelVersion.of(served, entry.load_seconds or 0.0))
    return runtime


class FailingRuntime:
    """A runtime whose every prediction raises `error`: a bug in the model, not the
    client's fault (`serve_with(state, name, FailingRuntime)`)."""

    error: Exception = ZeroDivisionError("the model divided by zero")

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.engine = inner.engine

    def load(self) -> Any:
        return self.inner.load()

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        raise self.error

    def unload(self) -> None:
        self.inner.unload()


def queue_behind_held_call(
    client: TestClient,
    held: Any,
    name: str,
    requests: list[Callable[[], None]],
    queued_rows: int,
) -> None:
    """Send `requests[0]`, hold its model call, queue the rest behind it, then release.

    `held` comes from the `hold` fixture.
    Returns once every request is answered; asserts that exactly `queued_rows`
    rows waited behind the held call, so the test knows what was coalescible.
    """
    model = client.app.state.tabserve.registry.ready(name)  # type: ignore[attr-defined]
    threads = [threading.Thread(target=request) for request in requests]
    threads[0].start()
    try:
        assert held.entered.wait(timeout=30)
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 30
        while model.batcher.queued_rows < queued_rows and time.monotonic() < deadline:
            time.sleep(0.01)
        assert model.batcher.queued_rows == queued_rows
    finally:
        held.release.set()
        for thread in threads:
            thread.join(timeout=30)
