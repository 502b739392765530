"""Write and read model artifacts: `model.joblib` plus its `model.json` manifest.

Writing is atomic: everything goes into a hidden temporary folder that is renamed
into place only when complete, so a crash never leaves a half-written version.
Reading verifies the manifest, the file's sha256 and the library versions before
unpickling anything.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from pydantic import ValidationError
from sklearn.exceptions import InconsistentVersionWarning

from training.errors import ArtifactError, VersionExistsError
from training.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    MODEL_NAME_PATTERN,
    ArtifactFile,
    Environment,
    Manifest,
)
from training.repository import next_version, version_path


@dataclass(frozen=True)
class LoadedArtifact:
    """A verified estimator with its manifest and folder."""

    estimator: Any
    manifest: Manifest
    path: Path


def current_environment() -> Environment:
    """Library versions of this process, as recorded in manifests."""
    return Environment(
        python=platform.python_version(),
        numpy=np.__version__,
        scikit_learn=sklearn.__version__,
        joblib=joblib.__version__,
    )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_export(models_dir: Path, name: str, version: int | None) -> None:
    """Refuse, before any work or any write, a name or version `save_artifact` would refuse.

    The name becomes a folder, so it must be a plain file name (no separators, no
    leading dot); an explicit version must be positive and not exist yet.
    """
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ArtifactError(
            f"model name {name!r} is not valid: expected 1 to 64 letters, digits, '_', '.' "
            "or '-', starting with a letter or digit; choose one with --name"
        )
    if version is None:
        return
    if version < 1:
        raise ArtifactError(f"version {version} is not valid: expected a positive integer")
    target = version_path(models_dir, name, version)
    if target.exists():
        raise VersionExistsError(
            f"{target} already exists: versions are never overwritten; "
            "omit --version to get the next free one"
        )


def save_artifact(
    estimator: Any,
    manifest_fields: dict[str, Any],
    models_dir: Path,
    name: str,
    version: int | None = None,
) -> Manifest:
    """Export `estimator` as a new version of `name`; return the manifest written.

    `manifest_fields` holds every manifest field except name, version, environment
    and artifact, which are filled in here. An existing version is never replaced.
    """
    if version is None:
        check_export(models_dir, name, None)
        version = next_version(models_dir, name)
    check_export(models_dir, name, version)
    target = version_path(models_dir, name, version)
    staging = target.parent / f".tmp-{version}-{uuid.uuid4().hex}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise ArtifactError(f"{target.parent}: cannot create folder: {_reason(exc)}") from exc
    try:
        model_path = staging / MODEL_FILE
        joblib.dump(estimator, model_path)
        _fsync(model_path)
        manifest = Manifest.model_validate(
            {
                **manifest_fields,
                "name": name,
                "version": version,
                "environment": current_environment(),
                "artifact": ArtifactFile(
                    file=MODEL_FILE,
                    sha256=sha256_of(model_path),
                    size_bytes=model_path.stat().st_size,
                ),
            }
        )
        manifest_path = staging / MANIFEST_FILE
        # JSON is UTF-8 whatever the locale: feature names and categories come from data.
        manifest_path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        _fsync(manifest_path)
        _publish(staging, target)
    except OSError as exc:  # disk full, permissions, I/O errors: nothing is published
        shutil.rmtree(staging, ignore_errors=True)
        raise ArtifactError(f"{target}: cannot write the artifact: {_reason(exc)}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _publish(staging: Path, target: Path) -> None:
    # rename() onto an existing non-empty folder fails, so a concurrent export of
    # the same version loses cleanly instead of mixing files.
    try:
        staging.rename(target)
    except OSError as exc:
        raise VersionExistsError(f"{target} appeared during export: {exc.strerror}") from exc
    _fsync_dir(target.parent)


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(folder: Path) -> Manifest:
    """Read and validate `model.json` in `folder`."""
    path = folder / MANIFEST_FILE
    try:
        # Bytes, not text: pydantic decodes them as UTF-8 and reports bad bytes as invalid
        # JSON, where read_text() would raise UnicodeDecodeError or use the locale's codec.
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: manifest not found") from exc
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ArtifactError(f"{path}: invalid manifest: {problems}") from exc


def check_compatible(manifest: Manifest, source: str) -> None:
    """Refuse a model trained with another scikit-learn major.minor version."""
    trained = manifest.environment.scikit_learn
    if _major_minor(trained) != _major_minor(sklearn.__version__):
        raise ArtifactError(
            f"{source}: trained with scikit-learn {trained}, but this process has "
            f"{sklearn.__version__}; a pickled model may fail or silently predict "
            "differently across minor versions. Retrain it, or allow the mismatch explicitly."
        )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def load_artifact(folder: Path, *, allow_version_mismatch: bool = False) -> LoadedArtifact:
    """Load a verified estimator from a version folder.

    Checks, in order: the manifest validates; the model file is the one it names
    and lies in the same folder; its sha256 matches; scikit-learn major.minor
    matches (unless allowed). Only then is the pickle loaded.
    """
    manifest = read_manifest(folder)
    model_path = folder / manifest.artifact.file
    if not model_path.is_file():
        raise ArtifactError(f"{model_path}: model file named by the manifest is missing")
    actual = sha256_of(model_path)
    if actual != manifest.artifact.sha256:
        raise ArtifactError(
            f"{model_path}: sha256 is {actual}, but the manifest says "
            f"{manifest.artifact.sha256}; the file is corrupt or was modified"
        )
    if not allow_version_mismatch:
        check_compatible(manifest, str(folder))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore" if allow_version_mismatch else "error", InconsistentVersionWarning
            )
            estimator = joblib.load(model_path)
    except Exception as exc:
        raise ArtifactError(f"{model_path}: cannot load the model: {exc}") from exc
    return LoadedArtifact(estimator=estimator, manifest=manifest, path=folder)
