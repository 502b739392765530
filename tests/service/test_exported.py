"""Models fitted on a DataFrame in "a notebook", written by `tabserve.export`, served for real.

Each family is fitted on a pandas DataFrame with numbers, categories and missing values,
exported, and served through the real lifespan; every API (records, V2, V1, WebSocket)
must answer 200 rows exactly as the model's own `predict` / `predict_proba` do (within
the compiled engine's float32 tolerance where it serves), and drift reports PSI for the
exported version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    StandardScaler,
    TargetEncoder,
)

import tabserve
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

ROWS = 200
CITIES = ["berlin", "lisbon", "paris", "rome"]
PLANS = ["basic", "plus", "pro"]
# The compiled engines compute in float32 (ONNX) or repeat scikit-learn's float64 maths.
TOLERANCE = 1e-5


def frame(rows: int, seed: int) -> pd.DataFrame:
    """Numbers (an int and a float with gaps), two string columns with gaps, a bool."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(3000, 800, rows).round(2),
            "city": rng.choice(CITIES, rows).astype(object),
            "plan": rng.choice(PLANS, rows).astype(object),
            "member": rng.random(rows) < 0.4,
        }
    )
    data.loc[data.index % 11 == 0, "income"] = np.nan
    data.loc[data.index % 13 == 0, "city"] = np.nan
    return data


def numeric(data: pd.DataFrame) -> pd.DataFrame:
    return data[["age", "income"]].fillna({"income": 3000.0})


def labels(data: pd.DataFrame) -> pd.Series:
    score = (data["age"] > 50).astype(int) + (data["city"] == "paris") + data["member"]
    return pd.Series(np.where(score >= 1, "churned", "stayed"), name="churn")


def values(data: pd.DataFrame) -> pd.Series:
    noise = np.random.default_rng(1).normal(0, 5, len(data))
    spend = data["age"] * 2.0 + data["income"].fillna(3000) / 100 + noise
    return pd.Series(spend + np.where(data["city"] == "paris", 30.0, 0.0), name="spend")


def mixed_pipeline(final: Any) -> Pipeline:
    """Every preprocessing step a notebook pipeline typically holds."""
    prep = ColumnTransformer(
        [
            (
                "numbers",
                make_pipeline(SimpleImputer(), StandardScaler(), PolynomialFeatures(2)),
                ["age", "income"],
            ),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city"],
            ),
            (
                "plan",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()),
                ["plan"],
            ),
            ("plan_rate", TargetEncoder(), ["plan"]),
            ("member", MinMaxScaler(), ["member"]),  # a bool: never missing
        ]
    )
    return Pipeline([("prep", prep), ("model", final)])


def named_columns_pipeline(final: Any) -> Pipeline:
    """Steps the compiled engine re-evaluates, columns chosen by name."""
    prep = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            (
                "cats",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city", "plan"],
            ),
        ]
    )
    return Pipeline([("prep", prep), ("model", final)])


@dataclass(frozen=True)
class Case:
    """One family and task: the estimator, the columns it takes, the engine that serves it."""

    name: str
    model: Any
    columns: Callable[[pd.DataFrame], pd.DataFrame]
    classify: bool
    engine: str


def everything(data: pd.DataFrame) -> pd.DataFrame:
    return data


def no_member(data: pd.DataFrame) -> pd.DataFrame:
    return data.drop(columns="member")


def numbers_with_gaps(data: pd.DataFrame) -> pd.DataFrame:
    return data[["age", "income"]]


def with_category_dtype(data: pd.DataFrame) -> pd.DataFrame:
    out = data[["age", "income", "city"]].copy()
    out["city"] = out["city"].astype(pd.CategoricalDtype(CITIES))
    return out


# The engine is what the load-time parity check settles on. The mixed pipelines hold steps
# the compiled preparation does not re-evaluate (PolynomialFeatures, OrdinalEncoder,
# TargetEncoder, MinMaxScaler) and HistGradientBoosting's native categories have no ONNX
# conversion: those serve with scikit-learn. Missing values reach the forests' trees and
# missing categories the imputers as the model's DataFrame holds them (NaN), compiled.
LOGISTIC = LogisticRegression(max_iter=500)
FOREST = {"n_estimators": 5, "max_depth": 6, "random_state": 0}
CASES = [
    Case("pipeline-clf", mixed_pipeline(LOGISTIC), everything, True, "sklearn"),
    Case("pipeline-reg", mixed_pipeline(Ridge()), everything, False, "sklearn"),
    Case("named-clf", named_columns_pipeline(LOGISTIC), no_member, True, "numpy"),
    Case("forest-clf", RandomForestClassifier(**FOREST), numeric, True, "onnx"),
    Case("forest-reg", RandomForestRegressor(**FOREST), numeric, False, "onnx"),
    Case(
        "hgb-clf",
        HistGradientBoostingClassifier(max_iter=10, categorical_features="from_dtype"),
        with_category_dtype,
        True,
        "sklearn",
    ),
    Case("hgb-reg", HistGradientBoostingRegressor(max_iter=10), numbers_with_gaps, False, "onnx"),
    Case("logistic-clf", LOGISTIC, numeric, True, "numpy"),
    Case("linear-reg", LinearRegression(), numeric, False, "numpy"),
]


@dataclass(frozen=True)
class Exported:
    """A fitted model with the rows it is asked about."""

    model: Any
    rows: pd.DataFrame
    classify: bool
    engine: str


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Exported]]:
    """Every case fitted on 400 rows and exported from its DataFrame with its target."""
    models = tmp_path_factory.mktemp("exported")
    train, ask = frame(400, seed=0), frame(ROWS, seed=7)
    out = {}
    for case in CASES:
        x = case.columns(train)
        y = labels(train) if case.classify else values(train)
        model = clone(case.model).fit(x, y)
        manifest = tabserve.export(model, x, y, name=case.name, models_dir=models)
        assert manifest.version == 1
        out[case.name] = Exported(model, case.columns(ask), case.classify, case.engine)
    return models, out


@pytest.fixture(scope="module")
def served(exported: tuple[Path, dict[str, Exported]]) -> Iterator[TestClient]:
    models, _ = exported
    settings = Settings(models_dir=models, inference_threads=2, max_rows=ROWS)
    with TestClient(create_app(settings)) as client:
        yield client


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: numbers, categories as strings, null for missing."""
    out = []
    for row in rows.to_dict(orient="records"):
        out.append({k: _wire(v) for k, v in row.items()})
    return out


def _wire(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check(case: Exported, rows: pd.DataFrame, answers: list[Any], proba: Any) -> None:
    if case.classify:
        assert answers == case.model.predict(rows).tolist()
        np.testing.assert_allclose(proba, case.model.predict_proba(rows), rtol=0, atol=TOLERANCE)
    else:
        expected = case.model.predict(rows)
        np.testing.assert_allclose(answers, expected, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_every_api_answers_like_the_model(
    name: str, served: TestClient, exported: tuple[Path, dict[str, Exported]]
) -> None:
    case = exported[1][name]
    classes = [str(c) for c in case.model.classes_] if case.classify else []
    sent = records(case.rows)

    info = served.get(f"/v2/models/{name}").json()
    assert info["parameters"]["engine"] == case.engine

    body = served.post(f"/models/{name}/predict", json=sent).json()
    answers = body["predictions"]
    proba = np.array([[a["probabilities"][c] for c in classes] for a in answers])
    _check(case, case.rows, [a["prediction"] for a in answers], proba)

    v1 = served.post(f"/v1/models/{name}:predict", json={"instances": sent}).json()
    _check(case, case.rows, v1["predictions"], proba)

    # V2 tensors carry no missing values: the rows without any
    complete = case.rows.dropna()
    inputs = [_tensor(column, complete[column]) for column in complete.columns]
    v2 = served.post(f"/v2/models/{name}/infer", json={"inputs": inputs}).json()
    outputs = {o["name"]: o for o in v2["outputs"]}
    v2_proba = None
    if case.classify:
        v2_proba = np.array(outputs["predict_proba"]["data"]).reshape(len(complete), len(classes))
    _check(case, complete, outputs["predict"]["data"], v2_proba)

    with served.websocket_connect(f"/models/{name}/stream") as ws:
        ws.send_json({"request_id": "all", "records": sent})
        streamed = ws.receive_json()["predictions"]
    assert streamed == answers


def _tensor(name: str, column: pd.Series) -> dict[str, Any]:
    data = [_wire(v) for v in column.tolist()]
    numeric = pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
        column.dtype
    )
    if numeric:
        floats = [None if v is None else float(v) for v in data]
        return {"name": name, "shape": [len(data)], "datatype": "FP64", "data": floats}
    return {"name": name, "shape": [len(data)], "datatype": "BYTES", "data": data}


@pytest.mark.parametrize("name", ["pipeline-clf", "hgb-reg"])
def test_drift_reports_psi_for_the_exported_version(
    name: str, served: TestClient, exported: tuple[Path, dict[str, Exported]]
) -> None:
    case = exported[1][name]
    assert served.post(f"/models/{name}/predict", json=records(case.rows)).status_code == 200
    report = served.get(f"/models/{name}/drift").json()
    assert (report["model"], report["version"]) == (name, 1)
    assert report["rows"] >= ROWS
    by_name = {f["name"]: f for f in report["features"]}
    assert list(by_name) == list(case.rows.columns)
    assert all(isinstance(f["psi"], float) for f in report["features"])
    # same distribution as the reference sample: nothing drifts
    assert by_name["age"]["psi"] < 0.2
    assert report["prediction"]["psi"] is not None
