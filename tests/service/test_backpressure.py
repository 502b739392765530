"""Overload, deadlines and refusals through the app and a real server process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def test_deadline_passes_while_queued_gives_504(client: TestClient, hold: Any) -> None:
    held = hold("iris")
    first: list[int] = []
    worker = threading.Thread(
        target=lambda: first.append(client.post("/v1/models/iris:predict", json=ROW).status_code)
    )
    worker.start()
    try:
        assert held.entered.wait(timeout=30)
        late = client.post(
            "/v1/models/iris:predict", json=ROW, headers={"X-Request-Timeout-Ms": "20"}
        )
    finally:
        held.release.set()
        worker.join(timeout=30)
    assert late.status_code == 504
    assert late.json()["code"] == "deadline_exceeded"
    assert first == [200]
    metrics = client.get("/metrics").text
    assert (
        'tabserve_requests_rejected_total{model="iris",reason="deadline",version="2"} 1.0'
        in metrics
    )


def test_a_malformed_timeout_header_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/models/iris:predict", json=ROW, headers={"X-Request-Timeout-Ms": "soon"}
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "X-Request-Timeout-Ms"


def rejected_total(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tabserve_requests_rejected_total" and s.labels["reason"] == "overloaded"
    )


async def flood(url: str, requests: int, connections: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        body = {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
            ]
        }
        return await asyncio.gather(
            *(
                client.post(f"{url}/v2/models/iris/versions/1/infer", json=body)
                for _ in range(requests)
            )
        )


def test_overload_gets_200_or_503_with_retry_after_and_the_queue_stays_bounded(
    launch: Callable[..., Any], models_dir: Path
) -> None:
    env = {"TABSERVE_QUEUE_MAX_ROWS": "2", "TABSERVE_BATCH_MAX_ROWS": "1"}
    server = launch(models_dir, env=env)
    responses = asyncio.run(flood(server.url, 400, 64))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "64 clients against a queue of 2 rows should see refusals"
    assert statuses.count(200) > 0
    for response in refused:
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "overloaded"
    assert rejected_total(server.url) == len(refused)
