"""Exported pipelines with missing values and categories, compiled: parity with the model.

A notebook pipeline fitted on a DataFrame with gaps: a `ColumnTransformer` with a
`OneHotEncoder(handle_unknown="ignore")` over string columns with NaN (so a NaN
category) and a `SimpleImputer` (or nothing: NaN reaching the trees), ending in a
forest or HistGradientBoosting. The compiled engine must serve it, and answer 200 rows
with missing values and categories the model never saw exactly as the model's own
`predict` / `predict_proba` do on the DataFrame. What ONNX cannot express serves with
scikit-learn, and the log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

import tabserve
from tabserve.service.app import create_app
from tabserve.service.core.engines import TOLERANCE, CompiledRuntime
from tabserve.service.settings import Settings

ROWS = 200
CITIES = ["berlin", "lisbon", "paris", "rome"]
PLANS = ["basic", "plus", "pro"]


def frame(rows: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    """Two numbers and two string columns, each with gaps; `unseen`: new categories too."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(np.float64),
            "income": rng.normal(3000, 800, rows).round(2),
            "city": rng.choice(CITIES, rows).astype(object),
            "plan": rng.choice(PLANS, rows).astype(object),
        }
    )
    data.loc[data.index % 11 == 0, "income"] = np.nan
    data.loc[data.index % 7 == 0, "age"] = np.nan
    data.loc[data.index % 13 == 0, "city"] = np.nan
    data.loc[data.index % 17 == 0, "plan"] = np.nan
    if unseen:
        data.loc[data.index % 5 == 0, "city"] = "madrid"
        data.loc[data.index % 9 == 0, "plan"] = "gold"
    return data


def encoded(numbers: Any) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("numbers", numbers, ["age", "income"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ]
    )


def imputed_numbers(final: Any) -> Pipeline:
    """The issue's pipeline: numbers imputed, categories one-hot with a NaN category."""
    return Pipeline([("prep", encoded(SimpleImputer())), ("model", final)])


def missing_to_trees(final: Any) -> Pipeline:
    """Numbers passed through with their NaN: the trees route the missing values."""
    return Pipeline([("prep", encoded("passthrough")), ("model", final)])


def imputed_categories(final: Any) -> Pipeline:
    """A missing category imputed first: the model sees NaN there, never None."""
    categories = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    prep = ColumnTransformer(
        [("numbers", SimpleImputer(), ["age", "income"]), ("categories", categories, ["city"])]
    )
    return Pipeline([("prep", prep), ("model", final)])


FOREST = {"n_estimators": 8, "max_depth": 6, "random_state": 0}
CASES: dict[str, tuple[Callable[[Any], Pipeline], Any]] = {
    "forest-imputed": (imputed_numbers, RandomForestClassifier(**FOREST)),
    "forest-nan": (missing_to_trees, RandomForestClassifier(**FOREST)),
    "forest-reg-nan": (missing_to_trees, RandomForestRegressor(**FOREST)),
    "extra-trees-nan": (missing_to_trees, ExtraTreesClassifier(**FOREST)),
    "hgb-imputed": (imputed_numbers, HistGradientBoostingClassifier(max_iter=15)),
    "hgb-nan": (missing_to_trees, HistGradientBoostingClassifier(max_iter=15)),
    "hgb-reg-nan": (missing_to_trees, HistGradientBoostingRegressor(max_iter=15)),
    "forest-category-imputed": (imputed_categories, RandomForestClassifier(**FOREST)),
}


def target(data: pd.DataFrame, classify: bool) -> pd.Series:
    score = data["age"].fillna(40) / 10 + (data["city"] == "paris") * 3 + (data["plan"] == "pro")
    if classify:
        return pd.Series(np.where(score > 6, "churned", "stayed"), name="churn")
    return pd.Series(score * 10.0, name="spend")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every case fitted on 400 rows with gaps and exported from its DataFrame."""
    models = tmp_path_factory.mktemp("compiled-missing")
    train = frame(400, seed=0)
    fitted = {}
    for name, (pipeline, final) in CASES.items():
        classify = hasattr(final, "predict_proba")
        model = pipeline(final).fit(train, target(train, classify))
        tabserve.export(model, train, target(train, classify), name=name, models_dir=models)
        fitted[name] = model
    return models, fitted


def served_rows(data: pd.DataFrame) -> npt.NDArray[Any]:
    """Rows as validation hands them over: floats (NaN missing), strings (None missing)."""
    rows = data.to_numpy(dtype=object)
    rows[pd.isna(data).to_numpy()] = None
    rows[:, :2] = data[["age", "income"]].to_numpy(dtype=np.float64).astype(object)
    return rows


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_answers_rows_with_gaps_and_unseen_categories_like_the_model(
    name: str, exported: tuple[Path, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    models, fitted = exported
    model = fitted[name]
    runtime = CompiledRuntime(models / name / "1")
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime.load()
    assert runtime.engine == "onnx", caplog.text
    ask = frame(ROWS, seed=7, unseen=True)
    got = runtime.predict(served_rows(ask))
    if hasattr(model, "predict_proba"):
        assert got.predict.tolist() == model.predict(ask).tolist()
        assert got.proba is not None
        np.testing.assert_allclose(
            got.proba, model.predict_proba(ask), rtol=0, atol=TOLERANCE["onnx"]
        )
    else:
        expected = model.predict(ask)
        np.testing.assert_allclose(got.predict, expected, rtol=TOLERANCE["onnx"], atol=1e-3)


def test_the_served_api_answers_rows_with_gaps_from_the_compiled_engine(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    models, fitted = exported
    ask = frame(ROWS, seed=7)
    sent = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in ask.to_dict(orient="records")
    ]
    with TestClient(create_app(Settings(models_dir=models, max_rows=ROWS))) as client:
        for name in ("forest-nan", "hgb-imputed"):
            assert client.get(f"/v2/models/{name}").json()["parameters"]["engine"] == "onnx"
            answers = client.post(f"/models/{name}/predict", json=sent).json()["predictions"]
            assert [a["prediction"] for a in answers] == fitted[name].predict(ask).tolist()
            proba = [[a["probabilities"][c] for c in ("churned", "stayed")] for a in answers]
            np.testing.assert_allclose(
                proba, fitted[name].predict_proba(ask), rtol=0, atol=TOLERANCE["onnx"]
            )


def test_native_categories_serve_with_scikit_learn_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train = frame(400, seed=0)[["age", "income", "city"]]
    train["city"] = train["city"].astype(pd.CategoricalDtype(CITIES))
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    model.fit(train, target(frame(400, seed=0), classify=True))
    tabserve.export(model, train, name="native", models_dir=tmp_path)
    runtime = CompiledRuntime(tmp_path / "native" / "1")
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime.load()
    assert runtime.engine == "sklearn"
    assert [r.getMessage() for r in caplog.records if r.name == "tabserve.models"] == [
        "model native version 1: HistGradientBoostingClassifier with native categorical "
        "features; serving with scikit-learn"
    ]
