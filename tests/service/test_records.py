"""The named-feature API: `POST /models/{name}/predict`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

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


NAMES = "['sepal_length_cm', 'sepal_width_cm', 'petal_length_cm', 'petal_width_cm']"
TYPO = {("sepal_widht_cm" if k == "sepal_width_cm" else k): v for k, v in IRIS_ROW.items()}
# (body, the error's message, its first detail): V2's wording, index and row always filled.
BAD_RECORDS: list[tuple[object, str, dict[str, object]]] = [
    (
        {**IRIS_ROW, "petal_width_cm": "abc"},
        "feature 'petal_width_cm' (index 3), row 0: expected a number, got 'abc'",
        {"field": "petal_width_cm", "index": 3, "row": 0, "value": "abc", "expected": "a number"},
    ),
    (
        [IRIS_ROW, {**IRIS_ROW, "sepal_length_cm": True}],
        "feature 'sepal_length_cm' (index 0), row 1: expected a number, got True",
        {"field": "sepal_length_cm", "index": 0, "row": 1, "value": True},
    ),
    (
        {k: v for k, v in IRIS_ROW.items() if k != "sepal_width_cm"},
        "feature 'sepal_width_cm' (index 1), row 0: expected a value (the feature is "
        "required), got None",
        {"field": "sepal_width_cm", "index": 1, "row": 0, "value": None},
    ),
    (
        {**IRIS_ROW, "colour": "blue"},
        f"feature name, row 0: expected one of {NAMES}, got 'colour'",
        {"field": "feature name", "index": None, "row": 0, "value": "colour"},
    ),
    (
        TYPO,
        "feature 'sepal_width_cm' (index 1), row 0: expected a value (the feature is "
        f"required), got None; feature name, row 0: expected one of {NAMES} (did you mean "
        "'sepal_width_cm'?), got 'sepal_widht_cm'",
        {"field": "sepal_width_cm", "index": 1, "row": 0, "value": None},
    ),
    (
        {**IRIS_ROW, "sepal_length_cm": None},
        "feature 'sepal_length_cm' (index 0), row 0: expected a number (this model does not "
        "accept missing values), got None",
        {"field": "sepal_length_cm", "index": 0, "row": 0, "value": None},
    ),
    (
        [IRIS_ROW, 7],
        "record, row 1: expected an object keyed by feature name, got 7",
        {"field": "record", "index": None, "row": 1, "value": 7},
    ),
    (
        "setosa",
        "body: expected an object keyed by feature name, or a list of such records, got 'setosa'",
        {"field": "body", "index": None, "row": None, "value": "setosa"},
    ),
]


@pytest.mark.parametrize(
    ("body", "message", "detail"),
    BAD_RECORDS,
    ids=["type", "type-row-1", "missing", "unknown", "typo", "null", "not-a-record", "not-a-body"],
)
def test_bad_records_are_worded_as_v2_words_them(
    client: TestClient, body: object, message: str, detail: dict[str, object]
) -> None:
    response = client.post("/models/iris/predict", json=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == message
    assert answer["code"] == "invalid_input"
    assert detail.items() <= answer["details"][0].items()


def test_a_typo_gets_the_closest_feature_name_on_v1_v2_and_records(client: TestClient) -> None:
    suggestion = "(did you mean 'sepal_width_cm'?)"
    records = client.post("/models/iris/predict", json=TYPO).json()
    v1 = client.post("/v1/models/iris:predict", json={"instances": [TYPO]}).json()
    assert v1 == records  # V1 records are checked alike, word for word
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in TYPO.items()
    ]
    v2 = client.post("/v2/models/iris/infer", json={"inputs": inputs}).json()
    assert v2["details"][0]["field"] == "input 'sepal_widht_cm'"
    assert v2["details"][0]["expected"].endswith(suggestion)
    assert records["details"][1]["expected"].endswith(suggestion)
    far = client.post("/models/iris/predict", json={**IRIS_ROW, "zzz": 1}).json()
    assert "did you mean" not in far["error"]


def test_unknown_category_names_the_allowed_ones(client: TestClient) -> None:
    response = client.post(
        "/models/churn/predict", json={"age": 40, "city": "tokyo", "income": 1000.0}
    )
    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "field": "city",
            "index": 1,
            "row": 0,
            "value": "tokyo",
            "expected": "a known category: one of ['berlin', 'lisbon', 'paris']",
        }
    ]


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


def test_unknown_version_is_404_listing_the_versions_as_v2_does(client: TestClient) -> None:
    for path in ("/models/iris/versions/9/predict", "/v2/models/iris/versions/9/infer"):
        response = client.post(path, json=IRIS_ROW)
        assert response.status_code == 404
        assert response.json() == {
            "error": "model 'iris' has no version 9; versions: 1, 2",
            "code": "model_not_found",
            "details": [],
        }
    response = client.post("/models/iris/versions/x/predict", json=IRIS_ROW)
    assert response.status_code == 404
    assert response.json()["error"] == (
        "model 'iris' has no version 'x'; versions are positive integers written in ASCII digits"
    )


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


def test_many_unknown_names_cost_a_few_suggestions_and_details_on_records_and_v2(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    close_matches = difflib.get_close_matches

    def counted(word: str, *args: Any, **kwargs: Any) -> list[str]:
        calls.append(word)
        return close_matches(word, *args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    record = {**IRIS_ROW, **{f"sepal_widt{i}": 1.0 for i in range(5000)}}
    response = client.post("/models/iris/predict", json=record)
    assert response.status_code == 400
    assert len(response.json()["details"]) == 20
    assert len(calls) == 20
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in record.items()
    ]
    response = client.post("/v2/models/iris/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert len(response.json()["details"]) == 20
    assert len(calls) == 40
