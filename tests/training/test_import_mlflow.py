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
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from tabserve.artifact.manifest import DriftInfo
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
    assert manifest.drift.available
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
    # Five rows are a shape, not a distribution: no drift reference from them.
    assert manifest.drift == DriftInfo(
        available=False,
        reason="the reference sample has 5 rows; a drift reference needs at least 100: "
        "export with a larger sample of the training data (X in tabserve.export, --data FILE "
        "in tabserve import)",
    )
    with TestClient(create_app(Settings(models_dir=models))) as client:
        body = client.get(f"/models/{flavour}/drift").json()
    assert (body["available"], body["reason"]) == (False, manifest.drift.reason)


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


def people(rows: int = 160) -> tuple[pd.DataFrame, pd.Series]:
    """Numbers (income with gaps: optional in the signature) and a string column."""
    rng = np.random.default_rng(1)
    x = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, rows),
            "income": rng.normal(3000, 500, rows),
            "city": rng.choice(["berlin", "paris", "rome"], rows).astype(object),
            "member": rng.random(rows) < 0.4,
        }
    )
    x.loc[x.index % 7 == 0, "income"] = np.nan
    return x, pd.Series(np.where(x["age"] > 45, "old", "young"), name="band")


def signature_only(folder: Path, *, unknown: str = "ignore") -> tuple[Any, pd.DataFrame]:
    """A pipeline saved by MLflow with a signature and no input_example."""
    x, y = people()
    prep = ColumnTransformer(
        [
            ("numbers", SimpleImputer(), ["age", "income"]),
            ("city", OneHotEncoder(handle_unknown=unknown), ["city", "member"]),
        ]
    )
    model = Pipeline([("prep", prep), ("model", LogisticRegression())]).fit(x, y)
    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(x, model.predict(x)),
        pip_requirements=pins(),
        skops_trusted_types=["numpy.dtype"],
    )
    return model, x


NO_DATA = (
    "imported without reference data (the signature alone): import with --data FILE, a "
    "sample of the training data, for drift"
)


def test_without_data_or_input_example_the_signature_alone_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, x = signature_only(tmp_path / "mlmodel")
    models = tmp_path / "models"
    status, out, err = run(capsys, models, str(tmp_path / "mlmodel"), "--name", "sig")
    assert status == 0, err
    assert out.splitlines()[-1] == f"drift unavailable: {NO_DATA}"
    manifest = load_artifact(models / "sig" / "1").manifest
    assert manifest.feature_names == ["age", "income", "city", "member"]
    assert [f.type for f in manifest.features] == ["number", "number", "category", "category"]
    assert [f.stats for f in manifest.features] == [None, None, None, None]
    # income has gaps, so the signature marks it optional
    assert manifest.missing_allowed == [False, True, False, False]
    assert manifest.drift == DriftInfo(available=False, reason=NO_DATA)
    assert manifest.training.rows == 0
    assert manifest.training.source == f"mlflow:{tmp_path / 'mlmodel'} signature"
    assert manifest.target.classes == ["old", "young"]

    rows = x.head(30).astype(object).where(x.head(30).notna(), None)
    sent = rows.to_dict(orient="records")
    for row in sent:
        row["member"] = str(row["member"])  # requests carry categories as strings
    sent[0]["city"] = "madrid"  # any string is a category: the encoder ignores it
    asked = pd.DataFrame(sent).astype({"age": float, "income": float})
    asked["member"] = asked["member"] == "True"
    settings = Settings(
        models_dir=models,
        predlog_mode="all",
        data_dir=tmp_path / "data",
        predlog_flush_seconds=60,
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post("/models/sig/predict", json=sent, headers={"x-request-id": "q"})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["prediction"] for p in predictions] == model.predict(asked).tolist()
        proba = [[p["probabilities"][c] for c in ("old", "young")] for p in predictions]
        np.testing.assert_allclose(proba, model.predict_proba(asked), rtol=0, atol=1e-12)

        complete = x.head(30).dropna()
        inputs = [
            {"name": "age", "shape": [len(complete)], "datatype": "FP64",
             "data": complete["age"].tolist()},
            {"name": "income", "shape": [len(complete)], "datatype": "FP64",
             "data": complete["income"].tolist()},
            {"name": "city", "shape": [len(complete)], "datatype": "BYTES",
             "data": complete["city"].tolist()},
            {"name": "member", "shape": [len(complete)], "datatype": "BYTES",
             "data": [str(v) for v in complete["member"].tolist()]},
        ]  # fmt: skip
        v2 = client.post("/v2/models/sig/infer", json={"inputs": inputs})
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        assert outputs["predict"] == model.predict(complete).tolist()

        drift = client.get("/models/sig/drift")
        assert drift.status_code == 200
        body = drift.json()
        assert (body["available"], body["reason"]) == (False, NO_DATA)
        assert (body["features"], body["prediction"], body["rows"]) == ([], None, 0)
        exposed = client.get("/metrics").text.splitlines()
        series = [s for s in exposed if s.startswith("tabserve_drift") and 'model="sig"' in s]
        assert series == []  # no bins, no reference shares: nothing to compare with

        bad = client.post("/models/sig/predict", json={**sent[1], "age": "old"})
        assert bad.status_code == 400  # as V2 answers invalid input
        assert [d["field"] for d in bad.json()["details"]] == ["age"]
        bad = client.post("/models/sig/predict", json={**sent[1], "city": 3})
        assert bad.status_code == 400
        assert [(d["field"], d["value"]) for d in bad.json()["details"]] == [("city", 3)]
        bad = client.post(
            "/v2/models/sig/infer",
            json={"inputs": [*inputs[:3], {**inputs[3], "data": ["maybe"] * len(complete)}]},
        )
        assert bad.status_code == 400  # the V2 protocol's status for invalid input
        first = bad.json()["details"][0]
        assert (first["field"], first["value"]) == ("member", "maybe")
        assert first["expected"] == "a known category: one of ['False', 'True']"
        missing = client.post("/models/sig/predict", json={**sent[1], "age": None})
        assert missing.status_code == 400
        assert [d["field"] for d in missing.json()["details"]] == ["age"]

        truth = [{"request_id": "q", "row": k, "truth": "old"} for k in range(len(sent))]
        fed = client.post("/models/sig/feedback", json=truth)
        assert fed.status_code == 200, fed.text
        assert fed.json()["accepted"] == len(sent)
        (quality,) = client.get("/models/sig/quality").json()["versions"]
        assert quality["rows"] == len(sent)
        expected = float(np.mean(model.predict(asked) == "old"))
        assert quality["accuracy"] == pytest.approx(expected)


def test_a_signature_only_model_that_refuses_unseen_categories_needs_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signature_only(tmp_path / "strict", unknown="error")
    status, out, err = run(capsys, tmp_path / "models", str(tmp_path / "strict"), "--name", "s")
    assert (status, out) == (2, "")
    assert err.startswith(
        "error: the model cannot predict a row built from its signature alone (0 for numbers, "
        "'', a category it never saw, for strings): ValueError: Found unknown categories"
    )
    assert err.endswith(
        "Requests that pass validation would fail the same way: pass --data FILE, a sample "
        "of its training data, which gives the categories it knows\n"
    )
    assert not (tmp_path / "models" / "s").exists()


def test_a_model_without_input_example_or_signature_needs_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = sample()
    model = LogisticRegression().fit(x, y)
    folder = tmp_path / "bare"
    mlflow.sklearn.save_model(model, folder, pip_requirements=pins())
    status, _, err = run(capsys, tmp_path / "models", str(folder), "--name", "bare")
    assert status == 2
    assert err == (
        f"error: {folder}: the MLflow model has neither an input_example nor a signature; "
        "pass --data FILE, a sample of its training data\n"
    )


def _columns(*specs: tuple[str, str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in specs]))


def _tensors() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float64), (-1, 2))]))


@pytest.mark.parametrize(
    ("signature", "refusal"),
    [
        (
            lambda: _columns(("age", "double"), ("seen", "datetime")),
            "{folder}: signature column 'seen' has MLflow type datetime; without data tabserve "
            "validates double, float, long, integer, string, boolean: pass --data FILE, a "
            "sample of its training data",
        ),
        (
            _tensors,
            "{folder}: the MLflow signature describes tensors, not named columns; pass --data "
            "FILE, a sample of its training data",
        ),
        (
            lambda: _columns(("age", "double"), ("salary", "double")),
            "the signature's columns differ from the ones the model was fitted on (signature "
            "lacks ['income'], has extra ['salary']): pass --data FILE with the columns it was "
            "fitted on",
        ),
    ],
    ids=["datetime", "tensors", "other-columns"],
)
def test_a_signature_tabserve_cannot_check_needs_data(
    signature: Callable[[], Any],
    refusal: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = sample()
    model = LogisticRegression().fit(x, y)
    folder = tmp_path / "mlmodel"
    mlflow.sklearn.save_model(model, folder, signature=signature(), pip_requirements=pins())
    status, out, err = run(capsys, tmp_path / "models", str(folder), "--name", "m")
    assert (status, out) == (2, "")
    assert err == f"error: {refusal.format(folder=folder)}\n"
