"""Predictions run on worker threads: a busy model never stalls the probes."""

from __future__ import annotations

import threading
from typing import Any

import numpy.typing as npt
from fastapi.testclient import TestClient

from service.core.runtime import Prediction, Runtime
from training.manifest import Manifest


class BlockedRuntime:
    """Wraps a runtime; `predict` waits until the test releases it."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.entered = threading.Event()
        self.release = threading.Event()

    def load(self) -> Manifest:
        return self.inner.load()

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        self.entered.set()
        self.release.wait(timeout=30)
        return self.inner.predict(features)

    def unload(self) -> None:
        self.inner.unload()


def test_liveness_answers_while_a_prediction_is_running(client: TestClient) -> None:
    model = client.app.state.tabserve.registry.get("iris")  # type: ignore[attr-defined]
    blocked = BlockedRuntime(model.runtime)
    model.runtime = blocked
    answers: list[int] = []

    def predict() -> None:
        response = client.post(
            "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
        answers.append(response.status_code)

    worker = threading.Thread(target=predict)
    worker.start()
    try:
        assert blocked.entered.wait(timeout=30), "the prediction never started"
        live = client.get("/v2/health/live")
        ready = client.get("/v2/health/ready")
        # the prediction is still held: the probes were answered beside it, not after it
        assert not blocked.release.is_set()
        assert worker.is_alive()
        assert (live.status_code, ready.status_code) == (200, 200)
    finally:
        blocked.release.set()
        worker.join(timeout=30)
    assert answers == [200]
