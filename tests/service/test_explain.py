"""Exact explanations through the real lifespan, on artifacts trained and exported for real.

For each supported family, `POST /models/{m}/explain` must answer attributions, one per
input feature (named as in the manifest) per output, whose sum plus the base value is
the model's own output, computed here with the library's API, never the service's. One-hot
encoded features get the sum of their columns; linear models' base value is their mean
output over the training data; a compiled engine changes nothing; models without an exact
method get 409, bad input the record route's own 400, too many rows 413.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.svm import SVC

import tabserve
from tabserve.artifact.store import load_artifact
from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.pipeline import TrainRequest, train
from tests.conftest import write_mixed_csv
from tests.service.explain_support import (
    assert_additive,
    model_outputs,
    records_of,
    served_rows,
)

EXACT = 1e-9
CITIES = ["berlin", "lisbon", "paris"]


def people(rows: int, seed: int) -> pd.DataFrame:
    """A DataFrame with two numbers and a string column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "income": rng.normal(3000, 800, rows).round(2),
            "city": rng.choice(CITIES, rows).astype(object),
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    folder = tmp_path_factory.mktemp("explain-data")
    return {
        "iris": load_bundled("iris"),
        "wine": load_bundled("wine"),
        "diabetes": load_bundled("diabetes"),
        "churn": load_csv(write_mixed_csv(folder / "churn.csv"), "churned"),
    }


@pytest.fixture(scope="module")
def explain_models(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Dataset]) -> Path:
    """Trained (training's pipelines) and exported (DataFrame pipelines, SVC, KNN) versions."""
    root = tmp_path_factory.mktemp("explain-models")
    small: dict[str, Any] = {"n_estimators": 10}
    for name, dataset, kind, params in [
        ("iris", "iris", "random_forest", small),
        ("iris", "iris", "logistic_regression", {}),
        ("wine-hgb", "wine", "hist_gradient_boosting", {"max_iter": 20}),
        ("diabetes-ridge", "diabetes", "ridge", {}),
        ("diabetes-hgb", "diabetes", "hist_gradient_boosting", {"max_iter": 20}),
        ("churn-forest", "churn", "random_forest", small),
        ("churn-hgb", "churn", "hist_gradient_boosting", {"max_iter": 20}),
        ("churn-logistic", "churn", "logistic_regression", {}),
    ]:
        train(TrainRequest(data[dataset], kind, root, name, params=params))
    x = people(300, seed=1)
    churned = ((x["age"] > 50) ^ (x["city"] == "paris")).map({True: "yes", False: "no"})
    by_name = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    frame_gb = Pipeline([("prepare", by_name), ("model", GradientBoostingClassifier())])
    tabserve.export(frame_gb.fit(x, churned), x, churned, name="frame-gb", models_dir=root)
    numbers = x[["age", "income"]]
    spend = 3 * x["age"] + x["income"] / 100
    trees = ExtraTreesRegressor(n_estimators=10, random_state=0).fit(numbers, spend)
    tabserve.export(trees, numbers, spend, name="spend-trees", models_dir=root)
    poisson = HistGradientBoostingRegressor(loss="poisson", max_iter=10).fit(numbers, spend)
    tabserve.export(poisson, numbers, spend, name="spend-poisson", models_dir=root)
    svc = SVC(probability=True, random_state=0).fit(numbers, churned)
    tabserve.export(svc, numbers, churned, name="churn-svc", models_dir=root)
    knn = KNeighborsClassifier().fit(numbers, churned)
    tabserve.export(knn, numbers, churned, name="churn-knn", models_dir=root)
    boosted = GradientBoostingClassifier(n_estimators=5).fit(numbers, x["city"])
    tabserve.export(boosted, numbers, x["city"], name="city-gb", models_dir=root)
    return root


@pytest.fixture
def explain_settings(explain_models: Path) -> Settings:
    return Settings(models_dir=explain_models, inference_threads=1, max_rows=100)


@pytest.fixture
def explainer_client(explain_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(explain_settings)) as client:
        yield client


def _records(
    name: str, data: dict[str, Dataset], explain_models: Path, rows: int
) -> list[dict[str, Any]]:
    manifest = load_artifact(explain_models / name / "1").manifest
    if manifest.training.source.startswith("export"):
        frame = people(rows, seed=9)
        names = manifest.feature_names
        return [{n: r[n] for n in names} for r in frame.to_dict("records")]
    dataset = {"wine-hgb": "wine", "iris": "iris"}.get(name, name.split("-")[0])
    return records_of(data[dataset], slice(0, rows))


FAMILIES = [
    # (model, version, method, output space, outputs)
    ("iris", 1, "tree_shap", "probability", ["setosa", "versicolor", "virginica"]),
    ("iris", 2, "linear", "margin", ["setosa", "versicolor", "virginica"]),
    ("wine-hgb", 1, "tree_shap", "margin", ["class_0", "class_1", "class_2"]),
    ("diabetes-ridge", 1, "linear", "value", ["target"]),
    ("diabetes-hgb", 1, "tree_shap", "value", ["target"]),
    ("churn-forest", 1, "tree_shap", "probability", ["no", "yes"]),
    ("churn-hgb", 1, "tree_shap", "margin", ["yes"]),
    ("churn-logistic", 1, "linear", "margin", ["yes"]),
    ("frame-gb", 1, "tree_shap", "margin", ["yes"]),
    ("spend-trees", 1, "tree_shap", "value", ["target"]),
]


@pytest.mark.parametrize(("name", "version", "method", "space", "outputs"), FAMILIES)
def test_attributions_add_up_to_the_models_own_output(
    explainer_client: TestClient,
    explain_models: Path,
    data: dict[str, Dataset],
    name: str,
    version: int,
    method: str,
    space: str,
    outputs: list[str],
) -> None:
    records = _records(name, data, explain_models, rows=24)
    answer = explainer_client.post(f"/models/{name}/versions/{version}/explain", json=records)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    manifest = load_artifact(explain_models / name / str(version)).manifest
    assert (body["model"], body["version"]) == (name, version)
    assert (body["method"], body["output_space"], body["tolerance"]) == (method, space, EXACT)
    assert body["features"] == manifest.feature_names
    assert len(body["explanations"]) == len(records)
    assert [o["output"] for o in body["explanations"][0]["outputs"]] == outputs
    expected = model_outputs(explain_models / name / str(version), records, space)
    assert_additive(body, expected, EXACT)


def test_predictions_and_probabilities_are_the_record_routes(
    explainer_client: TestClient, data: dict[str, Dataset]
) -> None:
    records = records_of(data["churn"], slice(0, 30))
    explained = explainer_client.post("/models/churn-hgb/explain", json=records).json()
    predicted = explainer_client.post("/models/churn-hgb/predict", json=records).json()
    for row, answer in zip(explained["explanations"], predicted["predictions"], strict=True):
        assert row["prediction"] == answer["prediction"]
        assert row["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-5)
    # A binary classifier's margin is the log-odds of the positive class.
    for row in explained["explanations"]:
        log_odds = math.log(row["probabilities"]["yes"] / row["probabilities"]["no"])
        assert row["outputs"][0]["value"] == pytest.approx(log_odds, abs=1e-9)


def test_one_hot_columns_are_summed_back_to_their_feature(
    explainer_client: TestClient, explain_models: Path, data: dict[str, Dataset]
) -> None:
    import shap

    records = records_of(data["churn"], slice(0, 20))
    body = explainer_client.post("/models/churn-forest/explain", json=records).json()
    loaded = load_artifact(explain_models / "churn-forest" / "1")
    pipeline = loaded.estimator
    columns = pipeline[:-1].transform(served_rows(loaded.manifest, records))
    names = list(pipeline[:-1].get_feature_names_out(loaded.manifest.feature_names))
    # [rows, columns, classes], computed here on the transformed columns
    values = np.asarray(shap.TreeExplainer(pipeline[-1]).shap_values(columns))
    city = [i for i, n in enumerate(names) if n.startswith("category__city_")]
    assert len(city) >= 3
    for r, row in enumerate(body["explanations"]):
        for k, output in enumerate(row["outputs"]):
            assert set(output["attributions"]) == {"age", "city", "income"}
            summed = values[r, city, k].sum()
            assert output["attributions"]["city"] == pytest.approx(summed, abs=EXACT)


def test_a_linear_models_base_value_is_its_mean_output_over_the_training_data(
    explainer_client: TestClient, explain_models: Path, data: dict[str, Dataset]
) -> None:
    iris = data["iris"]
    body = explainer_client.post(
        "/models/iris/versions/2/explain", json=records_of(iris, slice(0, 1))
    ).json()
    pipeline = load_artifact(explain_models / "iris" / "2").estimator
    means = pipeline.decision_function(iris.features.astype(np.float64)).mean(axis=0)
    bases = [o["base_value"] for o in body["explanations"][0]["outputs"]]
    assert bases == pytest.approx(means.tolist(), abs=EXACT)


def test_a_compiled_engine_is_explained_with_the_original_estimator(
    explainer_client: TestClient, explain_models: Path, data: dict[str, Dataset]
) -> None:
    iris = next(m for m in explainer_client.get("/models").json() if m["name"] == "iris")
    engines = {v["version"]: v["engine"] for v in iris["versions"]}
    assert engines == {1: "onnx", 2: "numpy"}
    records = records_of(data["iris"], slice(40, 110))
    body = explainer_client.post("/models/iris/versions/1/explain", json=records).json()
    # ONNX Runtime computes in float32: only scikit-learn's own float64 output is this close.
    expected = model_outputs(explain_models / "iris" / "1", records, "probability")
    assert_additive(body, expected, EXACT)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("churn-svc", "SVC has no exact attribution method"),
        ("churn-knn", "KNeighborsClassifier has no exact attribution method"),
        # shap's TreeSHAP takes scikit-learn's gradient boosting for two classes only
        ("city-gb", "only supported for binary classification"),
    ],
)
def test_a_model_without_an_exact_method_answers_409(
    explainer_client: TestClient, explain_models: Path, name: str, why: str
) -> None:
    records = _records(name, {}, explain_models, rows=2)
    for _ in range(2):  # the refusal is kept: the second call says the same
        answer = explainer_client.post(f"/models/{name}/explain", json=records)
        assert answer.status_code == 409
        body = answer.json()
        assert body["code"] == "not_explainable"
        assert why in body["error"]
        assert "XGBoost, LightGBM, CatBoost" in body["error"]
    metrics = explainer_client.get("/metrics").text
    line = f'tabserve_explain_calls_total{{model="{name}",outcome="not_explainable",version="1"}}'
    assert f"{line} 2.0" in metrics
    assert explainer_client.post(f"/models/{name}/predict", json=records).status_code == 200


def test_attributions_that_miss_the_output_are_refused_not_served(
    explainer_client: TestClient, explain_models: Path
) -> None:
    # A Poisson model's trees sum to the log of its prediction: its TreeSHAP values do
    # not add up to the prediction itself, and the load-time check catches it.
    records = _records("spend-poisson", {}, explain_models, rows=2)
    answer = explainer_client.post("/models/spend-poisson/explain", json=records)
    assert answer.status_code == 409
    assert answer.json()["code"] == "not_explainable"
    assert "miss its output" in answer.json()["error"]


BAD_BODIES = [
    {"sepal_length_cm": "x", "sepal_width_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3},
    {"sepal_length_cm": 6.7, "sepal_widht_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3},
    [{"sepal_length_cm": 6.7}],
    [],
    "not a record",
    [1, 2],
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_input_gets_the_record_routes_own_answer(
    explainer_client: TestClient, body: Any
) -> None:
    explained = explainer_client.post("/models/iris/explain", json=body)
    predicted = explainer_client.post("/models/iris/predict", json=body)
    assert explained.status_code == predicted.status_code == 400
    assert explained.json() == predicted.json()
    assert explained.json()["code"] == "invalid_input"


def test_a_bad_value_names_the_feature_row_and_expectation(explainer_client: TestClient) -> None:
    record = {"age": 30, "city": "madrid", "income": 2000.0}
    answer = explainer_client.post("/models/churn-hgb/explain", json=[record, record])
    assert answer.status_code == 400
    detail = answer.json()["details"][0]
    assert (detail["field"], detail["index"], detail["row"], detail["value"]) == (
        "city",
        1,
        0,
        "madrid",
    )
    assert "a known category" in detail["expected"]


def test_unknown_models_and_versions_are_404(explainer_client: TestClient) -> None:
    record = {"sepal_length_cm": 6.7, "sepal_width_cm": 3, "petal_length_cm": 5}
    missing = explainer_client.post("/models/nope/explain", json=record)
    assert (missing.status_code, missing.json()["code"]) == (404, "model_not_found")
    version = explainer_client.post("/models/iris/versions/9/explain", json=record)
    assert (version.status_code, version.json()["code"]) == (404, "model_not_found")
    assert "versions: 1, 2" in version.json()["error"]


def test_rows_past_the_explain_limit_are_413(
    explain_settings: Settings, data: dict[str, Dataset]
) -> None:
    settings = explain_settings.model_copy(update={"explain_max_rows": 3})
    records = records_of(data["iris"], slice(0, 4))
    with TestClient(create_app(settings)) as client:
        refused = client.post("/models/iris/explain", json=records)
        assert refused.status_code == 413
        assert refused.json()["code"] == "too_large"
        assert "TABSERVE_EXPLAIN_MAX_ROWS" in refused.json()["error"]
        assert refused.json()["details"][0]["value"] == 4
        assert client.post("/models/iris/explain", json=records[:3]).status_code == 200
        # predictions keep their own, larger limit
        assert client.post("/models/iris/predict", json=records).status_code == 200


def test_explanations_off_answer_409_naming_the_setting(
    explain_settings: Settings, data: dict[str, Dataset]
) -> None:
    settings = explain_settings.model_copy(update={"explain_enabled": False})
    with TestClient(create_app(settings)) as client:
        answer = client.post("/models/iris/explain", json=records_of(data["iris"], slice(0, 1)))
        assert answer.status_code == 409
        assert answer.json()["code"] == "feature_disabled"
        assert answer.json()["details"][0]["field"] == "TABSERVE_EXPLAIN_ENABLED"
        assert "/models/{model}/explain" in client.get("/openapi.json").json()["paths"]
        assert "tabserve_explain_calls_total" in client.get("/metrics").text


def test_answered_calls_are_counted_and_timed(
    explainer_client: TestClient, data: dict[str, Dataset]
) -> None:
    records = records_of(data["iris"], slice(0, 5))
    for _ in range(2):
        assert explainer_client.post("/models/iris/explain", json=records).status_code == 200
    metrics = explainer_client.get("/metrics").text
    assert 'tabserve_explain_calls_total{model="iris",outcome="ok",version="2"} 2.0' in metrics
    assert 'tabserve_explain_rows_total{model="iris",version="2"} 10.0' in metrics
    assert 'tabserve_explain_duration_seconds_count{model="iris",version="2"} 2.0' in metrics


def test_the_openapi_document_types_the_answer(explainer_client: TestClient) -> None:
    document = explainer_client.get("/openapi.json").json()
    for path in ("/models/{model}/explain", "/models/{model}/versions/{version}/explain"):
        operation = document["paths"][path]["post"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/ExplainResponse"}
        assert "not_explainable" in operation["responses"]["409"]["description"]
        assert {"400", "404", "413", "422", "503"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["ExplainResponse"]["properties"]["output_space"]["enum"] == [
        "probability",
        "margin",
        "value",
    ]
    assert "attributions" in schemas["OutputAttributions"]["properties"]


def test_serving_and_predicting_never_import_shap(explain_models: Path) -> None:
    # A fresh interpreter: this test process may have imported shap already.
    script = f"""
import sys
from fastapi.testclient import TestClient
from tabserve.service.app import create_app
from tabserve.service.settings import Settings
record = {{"sepal_length_cm": 6.7, "sepal_width_cm": 3.0, "petal_length_cm": 5.2,
          "petal_width_cm": 2.3}}
with TestClient(create_app(Settings(models_dir={str(explain_models)!r}))) as client:
    assert client.post("/models/iris/versions/1/predict", json=record).status_code == 200
    assert client.post("/v2/models/iris/versions/1/infer", json={{"inputs": [
        {{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3.0, 5.2, 2.3]}}
    ]}}).status_code == 200
    print("before", "shap" in sys.modules, "numba" in sys.modules)
    assert client.post("/models/iris/versions/1/explain", json=record).status_code == 200
    print("after", "shap" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "before False False" in done.stdout
    assert "after True" in done.stdout


def test_an_artifact_changed_on_disk_is_refused_until_it_is_restored(
    explain_models: Path, tmp_path: Path, data: dict[str, Dataset]
) -> None:
    shutil.copytree(explain_models / "iris" / "1", tmp_path / "iris" / "1")
    model_file = tmp_path / "iris" / "1" / "model.joblib"
    original = model_file.read_bytes()
    records = records_of(data["iris"], slice(0, 2))
    with TestClient(create_app(Settings(models_dir=tmp_path, inference_threads=1))) as client:
        model_file.write_bytes(original + b"tampered")
        refused = client.post("/models/iris/explain", json=records)
        assert refused.status_code == 409
        assert refused.json()["code"] == "not_explainable"
        assert "could not be read again" in refused.json()["error"]
        assert str(tmp_path) not in refused.json()["error"]
        model_file.write_bytes(original)
        assert client.post("/models/iris/explain", json=records).status_code == 200
