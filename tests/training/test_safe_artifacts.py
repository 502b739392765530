"""Artifacts the loader must refuse (tampering, path escapes, untrusted types) and skops."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from tabserve.artifact import skops_format
from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.seal import make_seal, write_seal
from tabserve.artifact.skops_format import ALLOWED_TYPES
from tabserve.artifact.store import load_artifact, save_artifact
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.pipeline import TrainRequest, train

TREE = "sklearn.tree._tree.Tree"
HGB_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def _mixed(folder: Path) -> Dataset:
    path = folder / "mixed.csv"
    rng = np.random.default_rng(0)
    lines = ["age,city,income,label"]
    for i in range(60):
        city = ["paris", "rome", "oslo"][i % 3]
        age = "" if i % 11 == 0 else str(int(rng.integers(18, 80)))
        lines.append(f"{age},{city},{rng.normal(2000, 300):.2f},{'yes' if i % 2 else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return load_csv(path, "label")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with iris v1 (joblib) and v2 (skops), never modified."""
    root = tmp_path_factory.mktemp("store")
    iris = load_bundled("iris")
    params: dict[str, Any] = {"n_estimators": 5}
    train(TrainRequest(iris, "random_forest", root, "iris", params=params))
    train(TrainRequest(iris, "random_forest", root, "iris", params=params, artifact_format="skops"))
    return root


@pytest.fixture
def root(store: Path, tmp_path: Path) -> Path:
    """A private copy of the store to tamper with; `outside` beside it is not part of it."""
    copy = tmp_path / "models"
    shutil.copytree(store, copy)
    (tmp_path / "outside").mkdir()
    return copy


def _edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest and seal it again, as an exporter would: the checks after the seal's
    are what these tests are about (tests/training/test_seal.py has the seal's own)."""
    path = folder / "model.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    write_seal(folder, make_seal(path.read_bytes()))


def _refused(folder: Path, root: Path | None = None) -> str:
    with pytest.raises(ArtifactError) as info:
        load_artifact(folder, root=root)
    return str(info.value)


# tampering and escapes ----------------------------------------------------------------


@pytest.mark.parametrize(("version", "file"), [(1, "model.joblib"), (2, "model.skops")])
def test_one_flipped_byte_is_refused(root: Path, version: int, file: str) -> None:
    folder = root / "iris" / str(version)
    model = folder / file
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    message = _refused(folder, root)
    assert message.startswith(f"{model}: sha256 is {hashlib.sha256(data).hexdigest()}, but ")
    assert "the file is corrupt or was modified" in message


@pytest.mark.parametrize(
    "name", ["../model.joblib", "..", "../../outside/model.joblib", "/etc/passwd", ".model"]
)
def test_a_manifest_naming_a_path_is_refused(root: Path, name: str) -> None:
    folder = root / "iris" / "1"
    _edit_manifest(folder, lambda m: m["artifact"].update(file=name))
    message = _refused(folder, root)
    assert message.startswith(f"{folder / 'model.json'}: invalid manifest: artifact.file: ")
    assert "must be a plain file name in the version folder" in message
    assert repr(name) in message


def test_a_model_file_symlinked_outside_the_models_dir_is_refused(root: Path) -> None:
    folder = root / "iris" / "1"
    outside = root.parent / "outside" / "model.joblib"
    shutil.move(folder / "model.joblib", outside)
    (folder / "model.joblib").symlink_to(outside)
    message = _refused(folder, root)
    assert message == (
        f"{folder / 'model.joblib'}: the model file resolves to {outside}, outside "
        f"{root}; refusing to follow a path or symlink that leaves the models directory"
    )
    # Without a root the version folder is the boundary: still refused.
    assert "outside" in _refused(folder)


def test_a_symlink_that_stays_inside_the_models_dir_is_followed(root: Path) -> None:
    folder = root / "iris" / "1"
    kept = root / "iris" / "shared-model.joblib"
    shutil.move(folder / "model.joblib", kept)
    (folder / "model.joblib").symlink_to(kept)
    assert load_artifact(folder, root=root).manifest.version == 1


def test_a_manifest_symlinked_outside_the_models_dir_is_refused(root: Path) -> None:
    folder = root / "iris" / "1"
    outside = root.parent / "outside" / "model.json"
    shutil.move(folder / "model.json", outside)
    (folder / "model.json").symlink_to(outside)
    assert _refused(folder, root).startswith(
        f"{folder / 'model.json'}: the manifest resolves to {outside}, outside {root}"
    )


def test_a_version_folder_symlinked_outside_the_models_dir_is_refused(root: Path) -> None:
    outside = root.parent / "outside" / "3"
    shutil.copytree(root / "iris" / "1", outside)
    (root / "iris" / "3").symlink_to(outside, target_is_directory=True)
    message = _refused(root / "iris" / "3", root)
    assert message.startswith(
        f"{root / 'iris' / '3'}: the version folder resolves to {outside}, outside {root}"
    )


def test_a_models_dir_that_is_itself_a_symlink_still_loads(root: Path) -> None:
    alias = root.parent / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert load_artifact(alias / "iris" / "2", root=alias).manifest.artifact.format == "skops"


# skops --------------------------------------------------------------------------------

KINDS = [
    ("iris", "logistic_regression", set()),
    ("iris", "random_forest", {TREE}),
    ("iris", "hist_gradient_boosting", {HGB_TREE}),
    ("diabetes", "ridge", set()),
    ("diabetes", "random_forest", {TREE}),
    ("diabetes", "hist_gradient_boosting", {HGB_TREE}),
    ("mixed", "logistic_regression", {"numpy.dtype"}),
    ("mixed", "random_forest", {"numpy.dtype", TREE}),
    ("mixed", "hist_gradient_boosting", {"numpy.dtype", HGB_TREE}),
]
SMALL: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 5},
    "hist_gradient_boosting": {"max_iter": 10},
}


@pytest.mark.parametrize(("dataset", "kind", "needed"), KINDS)
def test_every_estimator_round_trips_through_skops(
    tmp_path: Path, dataset: str, kind: str, needed: set[str]
) -> None:
    data = _mixed(tmp_path) if dataset == "mixed" else load_bundled(dataset)
    models = tmp_path / "models"
    request = TrainRequest(
        data, kind, models, dataset, params=SMALL.get(kind, {}), artifact_format="skops"
    )
    result = train(request)
    artifact = result.manifest.artifact
    assert (artifact.format, artifact.file) == ("skops", "model.skops")
    assert set(artifact.trusted_types) == needed
    assert result.manifest.environment.skops == skops.__version__
    assert sorted(p.name for p in (models / dataset / "1").iterdir()) == [
        "model.json",
        "model.seal.json",
        "model.skops",
    ]

    loaded = load_artifact(models / dataset / "1", root=models).estimator
    assert type(loaded) is type(result.pipeline)
    np.testing.assert_array_equal(
        loaded.predict(data.features), result.pipeline.predict(data.features)
    )
    if data.task == "classification":
        np.testing.assert_array_equal(
            loaded.predict_proba(data.features), result.pipeline.predict_proba(data.features)
        )


def _replace_model(folder: Path, data: bytes, declared: list[str]) -> Path:
    """Put `data` in the version as its skops file, with a manifest that matches it."""
    model = folder / "model.skops"
    model.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    _edit_manifest(
        folder,
        lambda m: m["artifact"].update(sha256=digest, size_bytes=len(data), trusted_types=declared),
    )
    return model


def test_a_skops_file_with_a_type_outside_the_allow_list_is_refused(root: Path) -> None:
    evil = Pipeline([("run", FunctionTransformer(os.system))])
    data = skops.io.dumps(evil)
    evil_type = f"{os.system.__module__}.system"
    assert skops.io.get_untrusted_types(data=data) == [evil_type]
    folder = root / "iris" / "2"
    # The manifest declaring the type does not make it trusted: the allow-list is in code.
    model = _replace_model(folder, data, [evil_type])
    message = _refused(folder, root)
    assert message.startswith(f"{model}: the skops file holds type {evil_type}, which is not ")
    assert message.endswith("nor trusted by skops; refusing to load it")


def test_a_skops_file_holding_types_the_manifest_does_not_declare_is_refused(
    root: Path,
) -> None:
    folder = root / "iris" / "2"
    model = _replace_model(folder, (folder / "model.skops").read_bytes(), [])
    assert _refused(folder, root) == (
        f"{model}: the skops file holds {TREE}, which the manifest's artifact.trusted_types "
        "does not declare; the manifest does not describe this file"
    )


def test_a_forest_with_a_child_index_out_of_range_is_refused(root: Path) -> None:
    folder = root / "iris" / "2"
    pipeline = load_artifact(folder, root=root).estimator
    tree = pipeline.steps[-1][1].estimators_[1].tree_
    tree.children_left[0] = tree.node_count + 5  # a view of the tree's node array
    _replace_model(folder, skops.io.dumps(pipeline), [TREE])
    message = _refused(folder, root)
    assert "model.steps[0][1].estimators_[1].tree_: node 0 has left child " in message
    assert message.endswith("refusing to load a corrupt tree")


def test_a_tree_looping_back_to_its_root_is_refused(root: Path) -> None:
    folder = root / "iris" / "2"
    pipeline = load_artifact(folder, root=root).estimator
    tree = pipeline.steps[-1][1].estimators_[0].tree_
    inner = int(np.flatnonzero(tree.children_left != -1)[1])
    tree.children_right[inner] = 0
    _replace_model(folder, skops.io.dumps(pipeline), [TREE])
    assert f"node {inner} has right child 0; expected a node after it" in _refused(folder, root)


def test_a_boosted_tree_splitting_on_a_missing_column_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    iris = load_bundled("iris")
    request = TrainRequest(
        iris,
        "hist_gradient_boosting",
        models,
        "iris",
        params={"max_iter": 3},
        artifact_format="skops",
    )
    pipeline = train(request).pipeline
    pipeline.steps[-1][1]._predictors[0][0].nodes["feature_idx"][0] = 4  # iris has 4 columns
    folder = models / "iris" / "1"
    _replace_model(folder, skops.io.dumps(pipeline), [HGB_TREE])
    assert "node 0 splits on feature 4; the input has 4 columns" in _refused(folder, models)


def test_export_refuses_what_the_loader_would_refuse(tmp_path: Path) -> None:
    iris = load_bundled("iris")
    base = train(TrainRequest(iris, "logistic_regression", tmp_path / "a", "iris"))
    fields = base.manifest.model_dump(exclude={"name", "version", "environment", "artifact"})
    evil = Pipeline([("run", FunctionTransformer(os.system))])
    models = tmp_path / "models"
    with pytest.raises(ArtifactError) as info:
        save_artifact(evil, fields, models, "iris", artifact_format="skops")
    assert f"the model holds {os.system.__module__}.system, outside the types" in str(info.value)
    assert not any(models.rglob("*.skops"))
    assert "posix.system" not in ALLOWED_TYPES


def test_the_cli_exports_skops_on_request(call_cli: Any, models_dir: Path) -> None:
    common = ["--dataset", "iris", "--model", "logistic_regression", "--quiet"]
    common += ["--models-dir", str(models_dir)]
    assert call_cli(*common, "--format", "skops").code == 0
    assert call_cli(*common).code == 0
    first = load_artifact(models_dir / "iris" / "1", root=models_dir).manifest
    second = load_artifact(models_dir / "iris" / "2", root=models_dir).manifest
    assert (first.artifact.format, first.artifact.file) == ("skops", "model.skops")
    assert (second.artifact.format, second.artifact.file) == ("joblib", "model.joblib")
    assert (first.environment.skops, second.environment.skops) == (skops.__version__, None)


def test_a_skops_file_unpacking_past_the_limit_is_refused(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = root / "iris" / "2"
    model = folder / "model.skops"
    load_artifact(folder, root=root)
    monkeypatch.setattr(skops_format, "MAX_UNPACKED_BYTES", 1000)
    message = _refused(folder, root)
    assert message.startswith(f"{model}: the skops file unpacks to ")
    assert message.endswith("bytes; the limit is 1000; refusing what may be a zip bomb")


def test_skops_files_are_compressed(root: Path) -> None:
    with zipfile.ZipFile(root / "iris" / "2" / "model.skops") as archive:
        members = archive.infolist()
    assert {m.compress_type for m in members} == {zipfile.ZIP_DEFLATED}
