"""XGBoost, LightGBM and CatBoost served through the real lifespan and the compiled engines.

Each library's classifier and regressor is trained by `tabserve.training` on mixed data
(a categorical feature and missing values), served by an app with the default engine
choice, and its answers through the records, V2 and V1 APIs are compared with the
model's own `predict` / `predict_proba` on 200 rows. The compiled graphs must pass the
load-time parity check (the engine is ONNX, not scikit-learn's fallback), and drift
reports PSI for every feature.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.store import load_artifact, read_manifest
from tabserve.service.app import create_app
from tabserve.service.core.engines import (
    TOLERANCE,
    CompiledRuntime,
    UnsupportedModelError,
    compile_model,
    engine_for,
)
from tabserve.service.core.engines import boosters as boosters_module
from tabserve.service.core.engines import compiled as compiled_module
from tabserve.service.core.engines import onnx as onnx_module
from tabserve.service.core.engines.cache import CACHE_DIR, RECORD_FILE
from tabserve.service.core.engines.compiled import check_parity
from tabserve.service.core.runtime import Prediction
from tabserve.service.settings import Settings
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.estimators import ParamValue
from tabserve.training.pipeline import TrainRequest, train
from tests.conftest import write_mixed_csv
from tests.service.test_compiled import write_mixed_regression_csv

LIBRARIES = ["xgboost", "lightgbm", "catboost"]
# Few trees keep the suite fast; the benchmark measures 100.
SMALL: dict[str, dict[str, ParamValue]] = {
    "xgboost": {"n_estimators": 10, "max_depth": 3},
    "lightgbm": {"n_estimators": 10, "num_leaves": 8},
    "catboost": {"iterations": 10, "depth": 3},
}
ROWS = 200
MODELS = [(kind, task) for kind in LIBRARIES for task in ("classification", "regression")]


def model_name(kind: str, task: str) -> str:
    return f"{kind}-{task}"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """Mixed data per task: numbers, one categorical feature, gaps in both."""
    folder = tmp_path_factory.mktemp("booster-data")
    return {
        "classification": load_csv(write_mixed_csv(folder / "churn.csv"), "churned"),
        "regression": load_csv(
            write_mixed_regression_csv(folder / "spend.csv", rows=300), "spend", task="regression"
        ),
    }


@pytest.fixture(scope="module")
def booster_models(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Dataset]) -> Path:
    """One trained version per library and task, under one models directory."""
    root = tmp_path_factory.mktemp("booster-models")
    for kind, task in MODELS:
        train(TrainRequest(data[task], kind, root, model_name(kind, task), params=SMALL[kind]))
    return root


@pytest.fixture(scope="module")
def booster_client(booster_models: Path) -> Iterator[TestClient]:
    """The real app over those models, lifespan running, default (auto) engine choice."""
    settings = Settings(models_dir=booster_models, inference_threads=1)
    with TestClient(create_app(settings)) as client:
        yield client


def json_value(value: Any) -> Any:
    """A feature value as JSON: NaN and None become null."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def own_answers(folder: Path, rows: npt.NDArray[Any]) -> tuple[list[Any], Any]:
    """The pickled pipeline's own predict, and predict_proba where it has one."""
    pipeline = load_artifact(folder).estimator
    labels = np.ravel(pipeline.predict(rows)).tolist()  # CatBoost multiclass: [rows, 1]
    proba = pipeline.predict_proba(rows) if hasattr(pipeline, "predict_proba") else None
    return labels, proba


@pytest.mark.parametrize(("kind", "task"), MODELS, ids=[model_name(*m) for m in MODELS])
def test_every_api_answers_like_the_model_itself(
    booster_client: TestClient,
    booster_models: Path,
    data: dict[str, Dataset],
    kind: str,
    task: str,
) -> None:
    name = model_name(kind, task)
    folder = booster_models / name / "1"
    meta = booster_client.get(f"/v2/models/{name}/versions/1")
    assert meta.status_code == 200
    assert meta.json()["parameters"]["engine"] == "onnx"
    dataset = data[task]
    rows = dataset.features[:ROWS]
    names = [c.name for c in dataset.columns]
    labels, proba = own_answers(folder, rows)
    tolerance = TOLERANCE["onnx"]
    records = [{n: json_value(v) for n, v in zip(names, row, strict=True)} for row in rows]

    answer = booster_client.post(f"/models/{name}/predict", json=records)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    served = [p["prediction"] for p in predictions]
    if task == "classification":
        assert served == labels
        classes = read_manifest(folder).target.classes or []
        assert classes == ["no", "yes"]
        served_proba = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
        assert np.abs(served_proba - proba).max() <= tolerance
    else:
        assert_close_values(served, labels, tolerance)

    # V2 tensors carry no nulls: 200 complete rows, one tensor per feature.
    complete = dataset.features[
        [not any(json_value(v) is None for v in r) for r in dataset.features]
    ]
    complete = complete[:ROWS]
    assert len(complete) == ROWS
    complete_labels, complete_proba = own_answers(folder, complete)
    inputs = [
        {
            "name": n,
            "shape": [ROWS],
            "datatype": "BYTES" if c.type == "category" else "FP64",
            "data": complete[:, i].tolist(),
        }
        for i, (n, c) in enumerate(zip(names, dataset.columns, strict=True))
    ]
    answer = booster_client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    if task == "classification":
        assert outputs["predict"]["data"] == complete_labels
        v2_proba = np.array(outputs["predict_proba"]["data"]).reshape(ROWS, 2)
        assert np.abs(v2_proba - complete_proba).max() <= tolerance
    else:
        assert set(outputs) == {"predict"}
        assert_close_values(outputs["predict"]["data"], complete_labels, tolerance)

    answer = booster_client.post(f"/v1/models/{name}:predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    if task == "classification":
        assert answer.json()["predictions"] == labels
    else:
        assert_close_values(answer.json()["predictions"], labels, tolerance)

    report = booster_client.get(f"/models/{name}/drift").json()
    assert report["rows"] == 3 * ROWS
    assert [f["name"] for f in report["features"]] == names
    for feature in report["features"]:
        # The training rows themselves: a PSI is reported, and it says nothing drifted.
        assert 0.0 <= feature["psi"] < 0.2, feature
    # Ten shallow trees answer nearer the mean than the training target spreads: the
    # prediction's PSI is reported, its size is the model's, not the service's.
    assert np.isfinite(report["prediction"]["psi"])
    assert report["prediction"]["psi"] >= 0.0


def assert_close_values(served: list[float], expected: list[float], tolerance: float) -> None:
    """Regression values within the engines' relative tolerance (float32 leaves)."""
    got, want = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tolerance * scale


# --- the compiled engine on its own --------------------------------------------------


@pytest.mark.parametrize(("kind", "task"), MODELS, ids=[model_name(*m) for m in MODELS])
def test_compiled_engine_is_onnx_and_matches_on_fresh_rows(
    booster_models: Path,
    data: dict[str, Dataset],
    kind: str,
    task: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = booster_models / model_name(kind, task) / "1"
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = CompiledRuntime(folder)
        runtime.load()
    assert runtime.engine == "onnx"
    [line] = [r.getMessage() for r in caplog.records if "compiled for onnx" in r.getMessage()]
    assert "and at split thresholds" in line
    rows = data[task].features
    # Rows with every value missing go down each tree's default branch.
    empty = np.array([[np.nan, None, np.nan]] * 2, dtype=object)
    labels, proba = own_answers(folder, np.vstack([rows, empty]))
    answer = runtime.predict(np.vstack([rows, empty]))
    if task == "classification":
        assert answer.predict.tolist() == labels
        assert answer.proba is not None
        assert np.abs(answer.proba - proba).max() <= TOLERANCE["onnx"]
        np.testing.assert_allclose(answer.proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    else:
        assert_close_values(answer.predict.tolist(), labels, TOLERANCE["onnx"])
    record = (folder / CACHE_DIR / RECORD_FILE).read_text()
    assert f'"{kind}"' in record  # the library's version keys the cached graph


@pytest.mark.parametrize("kind", LIBRARIES)
def test_multiclass_string_labels_compile(tmp_path: Path, kind: str) -> None:
    train(TrainRequest(load_bundled("wine"), kind, tmp_path, "wine", params=SMALL[kind]))
    folder = tmp_path / "wine" / "1"
    runtime = CompiledRuntime(folder)
    runtime.load()
    assert runtime.engine == "onnx"
    rows = load_bundled("wine").features
    labels, proba = own_answers(folder, rows)
    answer = runtime.predict(rows)
    assert answer.predict.tolist() == labels
    assert set(labels) <= {"class_0", "class_1", "class_2"}
    assert answer.proba is not None
    assert np.abs(answer.proba - proba).max() <= TOLERANCE["onnx"]


def test_lightgbm_without_its_exact_thresholds_fails_parity_at_the_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # LightGBM compares float64 features with float64 thresholds; a float32 graph
    # parts ways with it beside a split, and the split probes must catch that.
    train(TrainRequest(load_bundled("diabetes"), "lightgbm", tmp_path, "lgbm"))
    exact = onnx_module._replace_thresholds

    def rounded(graph: Any, thresholds: npt.NDArray[np.float64]) -> None:
        exact(graph, thresholds.astype(np.float32).astype(np.float64))

    monkeypatch.setattr(onnx_module, "_replace_thresholds", rounded)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = CompiledRuntime(tmp_path / "lgbm" / "1")
        runtime.load()
    assert runtime.engine == "sklearn"
    [line] = [r.getMessage() for r in caplog.records if "with scikit-learn" in r.getMessage()]
    assert line.startswith("model lgbm version 1: parity check: ")
    assert "values differ from scikit-learn's" in line


@pytest.mark.parametrize("kind", LIBRARIES)
def test_the_second_load_reuses_the_cached_graph(
    booster_models: Path,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = booster_models / model_name(kind, "classification") / "1"
    CompiledRuntime(folder).load()  # converts, or reuses what the app's load cached

    def refuse(model: Any) -> bytes:
        raise AssertionError("a load with a valid cache must not convert")

    monkeypatch.setattr(compiled_module, "convert", refuse)
    caplog.clear()  # the first load's line, if an app set the logger to INFO
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = CompiledRuntime(folder)
        runtime.load()
    assert runtime.engine == "onnx"
    [line] = [r.getMessage() for r in caplog.records if "compiled for onnx" in r.getMessage()]
    assert f"graph reused from {folder / CACHE_DIR}" in line


def test_a_booster_outside_a_pipeline_compiles_too() -> None:
    # A model exported from a notebook need not be a Pipeline: the estimator alone.
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    catboost = pytest.importorskip("catboost")
    data = load_bundled("breast_cancer")
    x, y = data.features.astype(np.float64), (data.target == data.target[0]).astype(int)
    for model in (
        xgboost.XGBClassifier(n_estimators=5, n_jobs=1),
        xgboost.XGBRFClassifier(n_estimators=5, n_jobs=1),  # a subclass converts too
        lightgbm.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1),
        catboost.CatBoostClassifier(
            iterations=5, thread_count=1, verbose=False, allow_writing_files=False
        ),
    ):
        model.fit(x, y)
        compiled = compile_model(model, "onnx", classify=True)
        expected = model.predict_proba(x)

        def own(rows: npt.NDArray[Any], model: Any = model) -> Prediction:
            proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
            return Prediction(np.asarray(model.classes_)[proba.argmax(axis=1)], proba)

        assert check_parity(compiled, own, x, TOLERANCE["onnx"], classify=True) is None
        answer = compiled.predict(x)
        assert answer.proba is not None
        assert np.abs(answer.proba - expected).max() <= TOLERANCE["onnx"]
        assert answer.predict.tolist() == np.ravel(model.predict(x)).tolist()


def test_only_the_scikit_learn_api_classifiers_and_regressors_get_an_engine() -> None:
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    catboost = pytest.importorskip("catboost")
    for model in (xgboost.XGBClassifier(), xgboost.XGBRFRegressor(), lightgbm.LGBMRegressor()):
        assert engine_for(model) == "onnx"
    assert engine_for(LabelEncodedClassifier(catboost.CatBoostClassifier())) == "onnx"
    for ranker in (xgboost.XGBRanker(), lightgbm.LGBMRanker(), catboost.CatBoostRanker()):
        with pytest.raises(UnsupportedModelError, match=f"{type(ranker).__name__} has no"):
            engine_for(ranker)


def test_without_onnxmltools_a_booster_serves_natively_and_the_log_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    train(TrainRequest(load_bundled("iris"), "xgboost", tmp_path, "xgb", params=SMALL["xgboost"]))

    def missing(model: Any, library: str) -> None:
        raise ModuleNotFoundError("No module named 'onnxmltools'", name="onnxmltools")

    monkeypatch.setattr(boosters_module, "_register_converter", missing)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = CompiledRuntime(tmp_path / "xgb" / "1")
        runtime.load()
    assert runtime.engine == "sklearn"
    [line] = [r for r in caplog.records if "with scikit-learn" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        "model xgb version 1: XGBClassifier needs onnxmltools to compile: "
        "pip install 'tabserve[xgboost]'; serving with scikit-learn"
    )
    rows = load_bundled("iris").features
    labels, proba = own_answers(tmp_path / "xgb" / "1", rows)
    answer = runtime.predict(rows)
    assert answer.predict.tolist() == labels
    assert answer.proba is not None
    np.testing.assert_array_equal(answer.proba, proba)
    assert not (tmp_path / "xgb" / "1" / CACHE_DIR).exists()
