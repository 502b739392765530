"""`--model xgboost|lightgbm|catboost`: trained in the exported pipeline, like the others."""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.store import load_artifact
from tabserve.training import estimators
from tabserve.training.datasets import load_bundled, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.pipeline import TrainRequest, train
from tests.training.conftest import CliRunner

SMALL: dict[str, dict[str, str | int | float | bool | None]] = {
    "xgboost": {"n_estimators": 5, "max_depth": 3},
    "lightgbm": {"n_estimators": 5, "num_leaves": 7},
    "catboost": {"iterations": 5, "depth": 3},
}
CLASSES = {
    ("xgboost", "classification"): "XGBClassifier",
    ("xgboost", "regression"): "XGBRegressor",
    ("lightgbm", "classification"): "LGBMClassifier",
    ("lightgbm", "regression"): "LGBMRegressor",
    ("catboost", "classification"): "CatBoostClassifier",
    ("catboost", "regression"): "CatBoostRegressor",
}


@pytest.mark.parametrize(("model", "task"), list(CLASSES), ids=[f"{m}-{t}" for m, t in CLASSES])
def test_booster_task_round_trip(model: str, task: str, models_dir: Path) -> None:
    data = load_bundled("wine" if task == "classification" else "diabetes")
    result = train(TrainRequest(data, model, models_dir, "m", params=SMALL[model], seed=3))
    manifest = result.manifest
    assert manifest.task == task
    assert manifest.estimator.kind == model
    assert manifest.estimator.class_name == CLASSES[model, task]
    assert manifest.estimator.pipeline == ["model"]
    assert manifest.estimator.supports_missing is True
    assert manifest.estimator.params["random_state"] == 3
    for key, value in SMALL[model].items():
        assert manifest.estimator.params[key] == value

    loaded = load_artifact(models_dir / "m" / "1")
    assert loaded.manifest == manifest
    np.testing.assert_array_equal(
        loaded.estimator.predict(data.features), result.pipeline.predict(data.features)
    )
    if task == "classification":
        # The dataset's own labels, even for XGBoost, which learns only 0..n-1.
        assert loaded.estimator.classes_.tolist() == ["class_0", "class_1", "class_2"]
        assert manifest.target.classes == ["class_0", "class_1", "class_2"]
        np.testing.assert_array_equal(
            loaded.estimator.predict_proba(data.features),
            result.pipeline.predict_proba(data.features),
        )
        assert set(manifest.metrics) == {"accuracy", "f1_macro", "roc_auc"}
        assert manifest.metrics["accuracy"] > 0.8
    else:
        assert set(manifest.metrics) == {"r2", "mae", "rmse"}
        assert manifest.metrics["r2"] > 0.0


def test_xgboost_classifier_is_wrapped_to_learn_string_labels(models_dir: Path) -> None:
    result = train(TrainRequest(load_bundled("iris"), "xgboost", models_dir, "x"))
    final = result.pipeline[-1]
    assert isinstance(final, LabelEncodedClassifier)
    assert type(final.estimator_).__name__ == "XGBClassifier"
    assert final.estimator_.classes_.tolist() == [0, 1, 2]
    assert final.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    # defaults recorded as for the scikit-learn estimators
    assert result.manifest.estimator.params["n_estimators"] == 100
    assert result.manifest.estimator.params["n_jobs"] == 1
    # the library inside the wrapper is recorded, so the loader checks its version
    assert result.manifest.environment.libraries == {"xgboost": metadata.version("xgboost")}


@pytest.mark.parametrize("model", list(SMALL))
def test_categories_are_encoded_inside_the_pipeline_and_gaps_reach_the_booster(
    model: str, models_dir: Path, people_csv: Path
) -> None:
    data = load_csv(people_csv, "label")
    result = train(TrainRequest(data, model, models_dir, "people", params=SMALL[model]))
    assert result.manifest.estimator.pipeline == ["prepare", "model"]
    prepare = result.pipeline.named_steps["prepare"]
    # numbers pass through with their NaN (the booster handles them), city is one-hot
    assert [(name, part) for name, part, _ in prepare.transformers][:1] == [
        ("number", "passthrough")
    ]
    assert prepare.transformers[1][0] == "category"
    rows = np.array([[np.nan, None, 1500.0], [30.0, "rome", np.nan]], dtype=object)
    assert set(result.pipeline.predict(rows).ravel().tolist()) <= {"yes", "no"}
    assert result.pipeline.predict_proba(rows).shape == (2, 2)


def test_catboost_hyperparameters_are_checked_against_its_constructor(models_dir: Path) -> None:
    # CatBoost's get_params() lists only what was set: the constructor names the rest.
    data = load_bundled("iris")
    with pytest.raises(TrainingError) as info:
        estimators.build_pipeline("catboost", data, {"n_trees_total": 3}, seed=0)
    message = str(info.value)
    assert message.startswith("CatBoostClassifier has no hyperparameter 'n_trees_total'; ")
    assert "depth" in message
    assert "l2_leaf_reg" in message
    built = estimators.build_pipeline("catboost", data, {"depth": 2, "iterations": 3}, seed=0)
    assert built.params["depth"] == 2
    assert built.params["thread_count"] == 1


@pytest.mark.parametrize(
    ("model", "param", "library_says"),
    [
        ("catboost", "depth=x", 'Can\'t parse parameter "depth" with value: "x"'),
        ("lightgbm", "num_leaves=1", "num_leaves"),
        ("xgboost", "max_depth=-3", "max_depth"),
    ],
)
def test_a_value_the_library_refuses_is_a_training_error(
    model: str, param: str, library_says: str, call_cli: CliRunner, tmp_path: Path
) -> None:
    result = call_cli(
        "--dataset", "diabetes", "--model", model, "--param", param,
        "--models-dir", str(tmp_path / "models"), "--quiet",
    )  # fmt: skip
    assert result.code != 0
    regressor = CLASSES[model, "regression"]
    assert f"error: cannot fit {regressor} on sklearn:diabetes: " in result.stderr
    assert library_says in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models" / "diabetes").exists()


def test_a_missing_library_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without_xgboost(name: str, package: str | None = None) -> ModuleType:
        if name.split(".")[0] == "xgboost":
            raise ModuleNotFoundError("No module named 'xgboost'", name="xgboost")
        return real(name, package)

    monkeypatch.setattr(estimators.importlib, "import_module", without_xgboost)
    with pytest.raises(TrainingError) as info:
        estimators.estimator_class("xgboost", "classification")
    assert str(info.value) == (
        "model 'xgboost' needs the xgboost package, which is not installed here: "
        "pip install 'tabserve[xgboost]'"
    )


def test_the_cli_trains_a_booster_that_the_service_can_load(
    call_cli: CliRunner, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    result = call_cli(
        "--dataset", "iris", "--model", "lightgbm", "--param", "n_estimators=4",
        "--models-dir", str(models), "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    loaded = load_artifact(models / "iris" / "1")
    assert loaded.manifest.estimator.class_name == "LGBMClassifier"
    assert loaded.manifest.estimator.params["n_estimators"] == 4
    assert not (tmp_path / "catboost_info").exists()


@pytest.mark.parametrize(
    ("model", "booster"),
    [
        ("xgboost", "xgboost.core.Booster"),
        ("lightgbm", "lightgbm.basic.Booster"),
        ("catboost", "catboost.core.CatBoostClassifier"),
    ],
)
def test_skops_refuses_a_booster_by_name_and_leaves_nothing_behind(
    model: str, booster: str, call_cli: CliRunner, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    result = call_cli(
        "--dataset", "iris", "--model", model, "--format", "skops",
        "--models-dir", str(models), "--quiet",
    )  # fmt: skip
    assert result.code != 0
    assert "error: cannot export in skops format: the model holds " in result.stderr
    assert booster in result.stderr
    assert result.stderr.rstrip().endswith("use --format joblib")
    assert not (models / "iris").exists()
