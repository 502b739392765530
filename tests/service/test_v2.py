"""Open Inference Protocol (KServe V2) REST through the real lifespan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tabserve.artifact.store import load_artifact
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every V2 test runs on both the fast path and the documented FastAPI route."""
    return settings.model_copy(update={"fast_path": request.param})


IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def tensor(name: str, data: list[Any], shape: list[int], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def infer(client: TestClient, model: str, body: dict[str, Any], version: str | None = None) -> Any:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return client.post(path, json=body)


def test_one_matrix_tensor_gives_labels_and_probabilities(
    client: TestClient, models_dir: Path
) -> None:
    flat = [v for row in IRIS_ROWS for v in row]
    response = infer(
        client, "iris", {"id": "r-1", "inputs": [tensor("input-0", flat, [2, 4])]}, "1"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "r-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["setosa", "virginica"],
    }
    proba = outputs["predict_proba"]
    assert (proba["datatype"], proba["shape"]) == ("FP64", [2, 3])
    expected = load_artifact(models_dir / "iris" / "1").estimator.predict_proba(np.array(IRIS_ROWS))
    np.testing.assert_allclose(np.array(proba["data"]).reshape(2, 3), expected, rtol=0, atol=1e-5)


def test_one_tensor_per_feature_with_categories_as_bytes(client: TestClient) -> None:
    body = {
        "inputs": [
            tensor("age", [30, 70], [2], "INT64"),
            tensor("city", ["paris", "berlin"], [2], "BYTES"),
            tensor("income", [2500.5, 1800.0], [2], "FP32"),
        ],
        "outputs": [{"name": "predict"}],
    }
    response = infer(client, "churn", body)
    assert response.status_code == 200
    [output] = response.json()["outputs"]
    assert output["name"] == "predict"
    assert set(output["data"]) <= {"yes", "no"}
    assert output["shape"] == [2]


def test_regression_has_no_probabilities(client: TestClient) -> None:
    data = load_bundled("diabetes")
    body = {"inputs": [tensor("x", data.features[:3].ravel().tolist(), [3, 10])]}
    response = infer(client, "diabetes", body)
    assert response.status_code == 200
    [output] = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predict", "FP64", [3])


def test_metadata_lists_real_features_outputs_and_versions(client: TestClient) -> None:
    meta = client.get("/v2/models/iris").json()
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1", "2"]
    assert [i["name"] for i in meta["inputs"]] == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert meta["parameters"]["version"] == "2"
    churn = client.get("/v2/models/churn/versions/1").json()
    assert [i["datatype"] for i in churn["inputs"]] == ["FP64", "BYTES", "FP64"]


def test_model_readiness_per_version(client: TestClient) -> None:
    assert client.get("/v2/models/iris/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/7/ready").status_code == 404
    assert client.get("/v2/models/nope/ready").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "message_part"),
    [
        ({"inputs": [tensor("x", [1.0, 2.0, 3.0], [1, 3])]}, 400, "[rows, 4]"),
        ({"inputs": [tensor("sepal_length_cm", [1.0], [1])]}, 400, "sepal_width_cm"),
        (
            {
                "inputs": [tensor("x", [1.0, 2.0, 3.0, 4.0], [1, 4])],
                "outputs": [{"name": "explain"}],
            },
            400,
            "explain",
        ),
        ({"inputs": [tensor("x", [1.0, "a", 3.0, 4.0], [1, 4])]}, 400, "x"),
        ({"inputs": "nope"}, 400, "inputs"),
    ],
)
def test_bad_requests_get_400_with_an_error_string(
    client: TestClient, body: dict[str, Any], status: int, message_part: str
) -> None:
    response = infer(client, "iris", body)
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error, str)
    assert message_part in error


def test_malformed_json_body(client: TestClient) -> None:
    response = client.post("/v2/models/iris/infer", content=b"{not json")
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_unknown_model_and_version(client: TestClient) -> None:
    body = {"inputs": [tensor("x", [1.0, 2.0, 3.0, 4.0], [1, 4])]}
    assert infer(client, "nope", body).status_code == 404
    missing = infer(client, "iris", body, "3")
    assert missing.status_code == 404
    assert missing.json()["error"] == "model 'iris' has no version 3; versions: 1, 2"
    assert infer(client, "iris", body, "latest").status_code == 404


def test_non_finite_and_missing_values(client: TestClient) -> None:
    body = {"inputs": [tensor("x", [1.0, 2.0, 3.0, 4.0], [1, 4])]}
    assert infer(client, "iris", body).status_code == 200
    # JSON has no NaN; a per-feature tensor of the mixed model can carry a missing city (null)
    churn = {
        "inputs": [
            tensor("age", [30], [1], "INT64"),
            tensor("city", ["atlantis"], [1], "BYTES"),
            tensor("income", [2500.5], [1], "FP64"),
        ]
    }
    response = infer(client, "churn", churn)
    assert response.status_code == 400
    assert "'atlantis'" in response.json()["error"]


def test_oversize_body_is_413(settings: Any) -> None:
    from tabserve.service.app import create_app

    small = settings.model_copy(update={"max_body_bytes": 1024})
    with TestClient(create_app(small)) as client:
        body = {"inputs": [tensor("x", [1.0] * 400, [100, 4])]}
        response = infer(client, "iris", body)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_chunked_body_past_the_limit_is_413(settings: Any) -> None:
    """Without Content-Length the body is counted as it streams in."""
    from tabserve.service.app import create_app

    small = settings.model_copy(update={"max_body_bytes": 1024})
    payload = json.dumps({"inputs": [tensor("x", [1.0] * 400, [100, 4])]}).encode()
    chunks = (payload[i : i + 256] for i in range(0, len(payload), 256))
    with TestClient(create_app(small)) as client:
        response = client.post(
            "/v2/models/iris/infer", content=chunks, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_bad_binary_header_length_is_400(client: TestClient) -> None:
    response = client.post(
        "/v2/models/iris/infer",
        content=b'{"inputs": []}',
        headers={"Inference-Header-Content-Length": "lots"},
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]
