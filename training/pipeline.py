"""One training run: data -> split -> fit -> evaluate -> profile -> versioned artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sklearn.model_selection import train_test_split

from tabserve.artifact.manifest import (
    ArtifactFormat,
    EstimatorInfo,
    Feature,
    Manifest,
    TargetInfo,
    TrainingData,
)
from tabserve.artifact.store import check_export, save_artifact
from tabserve.training.datasets import Dataset
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ParamValue, build_pipeline
from tabserve.training.evaluate import evaluate
from tabserve.training.profile import category_stats, fingerprint, histogram, numeric_stats
from tabserve.training.progress import Progress


@dataclass(frozen=True)
class TrainRequest:
    """What to train and where to put it."""

    dataset: Dataset
    model: str
    models_dir: Path
    name: str
    params: dict[str, ParamValue] = field(default_factory=dict)
    seed: int = 0
    test_size: float = 0.2
    version: int | None = None
    artifact_format: ArtifactFormat = "joblib"
    signing_key: Ed25519PrivateKey | None = None  # signs the artifact's seal when given


@dataclass(frozen=True)
class TrainResult:
    """The manifest written and the fitted pipeline it describes."""

    manifest: Manifest
    pipeline: Any


def train(request: TrainRequest, progress: Progress | None = None) -> TrainResult:
    """Fit, evaluate and export one model version."""
    progress = progress or Progress(total=4, quiet=True)
    data = request.dataset
    check_export(request.models_dir, request.name, request.version)
    _check_trainable(data, request.test_size)
    with progress.step(f"splitting {len(data.target)} rows (test size {request.test_size})"):
        stratify = data.target if data.task == "classification" else None
        try:
            x_train, x_test, y_train, y_test = train_test_split(
                data.features,
                data.target,
                test_size=request.test_size,
                random_state=request.seed,
                stratify=stratify,
            )
        except ValueError as exc:
            raise TrainingError(f"cannot split {data.source} for evaluation: {exc}") from exc
    built = build_pipeline(request.model, data, request.params, request.seed)
    with progress.step(f"fitting {built.class_name} on {len(y_train)} rows"):
        try:
            built.pipeline.fit(x_train, y_train)
        except built.fit_errors as exc:
            # scikit-learn checks hyperparameter values only here (InvalidParameterError
            # is a ValueError), e.g. --param n_estimators=0; the boosting libraries raise
            # their own errors too.
            raise TrainingError(f"cannot fit {built.class_name} on {data.source}: {exc}") from exc
    with progress.step(f"evaluating on {len(y_test)} held-out rows"):
        scores = evaluate(built.pipeline, data.task, x_test, y_test)
    with progress.step(f"exporting to {request.models_dir / request.name}"):
        fields = {
            "created_at": datetime.now(UTC),
            "task": data.task,
            "estimator": EstimatorInfo(
                kind=request.model,
                class_name=built.class_name,
                params=built.params,
                pipeline=[name for name, _ in built.pipeline.steps],
                supports_missing=built.supports_missing,
            ),
            "features": _features(data),
            "target": _target_info(data, built.pipeline),
            "metrics": scores,
            "training": TrainingData(
                source=data.source,
                rows=len(data.target),
                train_rows=len(y_train),
                test_rows=len(y_test),
                test_size=request.test_size,
                seed=request.seed,
                fingerprint=fingerprint(data.features, data.target),
                log=data.log,
            ),
        }
        manifest = save_artifact(
            built.pipeline,
            fields,
            request.models_dir,
            request.name,
            request.version,
            request.artifact_format,
            request.signing_key,
        )
    return TrainResult(manifest=manifest, pipeline=built.pipeline)


def _check_trainable(data: Dataset, test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise TrainingError(f"test size must be between 0 and 1, got {test_size}")
    rows = len(data.target)
    if rows < 4:
        raise TrainingError(f"{data.source}: {rows} rows is too few to train and evaluate")
    if data.task == "classification":
        classes, counts = np.unique(data.target.astype(str), return_counts=True)
        if len(classes) < 2:
            raise TrainingError(
                f"{data.source}: target {data.target_name!r} has a single class "
                f"{str(classes[0])!r}; classification needs at least two"
            )
        rare = [str(c) for c, n in zip(classes, counts, strict=True) if n < 2]
        if rare:
            raise TrainingError(
                f"{data.source}: class {rare[0]!r} of target {data.target_name!r} has one row; "
                "every class needs at least two to be split for evaluation"
            )


def _features(data: Dataset) -> list[Feature]:
    out = []
    for index, column in enumerate(data.columns):
        values = data.features[:, index]
        stats = (
            numeric_stats(values.astype(np.float64))
            if column.type == "number"
            else category_stats(values)
        )
        out.append(Feature(name=column.name, type=column.type, stats=stats))
    return out


def _target_info(data: Dataset, pipeline: Any) -> TargetInfo:
    if data.task == "regression":
        return TargetInfo(name=data.target_name, histogram=histogram(data.target.astype(float)))
    classes = [c.item() if isinstance(c, np.generic) else c for c in pipeline.classes_]
    counts = [int(np.sum(data.target == c)) for c in pipeline.classes_]
    return TargetInfo(name=data.target_name, classes=classes, distribution=counts)
