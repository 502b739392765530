"""A model exported from its input signature alone: names and types, no reference data.

An MLflow model may come with a signature and nothing else: no input_example, no data.
It still serves, with what the signature says: the features (in the order the model
was fitted on, when it records one), each a number or a category, and whether it may be
missing. The manifest holds no training statistics, so validation checks names, types
and finite numbers (any string is a category), drift is marked unavailable, and the
compiled engine, which needs rows to check its parity on, leaves it to scikit-learn.

Before anything is written, the model must predict a row built from the signature (0
for each number, for each category a string it never saw) as the service will send
it: a model that refuses an unseen category would otherwise fail on requests that pass
validation, so it is refused here and needs `--data`, which gives the categories.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tabserve.artifact.frames import FrameBuilder
from tabserve.artifact.manifest import (
    ArtifactFormat,
    ColumnDtype,
    DriftInfo,
    Feature,
    Manifest,
    TrainingData,
)
from tabserve.artifact.store import check_export, save_artifact
from tabserve.training.errors import ExportError
from tabserve.training.export import (
    check_fitted,
    estimator_info,
    missing_allowed,
    target_info,
    task_of,
)
from tabserve.training.importable import check_importable
from tabserve.training.profile import fingerprint
from tabserve.training.reference import Reference

NO_DATA = (
    "imported without reference data (the signature alone): import with --data FILE, a "
    "sample of the training data, for drift"
)
UNSEEN = ""
"""The category of the probe row: no model was fitted on an empty string as a category."""


@dataclass(frozen=True)
class SignatureColumn:
    """One input column as a signature declares it."""

    name: str
    type: Literal["number", "category"]
    dtype: str
    """The pandas dtype the column had: float64, int64, object, bool, ..."""
    required: bool
    """False: the signature says the column may be missing."""


def export_from_signature(
    model: Any,
    columns: list[SignatureColumn],
    *,
    name: str,
    models_dir: str | Path = "models",
    version: int | None = None,
    format: ArtifactFormat = "joblib",
    source: str,
) -> Manifest:
    """Write fitted `model` as a new version of `name`, its features from `columns` alone."""
    models_dir = Path(models_dir)
    check_export(models_dir, name, version)
    check_fitted(model)
    task = task_of(model)
    check_importable(model)
    ordered, frame = _model_order(model, columns)
    features = [
        Feature(
            name=c.name,
            type=c.type,
            stats=None,
            dtype=ColumnDtype(name=c.dtype) if frame else None,
        )
        for c in ordered
    ]
    reference = Reference(features, _probe_row(features), frame=frame)
    _check_probe(model, reference)
    allowed = [
        ok and not c.required
        for c, ok in zip(ordered, missing_allowed(model, reference), strict=True)
    ]
    fields: dict[str, Any] = {
        "created_at": datetime.now(UTC),
        "task": task,
        "estimator": estimator_info(model, reference, any(allowed)),
        "features": [
            f.model_copy(update={"missing": ok}) for f, ok in zip(features, allowed, strict=True)
        ],
        "target": target_info(model, task, None, None),
        "metrics": {},
        "training": TrainingData(
            source=source,
            rows=0,
            train_rows=0,
            test_rows=0,
            test_size=0.0,
            seed=0,
            fingerprint=fingerprint(np.empty((0, len(features)), dtype=object), np.array([])),
        ),
        "drift": DriftInfo(available=False, reason=NO_DATA),
    }
    try:
        return save_artifact(model, fields, models_dir, name, version, format)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ExportError(f"the model cannot be pickled: {exc}") from exc


def _model_order(model: Any, columns: list[SignatureColumn]) -> tuple[list[SignatureColumn], bool]:
    """The columns in the order the model was fitted on, and whether it takes a DataFrame."""
    fitted = getattr(model, "feature_names_in_", None)
    given = [c.name for c in columns]
    if fitted is None:
        width = getattr(model, "n_features_in_", None)
        if isinstance(width, int | np.integer) and int(width) != len(columns):
            raise ExportError(
                f"the signature has {len(columns)} columns; the model was fitted on "
                f"{int(width)}: pass --data FILE with the columns it was fitted on"
            )
        return columns, False
    names = [str(n) for n in fitted]
    if sorted(names) != sorted(given):
        lacking = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        raise ExportError(
            f"the signature's columns differ from the ones the model was fitted on "
            f"(signature lacks {lacking or 'none'}, has extra {extra or 'none'}): pass "
            "--data FILE with the columns it was fitted on"
        )
    by_name = {c.name: c for c in columns}
    return [by_name[n] for n in names], True


def _probe_row(features: list[Feature]) -> Any:
    numeric = all(f.type == "number" for f in features)
    row = np.empty((1, len(features)), dtype=np.float64 if numeric else object)
    for i, feature in enumerate(features):
        boolean = feature.dtype is not None and feature.dtype.name in {"bool", "boolean"}
        row[0, i] = 0.0 if feature.type == "number" else ("False" if boolean else UNSEEN)
    return row


def _check_probe(model: Any, reference: Reference) -> None:
    """The model must predict the probe row as the service sends it."""
    served = FrameBuilder(reference.features)(reference.rows) if reference.frame else reference.rows
    try:
        model.predict(served)
    except Exception as exc:  # the model's own refusal, whatever its type
        raise ExportError(
            "the model cannot predict a row built from its signature alone (0 for numbers, "
            f"{UNSEEN!r}, a category it never saw, for strings): {type(exc).__name__}: {exc}. "
            "Requests that pass validation would fail the same way: pass --data FILE, a "
            "sample of its training data, which gives the categories it knows"
        ) from exc
