"""`TABSERVE_BATCH_MAX_ROWS_BY_MODEL`: one model's calls take fewer rows than the rest."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tabserve.service.settings import Settings
from tests.service.support import queue_behind_held_call

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    return Settings(
        models_dir=models_dir,
        inference_threads=2,
        max_rows=100,
        batch_max_rows=256,
        batch_max_rows_by_model={"iris": 3},
    )


def infer(client: TestClient) -> None:
    body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": IRIS}]}
    assert client.post("/v2/models/iris/infer", json=body).status_code == 200


def test_the_model_reports_its_own_limit(client: TestClient) -> None:
    iris = client.get("/models/iris").json()["versions"]
    diabetes = client.get("/models/diabetes").json()["versions"]
    assert {v["batch_max_rows"] for v in iris} == {3}
    assert {v["batch_max_rows"] for v in diabetes} == {256}


def test_queued_requests_are_not_coalesced_past_the_models_limit(
    client: TestClient, hold: Any
) -> None:
    requests = [partial(infer, client) for _ in range(5)]
    # four requests (12 rows) wait behind the held call
    queue_behind_held_call(client, hold("iris"), "iris", requests, queued_rows=12)
    text = client.get("/metrics").text
    # Five calls of three rows: with the global limit the four would share one call.
    assert 'tabserve_inference_batch_rows_count{model="iris",version="2"} 5.0' in text
    assert 'tabserve_inference_batch_rows_sum{model="iris",version="2"} 15.0' in text


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(batch_max_rows_by_model={"iris": 0})


def test_the_environment_gives_the_map_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABSERVE_BATCH_MAX_ROWS_BY_MODEL", '{"forest": 64, "iris": 1}')
    assert Settings().batching.max_rows_by_model == {"forest": 64, "iris": 1}
