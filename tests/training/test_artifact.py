"""The artifact on disk: hashes, tampered manifests, versions, atomic export and crashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn

from tabserve.artifact.errors import ArtifactError, VersionExistsError
from tabserve.artifact.manifest import CategoryStats
from tabserve.artifact.repository import list_models, list_versions, next_version, version_path
from tabserve.artifact.seal import make_seal, write_seal
from tabserve.artifact.store import load_artifact, read_manifest, save_artifact
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

Tree = Callable[[Path], dict[str, bytes | None]]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _train_iris(models_dir: Path, name: str = "iris", version: int | None = None) -> Any:
    data = load_bundled("iris")
    request = TrainRequest(
        data, "random_forest", models_dir, name, params={"n_estimators": 5}, version=version
    )
    return train(request)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained iris version, never modified; tests copy it."""
    models_dir = tmp_path_factory.mktemp("trained")
    _train_iris(models_dir)
    return models_dir / "iris" / "1"


@pytest.fixture
def artifact(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained version folder to tamper with."""
    return Path(shutil.copytree(trained, tmp_path / "copy"))


def _edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest and seal it again, as an exporter would: the checks after the seal's
    are what these tests are about (tests/training/test_seal.py has the seal's own)."""
    path = folder / "model.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    write_seal(folder, make_seal(path.read_bytes()))


# hashes -----------------------------------------------------------------------------


def test_untouched_copy_loads(artifact: Path) -> None:
    loaded = load_artifact(artifact)
    assert loaded.path == artifact
    assert (
        loaded.manifest.artifact.sha256
        == hashlib.sha256((artifact / "model.joblib").read_bytes()).hexdigest()
    )
    iris = load_bundled("iris")
    assert loaded.estimator.predict(iris.features[:3]).tolist() == ["setosa"] * 3


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_one_flipped_byte_in_the_model_is_caught(artifact: Path, where: float) -> None:
    model = artifact / "model.joblib"
    data = bytearray(model.read_bytes())
    index = int(len(data) * where) if isinstance(where, float) else where
    data[index] ^= 0x01
    model.write_bytes(bytes(data))
    expected = read_manifest(artifact).artifact.sha256
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert actual != expected
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact)
    assert str(info.value) == (
        f"{model}: sha256 is {actual}, but the manifest says {expected}; "
        "the file is corrupt or was modified"
    )


def test_a_manifest_hash_that_does_not_match_is_caught(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["artifact"].update(sha256="0" * 64))
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact)
    assert str(info.value).startswith(f"{artifact / 'model.joblib'}: sha256 is ")
    assert f"but the manifest says {'0' * 64}; " in str(info.value)


def test_a_missing_model_file_is_named(artifact: Path) -> None:
    (artifact / "model.joblib").unlink()
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact)
    assert str(info.value) == (
        f"{artifact / 'model.joblib'}: model file named by the manifest is missing"
    )


def test_a_missing_manifest_is_named(artifact: Path) -> None:
    (artifact / "model.json").unlink()
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact)
    assert str(info.value) == f"{artifact / 'model.json'}: manifest not found"


# tampered manifests -------------------------------------------------------------------


def _truncate(folder: Path) -> None:
    path = folder / "model.json"
    path.write_bytes(path.read_bytes()[:100])


def _not_utf8(folder: Path) -> None:
    path = folder / "model.json"
    path.write_bytes(path.read_bytes().replace(b'"iris"', b'"ir\xffis"'))


def _drop_artifact(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.pop("artifact"))


def _version_as_text(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.update(version="one"))


def _unknown_field(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.update(owner="me"))


def _bad_histogram(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m["features"][0]["stats"]["histogram"]["counts"].pop())


def _path_in_file(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m["artifact"].update(file="../model.joblib"))


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_truncate, "(root): Invalid JSON: "),
        (_not_utf8, "(root): Invalid JSON: invalid unicode code point"),
        (_drop_artifact, "artifact: Field required"),
        (_version_as_text, "version: Input should be a valid integer"),
        (_unknown_field, "owner: Extra inputs are not permitted"),
        (_bad_histogram, "features.0.stats.number.histogram: Value error, histogram has "),
        (_path_in_file, "artifact.file: Value error, must be a plain file name"),
    ],
)
def test_a_tampered_manifest_is_refused_naming_the_file(
    artifact: Path, tamper: Callable[[Path], None], problem: str
) -> None:
    tamper(artifact)
    for read in (read_manifest, load_artifact):
        with pytest.raises(ArtifactError) as info:
            read(artifact)
        message = str(info.value)
        assert message.startswith(f"{artifact / 'model.json'}: invalid manifest: ")
        assert problem in message


# library versions -----------------------------------------------------------------------


def _other_versions() -> list[str]:
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    return [f"{major}.{minor + 1}.0", f"{major + 1}.{minor}.0", "0.24.2"]


@pytest.mark.parametrize("trained_with", _other_versions())
def test_another_sklearn_minor_is_refused_unless_allowed(artifact: Path, trained_with: str) -> None:
    _edit_manifest(artifact, lambda m: m["environment"].update(scikit_learn=trained_with))
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact)
    assert str(info.value) == (
        f"{artifact}: made with scikit-learn {trained_with}, but this process has "
        f"{sklearn.__version__}; a pickled model may fail or silently predict differently "
        "across minor versions. Retrain or re-export it where it is served (with scikit-learn "
        f"{sklearn.__version__}), or set TABSERVE_ALLOW_VERSION_MISMATCH=true to serve it anyway."
    )
    loaded = load_artifact(artifact, allow_version_mismatch=True)
    assert loaded.manifest.environment.scikit_learn == trained_with
    assert loaded.estimator.predict(load_bundled("iris").features[:1]).tolist() == ["setosa"]


def test_another_sklearn_patch_release_loads(artifact: Path) -> None:
    major, minor = sklearn.__version__.split(".")[:2]
    _edit_manifest(artifact, lambda m: m["environment"].update(scikit_learn=f"{major}.{minor}.99"))
    assert load_artifact(artifact).manifest.environment.scikit_learn == f"{major}.{minor}.99"


# version numbering ----------------------------------------------------------------------


def test_versions_count_up_from_one(models_dir: Path) -> None:
    assert next_version(models_dir, "iris") == 1
    assert _train_iris(models_dir).manifest.version == 1
    assert _train_iris(models_dir).manifest.version == 2
    assert list_versions(models_dir, "iris") == [1, 2]
    assert read_manifest(models_dir / "iris" / "2").version == 2
    assert _train_iris(models_dir, "other").manifest.version == 1
    assert list_models(models_dir) == {"iris": [1, 2], "other": [1]}


def test_an_explicit_version_sets_where_numbering_continues(
    models_dir: Path, call_cli: Any
) -> None:
    args = ["--dataset", "iris", "--model", "random_forest", "--param", "n_estimators=5"]
    args += ["--models-dir", str(models_dir)]
    assert call_cli(*args, "--version", "5").code == 0
    assert list_versions(models_dir, "iris") == [5]
    result = call_cli(*args)
    assert result.code == 0
    assert result.stdout.startswith("model iris version 6 (RandomForestClassifier)\n")
    assert list_versions(models_dir, "iris") == [5, 6]
    assert read_manifest(models_dir / "iris" / "6").version == 6
    assert call_cli(*args, "--version", "3").code == 0
    assert list_versions(models_dir, "iris") == [3, 5, 6]
    assert next_version(models_dir, "iris") == 7


def test_an_existing_version_is_never_overwritten(models_dir: Path, tree: Tree) -> None:
    _train_iris(models_dir, version=5)
    before = tree(models_dir)
    with pytest.raises(VersionExistsError) as info:
        _train_iris(models_dir, version=5)
    assert str(info.value) == (
        f"{models_dir / 'iris' / '5'} already exists: versions are never overwritten; "
        "omit --version to get the next free one"
    )
    assert tree(models_dir) == before


def test_the_cli_refuses_an_existing_version(models_dir: Path, call_cli: Any, tree: Tree) -> None:
    args = ["--dataset", "iris", "--model", "random_forest", "--param", "n_estimators=5"]
    args += ["--models-dir", str(models_dir), "--version", "1"]
    assert call_cli(*args).code == 0
    before = tree(models_dir)
    result = call_cli(*args)
    assert result.code == 2
    assert result.stdout == ""
    assert (
        f"error: {models_dir / 'iris' / '1'} already exists: versions are never overwritten; "
        "omit --version to get the next free one\n"
    ) in result.stderr
    assert "fitting" not in result.stderr  # refused before any training work
    assert tree(models_dir) == before


def test_a_version_that_appears_during_export_wins(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, tree: Tree
) -> None:
    target = models_dir / "iris" / "1"
    real_dump = joblib.dump

    def dump_then_race(value: Any, path: Path) -> Any:
        result = real_dump(value, path)
        target.mkdir(parents=True)
        (target / "model.joblib").write_bytes(b"the other writer")
        return result

    monkeypatch.setattr(joblib, "dump", dump_then_race)
    with pytest.raises(VersionExistsError) as info:
        _train_iris(models_dir)
    assert str(info.value).startswith(f"{target} appeared during export: ")
    assert tree(models_dir) == {
        "iris": None,
        "iris/1": None,
        "iris/1/model.joblib": b"the other writer",
    }


# atomic export --------------------------------------------------------------------------


class DiskFullError(OSError):
    pass


def _fail_dump(*_: Any, **__: Any) -> None:
    raise DiskFullError(28, "No space left on device")


def _fail_manifest_write(self: Path, *args: Any, **kwargs: Any) -> int:
    if self.name == "model.json":
        self.write_bytes(b'{"half": ')
        raise DiskFullError(28, "No space left on device")
    return REAL_WRITE_TEXT(self, *args, **kwargs)


def _interrupt_manifest_write(self: Path, *args: Any, **kwargs: Any) -> int:
    if self.name == "model.json":
        self.write_bytes(b'{"half": ')
        raise KeyboardInterrupt
    return REAL_WRITE_TEXT(self, *args, **kwargs)


REAL_WRITE_TEXT = Path.write_text


DISK_FULL = "cannot write the artifact: No space left on device"


@pytest.mark.parametrize(
    ("target", "replacement", "error", "message"),
    [
        ("joblib.dump", _fail_dump, ArtifactError, DISK_FULL),
        ("pathlib.Path.write_text", _fail_manifest_write, ArtifactError, DISK_FULL),
        ("pathlib.Path.write_text", _interrupt_manifest_write, KeyboardInterrupt, ""),
    ],
    ids=["model-dump", "manifest-write", "interrupt"],
)
def test_a_failed_export_leaves_nothing_behind(
    target: str,
    replacement: Callable[..., Any],
    error: type[BaseException],
    message: str,
    models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tree: Tree,
) -> None:
    _train_iris(models_dir)
    before = tree(models_dir)
    assert set(before) == {
        "iris",
        "iris/1",
        "iris/1/model.joblib",
        "iris/1/model.json",
        "iris/1/model.seal.json",
    }
    monkeypatch.setattr(target, replacement)
    with pytest.raises(error) as info:
        _train_iris(models_dir)
    monkeypatch.undo()
    if message:
        assert str(info.value) == f"{models_dir / 'iris' / '2'}: {message}"
        assert isinstance(info.value.__cause__, DiskFullError)
    assert not (models_dir / "iris" / "2").exists()
    assert tree(models_dir) == before  # no hidden staging folder either
    assert list_versions(models_dir, "iris") == [1]
    assert list_models(models_dir) == {"iris": [1]}
    assert _train_iris(models_dir).manifest.version == 2


def test_the_cli_reports_a_failed_write(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, call_cli: Any
) -> None:
    monkeypatch.setattr(joblib, "dump", _fail_dump)
    result = call_cli(
        "--dataset", "iris", "--model", "logistic_regression", "--models-dir", str(models_dir)
    )
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.endswith(f"error: {models_dir / 'iris' / '1'}: {DISK_FULL}\n")
    assert list_models(models_dir) == {}
    assert not models_dir.exists()  # the export created it, and took it back


@pytest.mark.parametrize("target", ["joblib.dump", "pathlib.Path.write_text"])
def test_a_failed_first_export_leaves_no_model_folder(
    target: str, models_dir: Path, monkeypatch: pytest.MonkeyPatch, tree: Tree
) -> None:
    _train_iris(models_dir, name="other")
    before = tree(models_dir)
    replacement = _fail_dump if target == "joblib.dump" else _fail_manifest_write
    monkeypatch.setattr(target, replacement)
    with pytest.raises(ArtifactError, match=DISK_FULL):
        _train_iris(models_dir)
    monkeypatch.undo()
    assert not (models_dir / "iris").exists()
    assert tree(models_dir) == before  # the models directory existed: it stays, untouched
    assert _train_iris(models_dir).manifest.version == 1


def test_a_models_dir_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    with pytest.raises(ArtifactError) as info:
        _train_iris(blocker / "models")
    assert str(info.value).startswith(f"{blocker / 'models' / 'iris'}: cannot create folder: ")
    assert blocker.read_text() == "a file"


CRASH_SCRIPT = """
import os
import sys
from pathlib import Path

real_write_text = Path.write_text

def crash_half_way(self, data, *args, **kwargs):
    if self.name == "model.json":
        with open(self, "w", encoding="utf-8") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        os._exit(1)
    return real_write_text(self, data, *args, **kwargs)

Path.write_text = crash_half_way

from tabserve.training.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("existing", [0, 1])
def test_a_crash_mid_export_publishes_nothing(existing: int, models_dir: Path) -> None:
    for _ in range(existing):
        _train_iris(models_dir)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            "--dataset",
            "iris",
            "--model",
            "random_forest",
            "--param",
            "n_estimators=5",
            "--models-dir",
            str(models_dir),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "[5/5] exporting to" in proc.stderr
    assert proc.stdout == ""

    crashed = version_path(models_dir, "iris", existing + 1)
    assert not crashed.exists()
    # the crash really happened half way: a hidden staging folder holds a partial manifest
    leftovers = [p for p in (models_dir / "iris").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(f".tmp-{existing + 1}-")
    assert sorted(p.name for p in leftovers[0].iterdir()) == ["model.joblib", "model.json"]
    with pytest.raises(ArtifactError, match="invalid manifest"):
        read_manifest(leftovers[0])

    expected = list(range(1, existing + 1))
    assert list_versions(models_dir, "iris") == expected
    assert list_models(models_dir) == ({"iris": expected} if expected else {})
    assert next_version(models_dir, "iris") == existing + 1
    # the next export takes the number the crashed one would have had, and is ignored no more
    assert _train_iris(models_dir).manifest.version == existing + 1
    assert list_models(models_dir) == {"iris": [*expected, existing + 1]}
    assert load_artifact(crashed).manifest.version == existing + 1


# the repository layout ------------------------------------------------------------------


def test_listing_sees_only_complete_numbered_versions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert list_models(models) == {}
    assert list_versions(models, "iris") == []
    for folder in ["iris/1", "iris/2", "iris/10", "iris/.tmp-3-abc", "iris/0", "iris/latest"]:
        (models / folder).mkdir(parents=True)
    (models / "iris" / "4").write_text("a file, not a version")
    (models / "empty").mkdir()
    (models / ".hidden" / "1").mkdir(parents=True)
    (models / "wine" / "7").mkdir(parents=True)
    (models / "README").write_text("not a model")
    assert list_versions(models, "iris") == [1, 2, 10]
    assert next_version(models, "iris") == 11
    assert list_models(models) == {"iris": [1, 2, 10], "wine": [7]}
    assert version_path(models, "iris", 3) == models / "iris" / "3"


def test_save_artifact_fills_in_name_version_environment_and_file(
    models_dir: Path, trained: Path
) -> None:
    manifest = read_manifest(trained)
    fields = manifest.model_dump(exclude={"name", "version", "environment", "artifact"})
    estimator = load_artifact(trained).estimator
    saved = save_artifact(estimator, fields, models_dir, "copy", 4)
    assert saved.name == "copy"
    assert saved.version == 4
    assert saved.environment == manifest.environment
    assert saved.features == manifest.features
    folder = models_dir / "copy" / "4"
    assert read_manifest(folder) == saved
    assert (
        saved.artifact.sha256 == hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    )
    np.testing.assert_array_equal(
        load_artifact(folder).estimator.predict_proba(load_bundled("iris").features),
        estimator.predict_proba(load_bundled("iris").features),
    )


# names and versions that cannot be a folder --------------------------------------------


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", ".hidden", "-dash", "my model", "x" * 65, "", "abc\n"]
)
def test_a_name_that_is_not_a_plain_folder_name_is_refused_before_writing(
    name: str, tmp_path: Path, trained: Path, tree: Tree
) -> None:
    models_dir = tmp_path / "deep" / "models"
    manifest = read_manifest(trained)
    fields = manifest.model_dump(exclude={"name", "version", "environment", "artifact"})
    estimator = load_artifact(trained).estimator
    before = tree(tmp_path)
    message = (
        f"model name {name!r} is not valid: expected 1 to 64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit; choose one with --name"
    )
    for version in (None, 1):
        with pytest.raises(ArtifactError) as info:
            save_artifact(estimator, fields, models_dir, name, version)
        assert str(info.value) == message
        with pytest.raises(ArtifactError) as info:
            _train_iris(models_dir, name, version)
        assert str(info.value) == message
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["a", "iris", "Model_2.v1-beta", "9" * 64])
def test_plain_names_are_accepted(name: str, models_dir: Path) -> None:
    assert _train_iris(models_dir, name).manifest.name == name
    assert list_models(models_dir) == {name: [1]}


@pytest.mark.parametrize("version", [0, -1])
def test_a_version_below_one_is_refused_before_writing(
    version: int, models_dir: Path, trained: Path
) -> None:
    manifest = read_manifest(trained)
    fields = manifest.model_dump(exclude={"name", "version", "environment", "artifact"})
    with pytest.raises(ArtifactError) as info:
        save_artifact(load_artifact(trained).estimator, fields, models_dir, "iris", version)
    assert str(info.value) == f"version {version} is not valid: expected a positive integer"
    with pytest.raises(ArtifactError) as info:
        _train_iris(models_dir, version=version)
    assert str(info.value) == f"version {version} is not valid: expected a positive integer"
    assert not models_dir.exists()


def test_save_artifact_itself_refuses_an_existing_version(
    models_dir: Path, trained: Path, tree: Tree
) -> None:
    manifest = read_manifest(trained)
    fields = manifest.model_dump(exclude={"name", "version", "environment", "artifact"})
    estimator = load_artifact(trained).estimator
    save_artifact(estimator, fields, models_dir, "iris", 2)
    before = tree(models_dir)
    with pytest.raises(VersionExistsError) as info:
        save_artifact(estimator, fields, models_dir, "iris", 2)
    assert str(info.value) == (
        f"{models_dir / 'iris' / '2'} already exists: versions are never overwritten; "
        "omit --version to get the next free one"
    )
    assert tree(models_dir) == before


def test_manifests_are_utf8_whatever_the_locale(write_csv: Callable[[str, str], Path]) -> None:
    words = ["caf\u00e9", "b\u00e4r"]
    rows = "".join(f"{i},{words[i % 2]},{'ab'[i % 2]}\n" for i in range(8))
    path = write_csv("umlaut.csv", "gr\u00f6\u00dfe,ort,y\n" + rows)
    models_dir = path.parent / "models"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env.update(LANG="C", LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env["PYTHONPATH"] = str(REPO_ROOT)
    args = ["--csv", str(path), "--target", "y", "--model", "logistic_regression"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabserve.training",
            *args,
            "--models-dir",
            str(models_dir),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    folder = models_dir / "umlaut" / "1"
    assert "gr\u00f6\u00dfe".encode() in (folder / "model.json").read_bytes()
    manifest = load_artifact(folder).manifest
    assert manifest.feature_names == ["gr\u00f6\u00dfe", "ort"]
    assert manifest.features[1].stats == CategoryStats(
        count=8, missing=0, categories=sorted(words), frequencies=[4, 4]
    )


def test_version_folders_other_than_ascii_digits_are_not_versions(tmp_path: Path) -> None:
    # "²" and "①" made int() raise and fail the listing; fullwidth and Arabic-Indic
    # one (U+FF11, U+0661) were read as version 1.
    for name in ("2", "²", "①", "\uff11", "\u0661", "9" * 19, "-3", "0"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert list_versions(tmp_path, "m") == [2]
    assert list_models(tmp_path) == {"m": [2]}
