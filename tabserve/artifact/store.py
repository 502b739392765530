"""Write and read model artifacts: the model file plus its `model.json` manifest.

The model file is `model.joblib` (a pickle) or `model.skops` (the safe format, see
`tabserve.artifact.skops_format`). Writing is atomic: everything goes into a hidden
temporary folder that is renamed into place only when complete, so a crash never
leaves a half-written version. Reading checks, before deserializing anything, that
the files lie inside the models directory, that the manifest is valid, that the
file's sha256 matches and that the library versions are compatible.
"""

from __future__ import annotations

import hashlib
import io
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError
from sklearn.exceptions import InconsistentVersionWarning

from tabserve.artifact import skops_format
from tabserve.artifact.errors import ArtifactError, VersionExistsError
from tabserve.artifact.libraries import SCIKIT_LEARN, check_versions, libraries_of
from tabserve.artifact.manifest import (
    MANIFEST_FILE,
    MODEL_FILES,
    MODEL_NAME_PATTERN,
    ArtifactFile,
    ArtifactFormat,
    Environment,
    Manifest,
)
from tabserve.artifact.repository import next_version, version_path
from tabserve.artifact.seal import check_seal, load_public_key, make_seal, write_seal


@dataclass(frozen=True)
class LoadedArtifact:
    """A verified estimator with its manifest and folder."""

    estimator: Any
    manifest: Manifest
    path: Path


def current_environment(
    artifact_format: ArtifactFormat = "joblib", estimator: Any = None
) -> Environment:
    """Library versions of this process, as recorded in manifests (with those of the
    libraries `estimator`'s steps come from, beyond scikit-learn)."""
    return Environment(
        python=platform.python_version(),
        numpy=np.__version__,
        scikit_learn=sklearn.__version__,
        joblib=joblib.__version__,
        skops=skops_format.version() if artifact_format == "skops" else None,
        libraries=libraries_of(estimator) if estimator is not None else {},
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
    artifact_format: ArtifactFormat = "joblib",
    signing_key: Ed25519PrivateKey | None = None,
) -> Manifest:
    """Export `estimator` as a new version of `name`; return the manifest written.

    `manifest_fields` holds every manifest field except name, version, environment
    and artifact, which are filled in here. An existing version is never replaced.
    `artifact_format` is `joblib` (a pickle) or `skops` (loading it runs no code).
    The manifest's digest goes into its seal, signed with `signing_key` when given.
    """
    if version is None:
        check_export(models_dir, name, None)
        version = next_version(models_dir, name)
    check_export(models_dir, name, version)
    target = version_path(models_dir, name, version)
    staging = target.parent / f".tmp-{version}-{uuid.uuid4().hex}"
    created = _missing_folders(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        _remove_empty(created)
        raise ArtifactError(f"{target.parent}: cannot create folder: {_reason(exc)}") from exc
    try:
        model_path = staging / MODEL_FILES[artifact_format]
        trusted_types = _dump(estimator, model_path, artifact_format)
        _fsync(model_path)
        manifest = Manifest.model_validate(
            {
                **manifest_fields,
                "name": name,
                "version": version,
                "environment": current_environment(artifact_format, estimator),
                "artifact": ArtifactFile(
                    file=model_path.name,
                    format=artifact_format,
                    sha256=sha256_of(model_path),
                    size_bytes=model_path.stat().st_size,
                    trusted_types=trusted_types,
                ),
            }
        )
        manifest_path = staging / MANIFEST_FILE
        # JSON is UTF-8 whatever the locale: feature names and categories come from data.
        text = manifest.model_dump_json(indent=2) + "\n"
        manifest_path.write_text(text, encoding="utf-8")
        _fsync(manifest_path)
        write_seal(staging, make_seal(text.encode("utf-8"), signing_key))
        _publish(staging, target)
    except OSError as exc:  # disk full, permissions, I/O errors: nothing is published
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise ArtifactError(f"{target}: cannot write the artifact: {_reason(exc)}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    return manifest


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(created: list[Path]) -> None:
    """Undo the folders a failed export created, deepest first, unless something else
    (a concurrent export) has put files in them meanwhile."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _dump(estimator: Any, path: Path, artifact_format: ArtifactFormat) -> list[str]:
    """Write the model file; return the skops types it needs (none for joblib)."""
    if artifact_format == "skops":
        return skops_format.dump(estimator, path)
    joblib.dump(estimator, path)
    return []


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


def read_manifest(folder: Path, *, root: Path | None = None) -> Manifest:
    """Read and validate `model.json` in `folder` (inside `root`, when given)."""
    return _parse_manifest(folder / MANIFEST_FILE, _manifest_bytes(folder, root))


def _manifest_bytes(folder: Path, root: Path | None) -> bytes:
    path = folder / MANIFEST_FILE
    try:
        if root is not None:
            _inside(path, _resolved_root(root), "manifest")
        # Bytes, not text: pydantic decodes them as UTF-8 and reports bad bytes as invalid
        # JSON, where read_text() would raise UnicodeDecodeError or use the locale's codec.
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: manifest not found") from exc
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read manifest: {_reason(exc)}") from exc


def _parse_manifest(path: Path, data: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ArtifactError(f"{path}: invalid manifest: {problems}") from exc


def _resolved_root(root: Path) -> Path:
    try:
        return root.resolve(strict=True)
    except OSError as exc:
        raise ArtifactError(f"{root}: models directory not found: {_reason(exc)}") from exc


def _inside(path: Path, boundary: Path, what: str) -> Path:
    """`path` with every symlink resolved, refused unless it lies under `boundary`."""
    try:
        real = path.resolve(strict=True)  # FileNotFoundError goes to the caller
    except RuntimeError as exc:  # a symlink loop
        raise ArtifactError(f"{path}: cannot resolve the {what}: {exc}") from exc
    if not real.is_relative_to(boundary):
        raise ArtifactError(
            f"{path}: the {what} resolves to {real}, outside {boundary}; "
            "refusing to follow a path or symlink that leaves the models directory"
        )
    return real


def check_compatible(manifest: Manifest, source: str, *, allow_mismatch: bool = False) -> None:
    """Refuse a model made with another scikit-learn major.minor (or another version of a
    library it uses, see `libraries.COMPATIBLE_PARTS`), or one whose library is missing.

    `allow_mismatch` lets other versions through; a missing library is refused anyway.
    """
    recorded = {SCIKIT_LEARN: manifest.environment.scikit_learn, **manifest.environment.libraries}
    check_versions(recorded, source, allow_mismatch=allow_mismatch)


def load_artifact(
    folder: Path,
    *,
    allow_version_mismatch: bool = False,
    root: Path | None = None,
    public_key: Ed25519PublicKey | Path | None = None,
) -> LoadedArtifact:
    """Load a verified estimator from a version folder.

    Checks, in order: the folder, the manifest and the model file resolve (symlinks
    followed) inside `root`, the models directory (or inside `folder` when no root is
    given); the manifest validates and names a plain file in the folder; the seal
    vouches for the manifest's bytes (and is signed by `public_key`, when given: see
    `tabserve.artifact.seal`; a Path is read as its PEM file); the model's size and
    sha256 match; scikit-learn major.minor matches (unless allowed). Only then is the
    model deserialized, from the very bytes that were hashed.
    """
    boundary = _resolved_root(root if root is not None else folder)
    try:
        _inside(folder, boundary, "version folder")
    except FileNotFoundError as exc:
        raise ArtifactError(f"{folder}: version folder not found") from exc
    raw_manifest = _manifest_bytes(folder, boundary)
    manifest = _parse_manifest(folder / MANIFEST_FILE, raw_manifest)
    if isinstance(public_key, Path):
        public_key = load_public_key(public_key)
    check_seal(folder, raw_manifest, public_key)
    artifact = manifest.artifact
    model_path = folder / artifact.file
    try:
        real = _inside(model_path, boundary, "model file")
        if not real.is_file():
            raise ArtifactError(f"{model_path}: the model file is not a regular file")
        data = real.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(f"{model_path}: model file named by the manifest is missing") from exc
    except OSError as exc:
        raise ArtifactError(f"{model_path}: cannot read the model: {_reason(exc)}") from exc
    if len(data) != artifact.size_bytes:
        raise ArtifactError(
            f"{model_path}: {len(data)} bytes, but the manifest says {artifact.size_bytes}; "
            "the file is truncated, corrupt or was modified"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != artifact.sha256:
        raise ArtifactError(
            f"{model_path}: sha256 is {actual}, but the manifest says "
            f"{artifact.sha256}; the file is corrupt or was modified"
        )
    check_compatible(manifest, str(folder), allow_mismatch=allow_version_mismatch)
    if artifact.format == "skops":
        estimator = skops_format.load(data, str(model_path), artifact.trusted_types)
    else:
        estimator = _unpickle(data, model_path, allow_version_mismatch)
    return LoadedArtifact(estimator=estimator, manifest=manifest, path=folder)


def _unpickle(data: bytes, path: Path, allow_version_mismatch: bool) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore" if allow_version_mismatch else "error", InconsistentVersionWarning
            )
            return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot load the model: {exc}") from exc
