"""Helpers the service tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient


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
    model = client.app.state.tabserve.registry.get(name)  # type: ignore[attr-defined]
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
