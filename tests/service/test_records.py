"""The named-feature API: `POST /models/{name}/predict`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled

IRIS_ROW = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def test_one_record_gets_label_probabilities_and_ids(client: TestClient) -> None:
    response = client.post("/models/iris/predict", json=IRIS_ROW, headers={"X-Request-ID": "abc-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "iris"
    assert body["version"] == 2
    assert body["request_id"] == "abc-1"
    assert response.headers["x-request-id"] == "abc-1"
    [answer] = body["predictions"]
    assert answer["prediction"] == "setosa"
    assert set(answer["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)


def test_answers_match_the_model_in_process(client: TestClient, models_dir: Path) -> None:
    data = load_bundled("iris")
    rows = data.features[::10]
    names = [c.name for c in data.columns]
    records = [dict(zip(names, map(float, row), strict=True)) for row in rows]
    response = client.post("/models/iris/versions/1/predict", json=records)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    model = load_artifact(models_dir / "iris" / "1").estimator
    expected_proba = model.predict_proba(rows)
    got = np.array([[p["probabilities"][c] for c in model.classes_] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected_proba, rtol=0, atol=1e-5)  # docs/engines.md
    assert [p["prediction"] for p in body["predictions"]] == list(model.predict(rows))


def test_regression_answers_values_without_probabilities(client: TestClient) -> None:
    record = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.0)
    response = client.post("/models/diabetes/predict", json=[record, record])
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert isinstance(predictions[0]["prediction"], float)
    assert predictions[0]["probabilities"] is None


def test_categorical_and_missing_values_pass_through(client: TestClient) -> None:
    rows = [
        {"age": 60, "city": "paris", "income": 2500.0},
        {"age": 30, "city": None, "income": None},
    ]
    response = client.post("/models/churn/predict", json=rows)
    assert response.status_code == 200
    assert [p["prediction"] for p in response.json()["predictions"]] in (
        [a, b] for a in ("yes", "no") for b in ("yes", "no")
    )


@pytest.mark.parametrize(
    ("record", "status", "field", "value", "expected_part"),
    [
        ({**IRIS_ROW, "petal_width_cm": "abc"}, 422, "petal_width_cm", "abc", "number"),
        (
            {k: v for k, v in IRIS_ROW.items() if k != "sepal_width_cm"},
            422,
            "sepal_width_cm",
            None,
            "required",
        ),
        ({**IRIS_ROW, "colour": "blue"}, 422, "colour", "blue", "not permitted"),
        ({**IRIS_ROW, "sepal_length_cm": None}, 422, "sepal_length_cm", None, "number"),
    ],
)
def test_bad_records_name_field_value_and_expectation(
    client: TestClient,
    record: dict[str, object],
    status: int,
    field: str,
    value: object,
    expected_part: str,
) -> None:
    response = client.post("/models/iris/predict", json=record)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == "invalid_request"
    [detail] = body["details"]
    assert detail["field"] == field
    assert detail["value"] == value
    assert expected_part in detail["expected"].lower()
    assert field in body["error"]


def test_unknown_category_names_the_allowed_ones(client: TestClient) -> None:
    response = client.post(
        "/models/churn/predict", json={"age": 40, "city": "tokyo", "income": 1000.0}
    )
    assert response.status_code == 422
    [detail] = response.json()["details"]
    assert detail["field"] == "city"
    assert detail["value"] == "tokyo"
    assert "'berlin', 'lisbon' or 'paris'" in detail["expected"]


def test_too_many_rows_is_413(client: TestClient) -> None:
    response = client.post("/models/iris/predict", json=[IRIS_ROW] * 101)
    assert response.status_code == 413
    assert response.json()["error"] == "request has 101 rows; at most 100 are allowed per request"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/models/iris/predict",
        content=b'{"sepal_length_cm": 5.1,',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_unknown_model_is_404_listing_the_served_ones(client: TestClient) -> None:
    response = client.post("/models/nope/predict", json=IRIS_ROW)
    assert response.status_code == 404
    assert response.json() == {
        "error": "model 'nope' not found; models served: churn, diabetes, iris",
        "code": "model_not_found",
        "details": [],
    }


def test_unknown_version_is_404(client: TestClient) -> None:
    response = client.post("/models/iris/versions/9/predict", json=IRIS_ROW)
    assert response.status_code == 404


def test_models_listing_has_versions_and_training_metrics(client: TestClient) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    listing = {m["name"]: m for m in response.json()}
    assert sorted(listing) == ["churn", "diabetes", "iris"]
    iris = listing["iris"]
    assert iris["default_version"] == 2
    assert [v["version"] for v in iris["versions"]] == [1, 2]
    assert iris["versions"][0]["estimator"] == "RandomForestClassifier"
    assert iris["versions"][0]["state"] == "ready"
    assert set(iris["versions"][0]["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}


def test_openapi_shows_each_models_real_features_and_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/models/iris/predict" in spec["paths"]
    assert "/models/churn/versions/1/predict" in spec["paths"]
    schemas = spec["components"]["schemas"]
    iris = schemas["IrisV2Record"]
    assert list(iris["properties"]) == list(IRIS_ROW)
    assert iris["additionalProperties"] is False
    assert set(iris["examples"][0]) == set(IRIS_ROW)
    churn = schemas["ChurnV1Record"]["properties"]["city"]
    assert {"enum": ["berlin", "lisbon", "paris"], "type": "string"} in churn["anyOf"]
