"""Shadow rollouts: the champion answers, the challenger's copies are compared and bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled
from tests.service.conftest import HeldRuntime
from tests.service.rollout_support import (
    AUTH,
    FEATURES,
    IRIS,
    TOKEN,
    build_models,
    infer_version,
    put_rollout,
    state_of,
    value,
)
from tests.service.support import FailingRuntime, serve_with


@pytest.fixture(scope="module")
def rollout_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models(models_dir, tmp_path_factory.mktemp("shadow-models"))


def serve(models: Path, **settings: Any) -> TestClient:
    every = {"models_dir": models, "admin_token": TOKEN, "inference_threads": 2, **settings}
    return TestClient(create_app(Settings(**every)))


@pytest.fixture
def admin(rollout_models: Path) -> Iterator[TestClient]:
    with serve(rollout_models) as client:
        yield client


def settle(client: TestClient) -> None:
    """Wait until every queued shadow copy has been predicted and compared."""
    assert client.portal is not None
    client.portal.call(state_of(client).rollouts.shadow.join)


def predicted(client: TestClient, model: str, version: int, rows: list[list[float]]) -> list[Any]:
    """A version's predictions of `rows` (V2 infer naming it)."""
    body = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP64",
                "shape": [len(rows), len(rows[0])],
                "data": [v for row in rows for v in row],
            }
        ]
    }
    answer = client.post(f"/v2/models/{model}/versions/{version}/infer", json=body)
    assert answer.status_code == 200, answer.text
    [output] = [o for o in answer.json()["outputs"] if o["name"] == "predict"]
    data: list[Any] = output["data"]
    return data


def test_the_champion_answers_and_the_shadow_agreement_is_counted(admin: TestClient) -> None:
    pairs = zip(predicted(admin, "iris", 1, IRIS), predicted(admin, "iris", 2, IRIS), strict=True)
    agree = sum(a == b for a, b in pairs)
    assert put_rollout(admin, "iris", challenger=1, mode="shadow").status_code == 200
    for _ in range(5):
        assert infer_version(admin, "iris", IRIS) == "2"  # the champion answers every one
    settle(admin)
    labels = {"model": "iris", "version": "1"}
    assert value(admin, "tabserve_rollout_shadow_requests_total", outcome="compared", **labels) == 5
    assert (
        value(admin, "tabserve_rollout_shadow_rows_total", outcome="agree", **labels) == 5 * agree
    )
    assert value(admin, "tabserve_rollout_shadow_rows_total", outcome="disagree", **labels) == 5 * (
        4 - agree
    )
    assert value(admin, "tabserve_rollout_shadow_duration_seconds_count", **labels) == 5
    champion = {"model": "iris", "version": "2", "arm": "champion"}
    assert value(admin, "tabserve_rollout_requests_total", **champion) == 5
    # a request naming the champion's version is the champion's traffic too: copied
    predicted(admin, "iris", 2, IRIS)
    settle(admin)
    assert value(admin, "tabserve_rollout_shadow_requests_total", outcome="compared", **labels) == 6


def test_a_shadow_regressor_records_the_absolute_difference(admin: TestClient) -> None:
    rows = np.asarray(load_bundled("diabetes").features[:6], dtype=float).tolist()
    gaps = np.abs(
        np.subtract(predicted(admin, "diabetes", 1, rows), predicted(admin, "diabetes", 2, rows))
    )
    put_rollout(admin, "diabetes", challenger=1, mode="shadow")
    assert infer_version(admin, "diabetes", rows) == "2"
    settle(admin)
    labels = {"model": "diabetes", "version": "1"}
    assert value(admin, "tabserve_rollout_shadow_difference_count", **labels) == 6
    assert value(admin, "tabserve_rollout_shadow_difference_sum", **labels) == pytest.approx(
        gaps.sum()
    )
    assert gaps.sum() > 0


def test_a_full_shadow_queue_drops_and_counts_and_the_champion_answers(
    rollout_models: Path,
) -> None:
    with serve(rollout_models, rollout_shadow_queue=1, rollout_shadow_concurrency=1) as admin:
        held = serve_with(state_of(admin), "iris", HeldRuntime, version=1)
        try:
            put_rollout(admin, "iris", challenger=1, mode="shadow")
            assert infer_version(admin, "iris", IRIS) == "2"
            assert held.entered.wait(timeout=30)  # the first copy is in the challenger's call
            # the challenger is stuck: one copy waits in the queue, the next four are dropped,
            # and the champion answers all five
            for _ in range(5):
                assert infer_version(admin, "iris", IRIS) == "2"
            labels = {"model": "iris", "version": "1"}
            assert (
                value(admin, "tabserve_rollout_shadow_requests_total", outcome="dropped", **labels)
                == 4
            )
        finally:
            held.release.set()
        settle(admin)
        assert (
            value(admin, "tabserve_rollout_shadow_requests_total", outcome="compared", **labels)
            == 2
        )


def test_challenger_failures_are_counted_and_never_reach_the_client(admin: TestClient) -> None:
    serve_with(state_of(admin), "iris", FailingRuntime, version=1)
    put_rollout(admin, "iris", challenger=1, mode="shadow")
    for _ in range(3):
        assert infer_version(admin, "iris", IRIS) == "2"
    settle(admin)
    labels = {"model": "iris", "version": "1"}
    assert value(admin, "tabserve_rollout_shadow_requests_total", outcome="failed", **labels) == 3
    assert value(admin, "tabserve_rollout_shadow_requests_total", outcome="compared", **labels) == 0


def test_ending_the_shadow_stops_copying_and_listening(admin: TestClient) -> None:
    dataplane = state_of(admin).dataplane
    listeners = list(dataplane.request_listeners)
    put_rollout(admin, "iris", challenger=1, mode="shadow")
    assert len(dataplane.request_listeners) == len(listeners) + 1
    admin.post("/v2/repository/models/iris/unload", headers=AUTH, json={"version": 1})
    assert dataplane.request_listeners == listeners  # no rollout: no cost per request
    assert infer_version(admin, "iris", IRIS) == "2"
    settle(admin)
    assert (
        value(
            admin,
            "tabserve_rollout_shadow_requests_total",
            model="iris",
            version="1",
            outcome="compared",
        )
        == 0
    )


def test_the_prediction_log_keeps_both_versions_and_measures_them_on_one_truth(
    rollout_models: Path, tmp_path: Path
) -> None:
    logged = {"predlog_mode": "all", "data_dir": tmp_path / "data", "predlog_flush_seconds": 0.05}
    with serve(rollout_models, **logged) as admin:
        put_rollout(admin, "iris", challenger=1, mode="shadow")
        for i in range(6):
            answer = admin.post(
                "/models/iris/predict",
                json=[dict(zip(FEATURES, row, strict=True)) for row in IRIS],
                headers={"X-Request-ID": f"r-{i}"},
            )
            assert answer.json()["version"] == 2
        settle(admin)
        items = [
            {"request_id": f"r-{i}", "row": r, "truth": "virginica"}
            for i in range(6)
            for r in range(4)
        ]
        results = admin.post("/models/iris/feedback", json=items).json()["results"]
        assert {(r["outcome"], r["version"]) for r in results} == {("accepted", 2)}  # who answered
        quality = admin.get("/models/iris/quality").json()["versions"]
        assert {q["version"]: q["rows"] for q in quality} == {1: 24, 2: 24}
        page = admin.get("/models/iris/predictions", params={"limit": 100}).json()["items"]
        assert sorted((p["request_id"], p["row"], p["version"]) for p in page) == sorted(
            (f"r-{i}", r, v) for i in range(6) for r in range(4) for v in (1, 2)
        )
