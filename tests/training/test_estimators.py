"""Every estimator on every task it does; hyperparameters; the loaded model predicts the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ESTIMATORS, build_pipeline, estimator_class, parse_params
from tabserve.training.pipeline import TrainRequest, train

SMALL: dict[str, dict[str, str | int | float | bool | None]] = {
    "logistic_regression": {},
    "ridge": {},
    "random_forest": {"n_estimators": 10},
    "hist_gradient_boosting": {"max_iter": 10},
}

COMBINATIONS = [
    ("classification", "logistic_regression", "LogisticRegression", ["prepare", "model"]),
    ("classification", "random_forest", "RandomForestClassifier", ["model"]),
    ("classification", "hist_gradient_boosting", "HistGradientBoostingClassifier", ["model"]),
    ("regression", "ridge", "Ridge", ["prepare", "model"]),
    ("regression", "random_forest", "RandomForestRegressor", ["model"]),
    ("regression", "hist_gradient_boosting", "HistGradientBoostingRegressor", ["model"]),
]


@pytest.mark.parametrize(
    ("task", "model", "class_name", "steps"),
    COMBINATIONS,
    ids=[f"{m}-{t}" for t, m, _, _ in COMBINATIONS],
)
def test_estimator_task_round_trip(
    task: str, model: str, class_name: str, steps: list[str], models_dir: Path
) -> None:
    data = load_bundled("wine" if task == "classification" else "diabetes")
    result = train(TrainRequest(data, model, models_dir, "m", params=SMALL[model], seed=3))
    manifest = result.manifest
    assert manifest.task == task
    assert manifest.estimator.kind == model
    assert manifest.estimator.class_name == class_name
    assert manifest.estimator.pipeline == steps
    assert manifest.estimator.params["random_state"] == 3
    for key, value in SMALL[model].items():
        assert manifest.estimator.params[key] == value
    assert type(result.pipeline[-1]).__name__ == class_name

    loaded = load_artifact(models_dir / "m" / "1")
    assert loaded.manifest == manifest
    assert loaded.path == models_dir / "m" / "1"
    assert type(loaded.estimator[-1]).__name__ == class_name
    np.testing.assert_array_equal(
        loaded.estimator.predict(data.features), result.pipeline.predict(data.features)
    )
    if task == "classification":
        np.testing.assert_array_equal(
            loaded.estimator.predict_proba(data.features),
            result.pipeline.predict_proba(data.features),
        )
        assert loaded.estimator.classes_.tolist() == ["class_0", "class_1", "class_2"]
        assert set(manifest.metrics) == {"accuracy", "f1_macro", "roc_auc"}
    else:
        assert set(manifest.metrics) == {"r2", "mae", "rmse"}


def test_defaults_are_recorded_and_params_override_them(models_dir: Path) -> None:
    data = load_bundled("iris")
    forest = train(TrainRequest(data, "random_forest", models_dir, "a")).manifest
    assert forest.estimator.params["n_estimators"] == 100
    assert forest.estimator.params["n_jobs"] == 1
    assert forest.estimator.params["random_state"] == 0
    logistic = train(TrainRequest(data, "logistic_regression", models_dir, "b")).manifest
    assert logistic.estimator.params["max_iter"] == 1000
    custom = train(
        TrainRequest(
            data,
            "random_forest",
            models_dir,
            "c",
            params={"n_estimators": 7, "random_state": 11, "max_depth": None},
            seed=5,
        )
    )
    assert custom.manifest.estimator.params["n_estimators"] == 7
    assert custom.manifest.estimator.params["random_state"] == 11
    assert custom.manifest.estimator.params["max_depth"] is None
    assert len(custom.pipeline[-1].estimators_) == 7


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["max_depth=8"], {"max_depth": 8}),
        (["alpha=0.5"], {"alpha": 0.5}),
        (["criterion=entropy"], {"criterion": "entropy"}),
        (["bootstrap=False", "warm_start=true"], {"bootstrap": False, "warm_start": True}),
        (["max_depth=None", "max_features=null"], {"max_depth": None, "max_features": None}),
        ([" max_depth = 3 "], {"max_depth": 3}),
        (["tol=1e-3"], {"tol": 0.001}),
        (["a=1", "a=2"], {"a": 2}),
        ([], {}),
    ],
)
def test_parse_params_types_values(pairs: list[str], expected: dict[str, object]) -> None:
    parsed = parse_params(pairs)
    assert parsed == expected
    assert [type(v) for v in parsed.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("pair", ["max_depth", "=3", ""])
def test_parse_params_refuses_a_pair_without_key_and_value(pair: str) -> None:
    with pytest.raises(TrainingError) as info:
        parse_params([pair])
    assert str(info.value) == f"hyperparameter {pair!r} is not KEY=VALUE"


def test_estimator_class_unknown_model() -> None:
    with pytest.raises(TrainingError) as info:
        estimator_class("svm", "classification")
    assert str(info.value) == (
        "unknown model 'svm'; expected one of: "
        "logistic_regression, ridge, random_forest, hist_gradient_boosting, "
        "xgboost, lightgbm, catboost"
    )


@pytest.mark.parametrize(
    ("model", "task", "fitting"),
    [
        (
            "ridge",
            "classification",
            "logistic_regression, random_forest, hist_gradient_boosting, "
            "xgboost, lightgbm, catboost",
        ),
        (
            "logistic_regression",
            "regression",
            "ridge, random_forest, hist_gradient_boosting, xgboost, lightgbm, catboost",
        ),
    ],
)
def test_estimator_class_task_mismatch(model: str, task: str, fitting: str) -> None:
    with pytest.raises(TrainingError) as info:
        estimator_class(model, task)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"model {model!r} does not do {task}; for {task} choose one of: {fitting}"
    )


def test_every_model_has_a_class_for_some_task() -> None:
    for kind in ESTIMATORS:
        classes = []
        for task in ("classification", "regression"):
            try:
                classes.append(estimator_class(kind, task))
            except TrainingError:
                continue
        assert classes, kind


def test_unknown_hyperparameter_is_named_with_the_accepted_ones() -> None:
    data = load_bundled("iris")
    with pytest.raises(TrainingError) as info:
        build_pipeline("random_forest", data, {"n_trees": 5, "depth": 2}, seed=0)
    message = str(info.value)
    assert message.startswith(
        "RandomForestClassifier has no hyperparameter 'depth', 'n_trees'; it takes: "
    )
    assert "max_depth" in message
    assert "n_estimators" in message
