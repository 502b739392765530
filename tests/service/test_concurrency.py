"""Predictions run on worker threads: a busy model never stalls the probes."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient


def test_liveness_answers_while_a_prediction_is_running(client: TestClient, hold: Any) -> None:
    blocked = hold("iris")
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
