"""Real processes: several workers sharing exact metrics, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

BODY = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def summed(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` in an exposition whose labels include `labels`."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def sample(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, scraped now."""
    return summed(httpx.get(url + "/metrics", timeout=10).text, name, **labels)


async def send(url: str, count: int, connections: int) -> list[int]:
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(f"{url}/v2/models/iris/infer", json=BODY) for _ in range(count))
        )
    return [r.status_code for r in responses]


def test_two_workers_count_every_request_exactly_once(
    launch: Callable[..., Any], models_dir: Path
) -> None:
    server = launch(models_dir, "--workers", "2")
    statuses = asyncio.run(send(server.url, 300, 32))
    assert statuses == [200] * 300
    route = {"route": "/v2/models/{model}/infer", "status": "200"}
    # every scrape lands on one worker or the other; each must see the total of both
    for _ in range(6):
        assert sample(server.url, "tabserve_http_requests_total", **route) == 300
        assert sample(server.url, "tabserve_inference_rows_total", model="iris", version="2") == 300
    info = sample(server.url, "tabserve_model_info", model="iris", version="2")
    assert info == 1.0
    assert server.stop() == 0


@pytest.fixture(scope="module")
def slow_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris forest big enough that 64 unbatched requests take a while to serve."""
    root = tmp_path_factory.mktemp("slow-models")
    train(
        TrainRequest(
            load_bundled("iris"), "random_forest", root, "iris", params={"n_estimators": 300}
        )
    )
    return root


async def held_requests(url: str, count: int, release: asyncio.Event) -> list[int]:
    """`count` requests whose bodies' second halves wait for `release`.

    The server has accepted each one (the app is running it, so it is in flight) but
    cannot answer before the rest of its body arrives: the load is in flight for as long
    as the test needs, however fast the server or slow the machine.
    """
    body = orjson.dumps(BODY)
    head, tail = body[: len(body) // 2], body[len(body) // 2 :]

    async def halves() -> AsyncIterator[bytes]:
        yield head
        await release.wait()
        yield tail

    headers = {"content-type": "application/json", "content-length": str(len(body))}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{url}/v2/models/iris/infer", content=halves(), headers=headers)
                for _ in range(count)
            )
        )
    return [r.status_code for r in responses]


async def in_flight(url: str) -> float:
    """The in-flight gauge (summed over workers), scraped without blocking the loop."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url + "/metrics")).text
    return summed(text, "tabserve_http_requests_in_flight")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_during_load_answers_every_accepted_request_then_exits_0(
    launch: Callable[..., Any], slow_models: Path, workers: str
) -> None:
    # scikit-learn, not the compiled engine: the point is a load that takes a while
    env = {"TABSERVE_BATCH_MAX_ROWS": "1", "TABSERVE_ENGINE": "sklearn"}
    server = launch(slow_models, "--workers", workers, env=env)

    async def scenario() -> list[int]:
        release = asyncio.Event()
        load = asyncio.ensure_future(held_requests(server.url, 64, release))
        deadline = time.monotonic() + 30
        # the scrape is a request too: 64 held ones plus it
        while await in_flight(server.url) < 65:
            assert time.monotonic() < deadline, "the server never had all 64 in flight"
            await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        # bodies complete only once the server drains (readiness turns false), so the
        # 64 predictions (unbatched, 300 trees each) all run during the drain
        async with httpx.AsyncClient(timeout=10) as client:
            while (await client.get(server.url + "/v2/health/ready")).status_code == 200:
                assert time.monotonic() < deadline, "the server never started draining"
                await asyncio.sleep(0.05)
        release.set()
        return await load

    statuses = asyncio.run(scenario())
    assert statuses == [200] * 64
    assert server.process.wait(timeout=60) == 0


def test_readiness_turns_false_while_draining(client: TestClient) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    client.app.state.tabserve.draining = True  # type: ignore[attr-defined]
    assert client.get("/v2/health/ready").status_code == 400
    assert client.get("/v2/health/live").status_code == 200
