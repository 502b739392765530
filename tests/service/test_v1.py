"""KServe V1: `POST /v1/models/{name}:predict`."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_instances_as_lists_in_feature_order(client: TestClient) -> None:
    response = client.post(
        "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    )
    assert response.status_code == 200
    assert response.json() == {"predictions": ["setosa", "virginica"]}


def test_instances_as_objects_by_name(client: TestClient) -> None:
    response = client.post(
        "/v1/models/churn:predict",
        json={"instances": [{"age": 30, "city": "berlin", "income": 2000}]},
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0] in {"yes", "no"}


def test_wrong_width_names_the_row(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4]]})
    assert response.status_code == 400
    [detail] = response.json()["details"]
    assert detail == {
        "field": "row 0",
        "index": None,
        "row": None,
        "value": [5.1, 3.5, 1.4],
        "expected": "a list of 4 values",
    }


def test_string_in_numeric_feature_names_feature_index_and_value(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [[5.1, "x", 1.4, 0.2]]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "feature 'sepal_width_cm' (index 1), row 0: expected a number, got 'x'"


def test_missing_value_refused_for_a_model_without_imputation(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [[5.1, None, 1.4, 0.2]]})
    assert response.status_code == 400
    assert "does not accept missing values" in response.json()["error"]


def test_v1_model_status(client: TestClient) -> None:
    assert client.get("/v1/models/iris").json() == {"name": "iris", "ready": True}


def test_request_shape_errors_use_the_feature_checks_words(client: TestClient) -> None:
    """FastAPI's validation of the V1 body reaches the client reworded, not as Pydantic's."""
    wrong = client.post("/v1/models/iris:predict", json={"instances": 5})
    assert wrong.status_code == 422
    assert wrong.json()["error"] == "instances: expected a list, got 5"
    missing = client.post("/v1/models/iris:predict", json={"rows": []})
    assert missing.json()["error"] == "instances: expected a value (it is required), got None"
    query = client.get("/models/iris/drift", params={"version": "x"})
    assert query.json()["error"] == "version: expected 1 to 18 ASCII digits (0-9), got 'x'"
