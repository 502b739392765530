"""Load model versions from the models directory: verify, build schemas, warm up."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tabserve.artifact.manifest import Manifest
from tabserve.artifact.repository import list_models, version_path
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.engines import CompiledRuntime
from tabserve.service.core.registry import ModelVersion
from tabserve.service.core.runtime import Runtime, SklearnRuntime
from tabserve.service.core.validation import FeatureSchema

log = logging.getLogger("tabserve.models")
# An absolute path in an error message: after the start, a space, a quote or "(".
_ABSOLUTE = re.compile(r"""(?<![^\s'"(=])/[^\s:,;'"()]+""")


@dataclass(frozen=True)
class LoadingConfig:
    """What loading a model version needs to know (the composition root fills it in)."""

    models_dir: Path
    """Folder of `<name>/<version>/` artifacts; it also bounds where their files may lead."""
    engine: Literal["auto", "sklearn"] = "auto"
    allow_version_mismatch: bool = False
    public_key: Path | None = None
    """PEM file of the Ed25519 key artifacts' seals must verify with (None: seals unsigned)."""
    max_rows: int = 10_000
    reject_out_of_range: bool = False
    batch_rows_by_model: Mapping[str, int] = field(default_factory=dict)


def load_all(config: LoadingConfig, dataplane: DataPlane) -> None:
    """Load every complete version under `config.models_dir` into the data plane's registry.

    A version that fails is kept as FAILED with its reason; the others still serve.
    """
    found = list_models(config.models_dir)
    if not found:
        log.warning("no models found under %s", config.models_dir)
    registry = dataplane.registry
    for name, versions in found.items():
        for version in versions:
            path = version_path(config.models_dir, name, version)
            registry.add(load_version(path, name, version, config, dataplane))
    log.info("%s (from %s)", registry.describe(), config.models_dir)


def load_version(
    path: Path, name: str, version: int, config: LoadingConfig, dataplane: DataPlane
) -> ModelVersion:
    """Load, verify and warm up one version, then have `dataplane` serve it.

    Never raises: a failure is the entry's state, with its reason.
    """
    runtime = runtime_for(path, config)
    metrics = dataplane.metrics
    started = time.perf_counter()
    try:
        manifest, schema = prepare_version(runtime, name, version, config)
    except Exception as exc:
        metrics.loading.failures.labels(name).inc()
        metrics.loading.info.labels(name, str(version), "", "", "none").set(0)
        log.error("model %s version %s failed to load: %s", name, version, exc)
        runtime.unload()
        error = relative_paths(str(exc), config.models_dir)
        return ModelVersion.failed(name, version, path, runtime.engine, error)
    load_seconds = time.perf_counter() - started
    served = dataplane.serve(path, manifest, schema, runtime, config.batch_rows_by_model.get(name))
    metrics.loading.seconds.labels(name, str(version)).set(load_seconds)
    metrics.loading.info.labels(
        name,
        str(version),
        manifest.artifact.sha256,
        manifest.environment.scikit_learn,
        runtime.engine,
    ).set(1)
    log.info(
        "model %s version %s ready (%s, %s, %.2fs)",
        name,
        version,
        manifest.estimator.class_name,
        runtime.engine,
        load_seconds,
    )
    return ModelVersion.of(served, load_seconds)


def runtime_for(path: Path, config: LoadingConfig) -> Runtime:
    """The runtime the service serves a version folder with (not loaded yet)."""
    # The models directory bounds where a version's files may lead (symlinks included).
    root = config.models_dir
    mismatch = config.allow_version_mismatch
    # The key file is read at each load: a rotated key applies to the next version loaded.
    key = config.public_key
    if config.engine == "sklearn":
        return SklearnRuntime(path, allow_version_mismatch=mismatch, root=root, public_key=key)
    return CompiledRuntime(path, allow_version_mismatch=mismatch, root=root, public_key=key)


def prepare_version(
    runtime: Runtime, name: str, version: int, config: LoadingConfig
) -> tuple[Manifest, FeatureSchema]:
    """Load and verify `runtime`'s artifact, check it is `name` `version`, build its
    schema and warm it up on one typical row. Raises whatever loading raises.

    The service (`load_version`) and batch scoring (`service.batch`) both load this way,
    so a file is scored by exactly the model and checks that serve requests.
    """
    manifest = runtime.load()
    if (manifest.name, manifest.version) != (name, version):
        raise ValueError(
            f"manifest says {manifest.name!r} version {manifest.version}, "
            f"but it lies in {name}/{version}"
        )
    schema = FeatureSchema(
        manifest,
        max_rows=config.max_rows,
        reject_out_of_range=config.reject_out_of_range,
    )
    runtime.predict(schema.example_batch().features)
    return manifest, schema


def relative_paths(message: str, models_dir: Path) -> str:
    """`message` with absolute paths made relative to the models directory.

    Load failures are shown to clients (`GET /models`, 503 answers, the repository
    API); where the server keeps its files is not theirs to know. The log keeps
    the full message.
    """
    root = models_dir.absolute()
    for prefix in dict.fromkeys([str(root.resolve()), str(root)]):
        message = message.replace(prefix + os.sep, "")
    return _ABSOLUTE.sub(lambda found: os.path.relpath(found.group(), root), message)
