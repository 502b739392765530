"""Library versions an exported model is made of: recorded at export, checked at every load."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tabserve
from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.libraries import libraries_of
from tabserve.artifact.seal import make_seal, write_seal
from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train


def sample() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    return x, (x["a"] + x["b"] > 0).astype(int).to_numpy()


def _edit(folder: Path, library: str, version: str) -> None:
    path = folder / "model.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if library == "scikit-learn":
        raw["environment"]["scikit_learn"] = version
    else:
        raw["environment"]["libraries"][library] = version
    path.write_text(json.dumps(raw), encoding="utf-8")
    # sealed again, as an exporter would: the version check comes after the seal's
    write_seal(folder, make_seal(path.read_bytes()))


def _other_major(version: str) -> str:
    major, rest = version.split(".", 1)
    return f"{int(major) + 1}.{rest}"


@pytest.fixture
def xgboost_export(tmp_path: Path) -> tuple[Path, Any]:
    xgboost = pytest.importorskip("xgboost")
    x, y = sample()
    model = make_pipeline(
        StandardScaler(), xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)
    ).fit(x, y)
    tabserve.export(model, x, y, name="xgb", models_dir=tmp_path)
    return tmp_path / "xgb" / "1", xgboost


def test_every_step_library_is_recorded(xgboost_export: tuple[Path, Any]) -> None:
    folder, xgboost = xgboost_export
    loaded = load_artifact(folder)
    assert loaded.manifest.environment.libraries == {"xgboost": xgboost.__version__}
    assert loaded.manifest.environment.scikit_learn == sklearn.__version__
    assert libraries_of(loaded.estimator) == {"xgboost": metadata.version("xgboost")}


def test_another_xgboost_major_is_refused_naming_both_versions_and_fixes(
    xgboost_export: tuple[Path, Any],
) -> None:
    folder, xgboost = xgboost_export
    other = _other_major(xgboost.__version__)
    _edit(folder, "xgboost", other)
    with pytest.raises(ArtifactError) as info:
        load_artifact(folder)
    assert str(info.value) == (
        f"{folder}: made with xgboost {other}, but this process has {xgboost.__version__}; a "
        "pickled model may fail or silently predict differently across major versions. "
        f"Retrain or re-export it where it is served (with xgboost {xgboost.__version__}), or "
        "set TABSERVE_ALLOW_VERSION_MISMATCH=true to serve it anyway."
    )
    assert load_artifact(folder, allow_version_mismatch=True).manifest.version == 1


def test_another_xgboost_minor_loads(xgboost_export: tuple[Path, Any]) -> None:
    folder, xgboost = xgboost_export
    major = xgboost.__version__.split(".")[0]
    _edit(folder, "xgboost", f"{major}.999.0")
    assert load_artifact(folder).manifest.environment.libraries["xgboost"] == f"{major}.999.0"


def test_a_library_that_is_not_installed_is_named_even_when_mismatches_are_allowed(
    tmp_path: Path,
) -> None:
    x, y = sample()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    tabserve.export(model, x, y, name="m", models_dir=tmp_path)
    folder = tmp_path / "m" / "1"
    _edit(folder, "not-a-model-library", "1.2.3")
    for allowed in (False, True):
        with pytest.raises(ArtifactError) as info:
            load_artifact(folder, allow_version_mismatch=allowed)
        assert str(info.value) == (
            f"{folder}: the model needs not-a-model-library 1.2.3, which is not installed here; "
            "install it in the serving environment (pip install 'not-a-model-library==1.2.3')"
        )


def test_a_trained_xgboost_model_records_xgboost_through_its_label_wrapper(tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    request = TrainRequest(
        load_bundled("iris"), "xgboost", tmp_path, "iris", params={"n_estimators": 3}
    )
    manifest = train(request).manifest
    assert manifest.environment.libraries == {"xgboost": xgboost.__version__}
