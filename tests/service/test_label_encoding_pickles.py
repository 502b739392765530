"""Artifacts pickled while `LabelEncodedClassifier` lived in training still load and serve.

A pickle names a class by module and name. Before the class joined the artifact
format, pickles named `tabserve.training.label_encoding` (checked on the commit
before the move: one occurrence in a joblib dump, the module string beside the
name `LabelEncodedClassifier`). The new module path has the same length, so an
old pickle is a new one with that module string replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.seal import make_seal, write_seal
from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

NEW_PATH = b"tabserve.artifact.label_encoding"
OLD_PATH = b"tabserve.training.label_encoding"


def as_before_the_move(path: Path) -> bytes:
    """Rewrite the pickle at `path` as the code before the move wrote it; its new bytes."""
    data = path.read_bytes()
    assert data.count(NEW_PATH) == 1
    assert OLD_PATH not in data
    old = data.replace(NEW_PATH, OLD_PATH)
    path.write_bytes(old)
    return old


def test_a_pickle_naming_the_old_module_loads_as_the_artifact_class(tmp_path: Path) -> None:
    iris = load_bundled("iris")
    fitted = LabelEncodedClassifier(LogisticRegression(max_iter=500)).fit(
        iris.features, iris.target
    )
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    as_before_the_move(path)
    loaded = joblib.load(path)
    assert type(loaded) is LabelEncodedClassifier
    assert loaded.predict(iris.features).tolist() == fitted.predict(iris.features).tolist()


def test_an_xgboost_artifact_pickled_before_the_move_serves_its_labels(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    iris = load_bundled("iris")
    params: dict[str, int | float | str | bool | None] = {"n_estimators": 10, "max_depth": 3}
    train(TrainRequest(iris, "xgboost", tmp_path, "xgb", params=params))
    folder = tmp_path / "xgb" / "1"
    model = as_before_the_move(folder / "model.joblib")
    manifest_path = folder / "model.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["artifact"].update(sha256=hashlib.sha256(model).hexdigest(), size_bytes=len(model))
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    write_seal(folder, make_seal(manifest_path.read_bytes()))
    rows = iris.features[[0, 60, 120]]
    body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": rows.tolist()}]}
    with TestClient(create_app(Settings(models_dir=tmp_path))) as client:
        assert client.get("/models/xgb").json()["versions"][0]["state"] == "ready"
        answer = client.post("/v2/models/xgb/infer", json=body)
    assert answer.status_code == 200, answer.text
    [labels] = [o["data"] for o in answer.json()["outputs"] if o["name"] == "predict"]
    assert labels == np.asarray(iris.target)[[0, 60, 120]].tolist()
