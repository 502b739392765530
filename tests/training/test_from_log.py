"""Datasets built from logged predictions with feedback, and the versions trained on them."""

from __future__ import annotations

import math
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tabserve.artifact.manifest import Manifest
from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.from_log import LoggedExample, dataset_from_log, original_dataset
from tabserve.training.pipeline import TrainRequest, train

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris v1 (forest) and churn v1 (numbers and categories, from a CSV), as if served."""
    root = tmp_path_factory.mktemp("served")
    train(TrainRequest(load_bundled("iris"), "random_forest", root, "iris", {"n_estimators": 5}))
    lines = ["age,city,income,churned"]
    for i in range(240):
        city = ["berlin", "lisbon", "paris"][i % 3]
        churned = "yes" if (i % 50 > 25) ^ (city == "paris") else "no"
        lines.append(f"{20 + i % 50},{city},{1000 + 7 * i},{churned}")
    csv_file = root.parent / "churn.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    churn = load_csv(csv_file, "churned")
    train(TrainRequest(churn, "hist_gradient_boosting", root, "churn", {"max_iter": 5}))
    return root


def manifest_of(served: Path, name: str, version: int = 1) -> Manifest:
    return load_artifact(served / name / str(version)).manifest


def iris_examples(count: int, drop: str | None = None) -> list[LoggedExample]:
    """Rows of iris as if served (by versions 1 and 2) and then labelled."""
    iris = load_bundled("iris")
    names = [c.name for c in iris.columns]
    out = []
    for i in range(count):
        inputs = dict(zip(names, iris.features[i * 3].tolist(), strict=True))
        if drop is not None:
            inputs[drop] = None
        out.append(
            LoggedExample(
                inputs, str(iris.target[i * 3]), 1 + i % 2, f"r{i}", START + timedelta(minutes=i)
            )
        )
    return out


def test_logged_rows_become_the_features_and_truth(served: Path) -> None:
    manifest = manifest_of(served, "iris")
    examples = iris_examples(40)
    data = dataset_from_log(manifest, examples, store="sqlite:///x.db")
    iris = load_bundled("iris")
    np.testing.assert_array_equal(data.features, iris.features[: 40 * 3 : 3])
    assert data.target.tolist() == iris.target[: 40 * 3 : 3].tolist()
    assert [c.name for c in data.columns] == [f.name for f in manifest.features]
    assert data.source == "log:iris"
    assert data.log is not None
    assert data.log.rows == 40
    assert data.log.versions == [1, 2]
    assert data.log.first_prediction == START
    assert data.log.last_prediction == START + timedelta(minutes=39)
    assert data.log.merged_with is None


def test_a_version_trained_from_the_log_records_its_provenance(
    served: Path, tmp_path: Path
) -> None:
    manifest = manifest_of(served, "iris")
    root = tmp_path / "models"
    shutil.copytree(served / "iris", root / "iris")
    data = dataset_from_log(manifest, iris_examples(50), store="sqlite:///log.db")
    result = train(TrainRequest(data, "random_forest", root, "iris", params={"n_estimators": 5}))
    assert result.manifest.version == 2
    reloaded = load_artifact(root / "iris" / "2").manifest
    assert reloaded.training.source == "log:iris"
    assert reloaded.training.log == data.log
    assert reloaded.training.rows == 50


def test_redacted_feature_is_missing_and_needs_the_original(served: Path) -> None:
    manifest = manifest_of(served, "iris")
    examples = iris_examples(30, drop="petal_width_cm")
    with pytest.raises(TrainingError, match=r"'petal_width_cm' \(redacted in the log\?\)"):
        dataset_from_log(manifest, examples, store="s")
    original = original_dataset(manifest)
    data = dataset_from_log(manifest, examples, store="s", original=original)
    assert data.log is not None
    assert data.log.redacted == ["petal_width_cm"]
    assert data.log.merged_with == "sklearn:iris"
    assert data.log.merged_rows == 150
    assert len(data.target) == 180
    assert all(math.isnan(v) for v in data.features[:30, 3])
    assert not np.isnan(data.features[30:, 3]).any()


def test_merging_keeps_long_labels_whole(served: Path) -> None:
    manifest = manifest_of(served, "iris")
    short = [LoggedExample(e.inputs, "setosa", 1, "r", START) for e in iris_examples(5)]
    data = dataset_from_log(manifest, short, store="s", original=original_dataset(manifest))
    assert "versicolor" in data.target.tolist()


def test_mixed_types_from_a_csv_original(served: Path) -> None:
    manifest = manifest_of(served, "churn")
    example = LoggedExample({"age": 61, "city": "paris", "income": None}, "no", 1, "c1", START)
    data = dataset_from_log(manifest, [example] * 4, store="s", original=original_dataset(manifest))
    assert data.features[0].tolist()[:2] == [61.0, "paris"]
    assert math.isnan(data.features[0][2])
    assert data.log is not None
    assert data.log.merged_with is not None
    assert data.log.merged_with.startswith("csv:")
    assert len(data.target) == 4 + 240


def test_errors_name_the_request_and_the_value(served: Path) -> None:
    manifest = manifest_of(served, "iris")
    with pytest.raises(TrainingError, match="no predictions of model 'iris' with feedback"):
        dataset_from_log(manifest, [], store="s")
    bad = iris_examples(3)
    bad[1] = LoggedExample({**bad[1].inputs, "sepal_length_cm": "long"}, "setosa", 1, "r1", START)
    with pytest.raises(TrainingError, match=r"'sepal_length_cm' of request 'r1'.*'long'"):
        dataset_from_log(manifest, bad, store="s")


def test_a_log_only_version_has_no_original(served: Path, tmp_path: Path) -> None:
    manifest = manifest_of(served, "iris")
    data = dataset_from_log(manifest, iris_examples(50), store="s")
    root = tmp_path / "m"
    result = train(TrainRequest(data, "logistic_regression", root, "iris"))
    with pytest.raises(TrainingError, match="from the prediction log alone"):
        original_dataset(result.manifest)
    merged = dataset_from_log(manifest, iris_examples(50), store="s", original=load_bundled("iris"))
    again = train(TrainRequest(merged, "logistic_regression", root, "iris"))
    assert original_dataset(again.manifest).source == "sklearn:iris"


def test_cli_errors_name_what_is_missing(
    served: Path, tmp_path: Path, call_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TABSERVE_PREDLOG_URL", raising=False)
    monkeypatch.setenv("TABSERVE_DATA_DIR", str(tmp_path / "data"))
    nothing = call_cli("--from-log", "iris", "--models-dir", str(tmp_path / "none"))
    assert nothing.code == 2
    assert "no model 'iris' under" in nothing.stderr
    no_log = call_cli("--from-log", "iris", "--models-dir", str(served), "--quiet")
    assert no_log.code == 2
    assert f"no prediction log at sqlite:///{tmp_path / 'data' / 'predictions.db'}" in no_log.stderr
    assert not (tmp_path / "data").exists()  # looking did not create it
    bad_url = call_cli("--from-log", "iris", "--models-dir", str(served), "--log-url", "nope")
    assert "is not a database URL" in bad_url.stderr
    stray = call_cli("--dataset", "iris", "--model", "ridge", "--with-original")
    assert "--log-url and --with-original go with --from-log only" in stray.stderr
    no_model = call_cli("--dataset", "iris")
    assert "--model is required" in no_model.stderr


def test_cli_refuses_a_log_without_tables(served: Path, tmp_path: Path, call_cli: Any) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = call_cli(
        "--from-log", "iris", "--models-dir", str(served), "--log-url", f"sqlite:///{empty}"
    )
    assert result.code == 2
    assert "cannot read the prediction log at sqlite:///" in result.stderr
    assert "no such table" in result.stderr
