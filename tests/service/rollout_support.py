"""What the rollout tests share: a models folder with challengers, requests, metric reads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.state import AppState
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

TOKEN = "rollout-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.0, 2.2, 5.0, 1.5]]
"""Rows where the iris forest (v1) and the logistic regression (v2) may differ (the last)."""
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def build_models(session_models: Path, root: Path) -> Path:
    """iris v1 (forest) and v2 (logistic); diabetes v1 (ridge) and v2 (a small forest);
    `mixed` v1 (iris features) and v2 (wine's: another schema)."""
    shutil.copytree(session_models / "iris", root / "iris")
    shutil.copytree(session_models / "diabetes", root / "diabetes")
    diabetes = load_bundled("diabetes")
    train(TrainRequest(diabetes, "random_forest", root, "diabetes", params={"n_estimators": 5}))
    train(TrainRequest(load_bundled("iris"), "logistic_regression", root, "mixed"))
    train(TrainRequest(load_bundled("wine"), "logistic_regression", root, "mixed"))
    return root


def add_iris_version(root: Path) -> int:
    """Train the next iris version (a small forest) into `root`; return its number."""
    iris = load_bundled("iris")
    result = train(TrainRequest(iris, "random_forest", root, "iris", params={"n_estimators": 5}))
    return result.manifest.version


def put_rollout(client: TestClient, model: str, **body: Any) -> Any:
    """`PUT /models/{model}/rollout` with the admin token; returns the response."""
    return client.put(f"/models/{model}/rollout", headers=AUTH, json=body)


def infer_version(client: TestClient, model: str, rows: list[list[float]], **headers: str) -> str:
    """The `model_version` of a V2 infer naming no version."""
    answer = client.post(
        f"/v2/models/{model}/infer",
        json={
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [len(rows), len(rows[0])],
                    "data": [v for row in rows for v in row],
                }
            ]
        },
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["model_version"]
    return version


def samples(client: TestClient, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named `metric` in the exposition, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == metric:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(client: TestClient, metric: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist)."""
    return samples(client, metric).get(tuple(sorted(labels.items())), 0.0)


def state_of(client: TestClient) -> AppState:
    """The app's state (to reach the registry and the shadow runner)."""
    state: AppState = client.app.state.tabserve  # type: ignore[attr-defined]
    return state
