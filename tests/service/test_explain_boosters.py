"""XGBoost, LightGBM and CatBoost explained through the real lifespan with their own exact
contributions: binary (one output: the positive class's log-odds), multi-class (one raw
score per class) and regression, on training's pipelines (one-hot categories, gaps).

Additivity is checked against each library's own raw score. LightGBM and CatBoost compute
in float64 (1e-9); XGBoost sums its leaves and contributions in float32, so its
attributions add up to within float32 rounding (1e-5 relative), which the answer states.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.estimators import ParamValue
from tabserve.training.pipeline import TrainRequest, train
from tests.conftest import write_mixed_csv
from tests.service.explain_support import assert_additive, model_outputs, records_of
from tests.service.test_compiled import write_mixed_regression_csv

SMALL: dict[str, dict[str, ParamValue]] = {
    "xgboost": {"n_estimators": 10, "max_depth": 3},
    "lightgbm": {"n_estimators": 10, "num_leaves": 8},
    "catboost": {"iterations": 10, "depth": 3},
}
METHOD = {
    "xgboost": ("xgboost_pred_contribs", 1e-5),
    "lightgbm": ("lightgbm_pred_contrib", 1e-9),
    "catboost": ("catboost_shap_values", 1e-9),
}
TASKS = {
    # data set -> (output space, outputs)
    "churn": ("margin", ["yes"]),
    "iris": ("margin", ["setosa", "versicolor", "virginica"]),
    "spend": ("value", ["spend"]),
}
CASES = [(library, data) for library in METHOD for data in TASKS]


@pytest.fixture(scope="module")
def booster_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    folder = tmp_path_factory.mktemp("explain-booster-data")
    return {
        "churn": load_csv(write_mixed_csv(folder / "churn.csv"), "churned"),
        "iris": load_bundled("iris"),
        "spend": load_csv(
            write_mixed_regression_csv(folder / "spend.csv", rows=300), "spend", task="regression"
        ),
    }


@pytest.fixture(scope="module")
def booster_explain_models(
    tmp_path_factory: pytest.TempPathFactory, booster_data: dict[str, Dataset]
) -> Path:
    root = tmp_path_factory.mktemp("explain-booster-models")
    for library, data in CASES:
        dataset = booster_data[data]
        train(TrainRequest(dataset, library, root, f"{library}-{data}", params=SMALL[library]))
    return root


@pytest.fixture(scope="module")
def booster_client(booster_explain_models: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=booster_explain_models, inference_threads=1)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(("library", "data"), CASES)
def test_booster_attributions_add_up_to_its_raw_score(
    booster_client: TestClient,
    booster_explain_models: Path,
    booster_data: dict[str, Dataset],
    library: str,
    data: str,
) -> None:
    name = f"{library}-{data}"
    records = records_of(booster_data[data], slice(0, 40))
    answer = booster_client.post(f"/models/{name}/explain", json=records)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    method, tolerance = METHOD[library]
    space, outputs = TASKS[data]
    assert (body["method"], body["output_space"], body["tolerance"]) == (method, space, tolerance)
    assert body["features"] == [c.name for c in booster_data[data].columns]
    assert [o["output"] for o in body["explanations"][0]["outputs"]] == outputs
    expected = model_outputs(booster_explain_models / name / "1", records, space)
    assert_additive(body, expected, tolerance)


def test_a_booster_is_explained_while_onnx_serves_it(booster_client: TestClient) -> None:
    engines = {m["name"]: m["versions"][0]["engine"] for m in booster_client.get("/models").json()}
    assert engines["lightgbm-churn"] == "onnx"
    assert engines["xgboost-iris"] == "onnx"
