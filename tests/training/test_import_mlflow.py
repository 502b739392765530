"""`tabserve import MLFLOW_MODEL_DIR`: models saved here with the real mlflow, one per flavour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from tabserve.artifact.store import load_artifact
from tabserve.service import cli
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

mlflow = pytest.importorskip("mlflow")
from mlflow.models import infer_signature  # noqa: E402 (after the skip)


def sample(rows: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"age": rng.uniform(18, 80, rows), "income": rng.normal(3000, 500, rows)})
    return x, pd.Series((x["age"] > 45).astype(int), name="old")


def pins(*libraries: Any) -> list[str]:
    """requirements.txt lines: given, MLflow skips inferring them in a subprocess (slow)."""
    names = {"sklearn": "scikit-learn"}
    return [f"{names.get(m.__name__, m.__name__)}=={m.__version__}" for m in (sklearn, *libraries)]


def _sklearn(x: pd.DataFrame, y: pd.Series, folder: Path) -> Any:
    model = LogisticRegression().fit(x, y)
    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(5),
        pip_requirements=pins(),
    )
    return model


def _xgboost(x: pd.DataFrame, y: pd.Series, folder: Path) -> Any:
    xgboost = pytest.importorskip("xgboost")
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
    mlflow.xgboost.save_model(
        model,
        folder,
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(5),
        pip_requirements=pins(xgboost),
    )
    return model


def _lightgbm(x: pd.DataFrame, y: pd.Series, folder: Path) -> Any:
    lightgbm = pytest.importorskip("lightgbm")
    model = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, n_jobs=1, verbose=-1)
    model.fit(x, y)
    mlflow.lightgbm.save_model(
        model,
        folder,
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(5),
        pip_requirements=pins(lightgbm),
    )
    return model


FLAVOURS: dict[str, Callable[[pd.DataFrame, pd.Series, Path], Any]] = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}


def run(capsys: pytest.CaptureFixture[str], models: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main(["import", *args, "--models-dir", str(models)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_each_flavour_imports_with_data_and_serves_like_the_model(
    flavour: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = sample()
    model = FLAVOURS[flavour](x, y, tmp_path / "mlmodel")
    pd.concat([x, y], axis=1).to_csv(tmp_path / "train.csv", index=False)
    models = tmp_path / "models"
    status, _, err = run(
        capsys,
        models,
        str(tmp_path / "mlmodel"),
        "--data",
        str(tmp_path / "train.csv"),
        "--target",
        "old",
        "--name",
        flavour,
    )
    assert status == 0, err
    manifest = load_artifact(models / flavour / "1").manifest
    assert manifest.feature_names == ["age", "income"]
    assert manifest.target.classes == [0, 1]
    assert manifest.training.rows == 120
    if flavour != "sklearn":
        assert flavour in manifest.environment.libraries
    with TestClient(create_app(Settings(models_dir=models))) as client:
        records = x.head(20).to_dict(orient="records")
        answers = client.post(f"/models/{flavour}/predict", json=records).json()["predictions"]
    assert [a["prediction"] for a in answers] == model.predict(x.head(20)).tolist()
    proba = np.array([[a["probabilities"][c] for c in ("0", "1")] for a in answers])
    np.testing.assert_allclose(proba, model.predict_proba(x.head(20)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_without_data_the_input_example_is_the_sample(
    flavour: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = sample()
    FLAVOURS[flavour](x, y, tmp_path / "mlmodel")
    models = tmp_path / "models"
    status, _, err = run(capsys, models, str(tmp_path / "mlmodel"), "--name", flavour)
    assert status == 0, err
    manifest = load_artifact(models / flavour / "1").manifest
    assert manifest.feature_names == ["age", "income"]
    assert manifest.training.rows == 5
    assert manifest.training.source == f"mlflow:{tmp_path / 'mlmodel'} input_example"
    assert manifest.metrics == {}
    assert manifest.target.distribution is None


def test_requirements_from_another_scikit_learn_minor_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = sample()
    folder = tmp_path / "mlmodel"
    _sklearn(x, y, folder)
    major, minor, *_ = sklearn.__version__.split(".")
    made = f"{major}.{int(minor) + 1}.0"
    requirements = folder / "requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines()
    pinned = [f"scikit-learn=={made}" if s.startswith("scikit-learn==") else s for s in lines]
    requirements.write_text("\n".join(pinned) + "\n", encoding="utf-8")
    status, out, err = run(capsys, tmp_path / "models", str(folder), "--name", "old")
    assert (status, out) == (2, "")
    assert err == (
        f"error: {folder}: made with scikit-learn {made}, but this environment has "
        f"{sklearn.__version__}; a pickled model may fail or silently predict differently. "
        f"Re-export it in the serving environment (with scikit-learn {sklearn.__version__}), "
        "or pass --allow-version-mismatch here and set TABSERVE_ALLOW_VERSION_MISMATCH=true "
        "where it is served to accept the risk.\n"
    )
    status, _, err = run(
        capsys, tmp_path / "models", str(folder), "--name", "old", "--allow-version-mismatch"
    )
    assert status == 0, err


def test_a_model_without_input_example_needs_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = sample()
    model = LogisticRegression().fit(x, y)
    folder = tmp_path / "bare"
    mlflow.sklearn.save_model(
        model, folder, signature=infer_signature(x, model.predict(x)), pip_requirements=pins()
    )
    status, _, err = run(capsys, tmp_path / "models", str(folder), "--name", "bare")
    assert status == 2
    assert err == (
        f"error: {folder}: the MLflow model has no input_example; pass --data FILE, a sample "
        "of its training data\n"
    )
