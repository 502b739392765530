"""`tabserve import`: model files and MLflow models made elsewhere, through the real CLI."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabserve.artifact.repository import list_models
from tabserve.artifact.store import load_artifact
from tabserve.service import cli


def table(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "age": rng.integers(18, 80, rows),
            "city": rng.choice(["berlin", "paris", "rome"], rows).astype(object),
            "income": rng.normal(3000, 500, rows),
        }
    )
    data["churned"] = np.where((data["age"] > 50) ^ (data["city"] == "paris"), "yes", "no")
    return data


def classifier(data: pd.DataFrame) -> Pipeline:
    prep = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "income"]),
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    model = Pipeline([("prep", prep), ("model", LogisticRegression())])
    return model.fit(data[["age", "city", "income"]], data["churned"])


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    """`tabserve import ARGS --models-dir tmp/models` in this process: (status, out, err)."""

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = cli.main(["import", *args, "--models-dir", str(tmp_path / "models")])
        out, err = capsys.readouterr()
        return status, out, err

    return call


@pytest.mark.parametrize("name", ["model.pkl", "churn.bin", "model.joblib"])
def test_a_pickle_or_joblib_file_of_any_name_imports_with_a_csv(
    name: str, run: Any, tmp_path: Path
) -> None:
    data = table()
    model = classifier(data)
    path = tmp_path / name
    if name.endswith(".joblib"):
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    (tmp_path / "sample.csv").write_text("\n\n" + data.to_csv(index=False), encoding="utf-8")
    status, out, err = run(
        str(path), "--data", str(tmp_path / "sample.csv"), "--target", "churned", "--name", "c"
    )
    assert status == 0, err
    assert err == "columns not used by the model: customer_id\n"
    assert out.startswith("model c version 1 (LogisticRegression)\n")
    assert "accuracy" in out
    loaded = load_artifact(tmp_path / "models" / "c" / "1")
    assert loaded.manifest.feature_names == ["age", "city", "income"]
    assert loaded.manifest.training.source == f"file:{path} data:{tmp_path / 'sample.csv'}"
    features = data[["age", "city", "income"]]
    assert loaded.estimator.predict(features).tolist() == model.predict(features).tolist()
    assert loaded.manifest.metrics["accuracy"] == pytest.approx(
        float((model.predict(features) == data["churned"]).mean())
    )


def test_a_skops_file_made_elsewhere_with_a_parquet_sample(run: Any, tmp_path: Path) -> None:
    data = table()
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(data[["age"]], data["income"])
    skops.io.dump(model, tmp_path / "forest.skops")
    data.to_parquet(tmp_path / "sample.parquet")
    args = [str(tmp_path / "forest.skops"), "--data", str(tmp_path / "sample.parquet")]
    status, out, err = run(*args, "--target", "income", "--name", "spend", "--format", "skops")
    assert status == 0, err
    assert err == "columns not used by the model: customer_id, city, churned\n"
    assert "r2" in out
    loaded = load_artifact(tmp_path / "models" / "spend" / "1")
    assert loaded.manifest.artifact.format == "skops"
    assert loaded.manifest.task == "regression"
    assert loaded.manifest.target.histogram is not None
    assert loaded.estimator.predict(data[["age"]]).tolist() == model.predict(data[["age"]]).tolist()


def test_a_model_file_needs_data(run: Any, tmp_path: Path) -> None:
    joblib.dump(classifier(table()), tmp_path / "m.pkl")
    status, out, err = run(str(tmp_path / "m.pkl"), "--name", "c")
    assert (status, out) == (2, "")
    assert err == (
        f"error: {tmp_path / 'm.pkl'}: a model file needs --data FILE (CSV or Parquet), a "
        "sample of its training data: it gives the features, their types and ranges, and the "
        "drift reference\n"
    )
    assert list_models(tmp_path / "models") == {}


def test_a_file_that_is_no_model_is_named(run: Any, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a pickle", encoding="utf-8")
    table().to_csv(tmp_path / "d.csv", index=False)
    status, _, err = run(
        str(tmp_path / "notes.txt"), "--data", str(tmp_path / "d.csv"), "--name", "x"
    )
    assert status == 2
    assert err.startswith(
        f"error: {tmp_path / 'notes.txt'}: not a model file tabserve can read (joblib, pickle "
        "or skops): "
    )


def _other_minor() -> str:
    major, minor, *_ = sklearn.__version__.split(".")
    return f"{major}.{int(minor) - 1}.0" if int(minor) > 0 else f"{major}.{int(minor) + 1}.0"


def test_a_pickle_from_another_scikit_learn_minor_is_refused_with_both_fixes(
    run: Any, tmp_path: Path
) -> None:
    data = table()
    model = classifier(data)
    made, here = _other_minor(), sklearn.__version__
    # The version scikit-learn stamps into each estimator's pickled state, rewritten.
    raw = pickle.dumps(model)
    assert len(made) == len(here)  # so the pickle's frame lengths stay right
    short_string = bytes([0x8C, len(here)])  # pickle's SHORT_BINUNICODE opcode
    forged = raw.replace(short_string + here.encode(), short_string + made.encode())
    assert forged != raw
    (tmp_path / "old.pkl").write_bytes(forged)
    data.to_csv(tmp_path / "d.csv", index=False)
    args = [str(tmp_path / "old.pkl"), "--data", str(tmp_path / "d.csv"), "--name", "old"]
    status, _, err = run(*args)
    assert status == 2
    assert err == (
        f"error: {tmp_path / 'old.pkl'}: made with scikit-learn {made}, but this environment "
        f"has {here}; a pickled model may fail or silently predict differently. Re-export it "
        f"in the serving environment (with scikit-learn {here}), or pass "
        "--allow-version-mismatch here and set TABSERVE_ALLOW_VERSION_MISMATCH=true where it "
        "is served to accept the risk.\n"
    )
    status, _, err = run(*args, "--allow-version-mismatch")
    assert status == 0, err
