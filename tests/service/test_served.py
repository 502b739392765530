"""Served models: complete once ready, never changed, held by requests across swaps."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tabserve.service.core.errors import ModelNotReadyError
from tabserve.service.core.registry import ModelState, ModelVersion
from tabserve.service.core.served import ServedModel
from tests.service.conftest import HeldRuntime

V2_BODY = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def test_a_ready_version_is_served_complete_before_any_request(client: TestClient) -> None:
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    served = state.registry.ready("iris", 1)
    assert isinstance(served, ServedModel)
    assert (served.name, served.version) == ("iris", 1)
    assert served.manifest.feature_names == served.schema.names
    assert served.batcher.queued_rows == 0  # built at load, not at the first request
    assert served.batch_rows == state.settings.batching.max_rows
    assert state.registry.get("iris", 1).served is served
    with pytest.raises(dataclasses.FrozenInstanceError):
        served.batcher = None  # type: ignore[misc]


def test_a_failed_version_is_listed_with_its_reason_but_never_served(
    client: TestClient, tmp_path: Path
) -> None:
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    failed = ModelVersion.failed("iris", 1, tmp_path, "sklearn", "the disk went away")
    state.registry.add(failed)
    assert failed.state is ModelState.FAILED
    with pytest.raises(ModelNotReadyError, match="version 1 is failed: the disk went away"):
        state.registry.ready("iris", 1)
    listed = client.get("/models/iris").json()["versions"][0]
    assert listed == {
        "version": 1,
        "state": "failed",
        "error": "the disk went away",
        "engine": "sklearn",
        "batch_max_rows": state.settings.batching.max_rows,
        "task": None,
        "estimator": None,
        "created_at": None,
        "sha256": None,
        "metrics": {},
        "classes": None,
        "target": None,
        "features": [],
    }


def test_a_request_in_its_model_call_finishes_on_its_served_model_when_unloaded(
    client: TestClient, hold: Callable[[str], HeldRuntime]
) -> None:
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    held = hold("iris")
    answers: list[Any] = []
    thread = threading.Thread(
        target=lambda: answers.append(client.post("/v2/models/iris/versions/2/infer", json=V2_BODY))
    )
    thread.start()
    try:
        assert held.entered.wait(timeout=30)
        client.portal.call(state.repository.unload, "iris", 2)
    finally:
        held.release.set()
        thread.join(timeout=30)
    assert answers[0].status_code == 200
    assert answers[0].json()["model_version"] == "2"
    gone = client.post("/v2/models/iris/versions/2/infer", json=V2_BODY)
    assert gone.status_code == 404
    assert gone.json()["code"] == "model_not_found"
