"""`tabserve.export`: a model fitted anywhere becomes a served version, manifest and all.

The manifest is the one `train` writes: features in the model's order with their
types and training statistics (from the reference sample, with the same code), the
classes, the target's statistics, metrics, and the versions of every library the model
is made of. Everything that would make the served model fail or answer differently is
refused before anything is written, with the fix in the message.
"""

from __future__ import annotations

import pickle
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from tabserve.artifact.frames import FrameBuilder
from tabserve.artifact.manifest import (
    ArtifactFormat,
    ClassLabel,
    DriftInfo,
    EstimatorInfo,
    Manifest,
    TargetInfo,
    Task,
    TrainingData,
)
from tabserve.artifact.store import check_export, save_artifact
from tabserve.training.errors import ExportError
from tabserve.training.evaluate import evaluate
from tabserve.training.importable import check_importable
from tabserve.training.profile import fingerprint, histogram
from tabserve.training.reference import Reference, reference_of

CHECK_ROWS = 200
"""Rows of the sample the model must answer alike on, fed as the service feeds it."""
MIN_DRIFT_ROWS = 100
"""Fewest sample rows that make a drift reference: below, a decile holds under 10 rows and
PSI against it measures the sample's noise (an MLflow input_example has a handful)."""


def export(
    model: Any,
    X: Any,  # noqa: N803 (scikit-learn's name for the features)
    y: Any = None,
    *,
    name: str,
    models_dir: str | Path = "models",
    version: int | None = None,
    format: ArtifactFormat = "joblib",
    metrics: dict[str, float] | None = None,
    source: str | None = None,
) -> Manifest:
    """Write fitted `model` as a new version of `name` under `models_dir`; return its manifest.

    `X` is a sample of the data the model was fitted on (a pandas DataFrame, or a numpy
    array when the model has `feature_names_in_`): it gives the features, their types,
    the training statistics and the drift reference. `y`, when given, gives the target's
    statistics and the metrics (unless `metrics` are passed). `source` says where the
    sample came from in the manifest (default `export:<type of X>`).
    """
    models_dir = Path(models_dir)
    check_export(models_dir, name, version)
    check_fitted(model)
    task = task_of(model)
    check_importable(model)
    reference = reference_of(model, X)
    allowed = missing_allowed(model, reference)
    features = [
        f.model_copy(update={"missing": ok})
        for f, ok in zip(reference.features, allowed, strict=True)
    ]
    target = _target_values(y, reference.rows.shape[0])
    _check_served_alike(model, X, reference)
    fields = {
        "drift": drift_of_sample(reference.rows.shape[0]),
        "created_at": datetime.now(UTC),
        "task": task,
        "estimator": estimator_info(model, reference, any(allowed)),
        "features": features,
        "target": target_info(model, task, y, target),
        "metrics": _metrics(model, task, X, target, metrics),
        "training": TrainingData(
            source=source or f"export:{type(X).__module__.split('.')[0]}.{type(X).__name__}",
            rows=reference.rows.shape[0],
            train_rows=reference.rows.shape[0],
            test_rows=0,
            test_size=0.0,
            seed=0,
            fingerprint=fingerprint(reference.rows, target if target is not None else np.array([])),
        ),
    }
    try:
        return save_artifact(model, fields, models_dir, name, version, format)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ExportError(f"the model cannot be pickled: {exc}") from exc


def drift_of_sample(rows: int) -> DriftInfo:
    """Drift is available from a sample of at least MIN_DRIFT_ROWS rows, else why not."""
    if rows >= MIN_DRIFT_ROWS:
        return DriftInfo()
    return DriftInfo(
        available=False,
        reason=f"the reference sample has {rows} rows; a drift reference needs at least "
        f"{MIN_DRIFT_ROWS}: export with a larger sample of the training data "
        "(X in tabserve.export, --data FILE in tabserve import)",
    )


def check_fitted(model: Any) -> None:
    """Refuse an unfitted model, or an object that is no scikit-learn-API estimator."""
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ExportError(
            f"{type(model).__name__} is not fitted: call model.fit(X, y) before exporting it"
        ) from exc
    except TypeError as exc:
        raise ExportError(
            f"{type(model).__name__} is not a scikit-learn-API estimator ({exc}); export a "
            "fitted classifier, regressor or Pipeline"
        ) from exc


def task_of(model: Any) -> Task:
    """Classification or regression, as the model declares it; refused if it declares neither."""
    if is_classifier(model):
        if getattr(model, "classes_", None) is None:
            raise ExportError(
                f"{type(model).__name__} is a classifier without classes_: fit it before export"
            )
        return "classification"
    if is_regressor(model):
        return "regression"
    raise ExportError(
        f"cannot tell whether {type(model).__name__} is a classifier or a regressor: "
        "scikit-learn's is_classifier and is_regressor are both False for it. Export a "
        "classifier or regressor (a Pipeline ending in one), or give your estimator "
        "ClassifierMixin or RegressorMixin"
    )


def _target_values(y: Any, rows: int) -> npt.NDArray[Any] | None:
    if y is None:
        return None
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ExportError(f"y has shape {list(values.shape)}: pass one target value per row")
    if len(values) != rows:
        raise ExportError(
            f"y has {len(values)} rows but X has {rows}: pass the target of the same rows"
        )
    return values


def _check_served_alike(model: Any, x: Any, reference: Reference) -> None:
    """The model must answer the sample alike when fed as the service will feed it."""
    count = min(CHECK_ROWS, reference.rows.shape[0])
    sample = x.iloc[:count] if hasattr(x, "iloc") else np.asarray(x)[:count]
    rows = reference.rows[:count]
    served = FrameBuilder(reference.features)(rows) if reference.frame else rows
    try:
        with warnings.catch_warnings():
            # A numpy sample for a model fitted on a DataFrame: scikit-learn warns, rightly.
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            expected = np.asarray(model.predict(sample))
        got = np.asarray(model.predict(served))
    except Exception as exc:
        raise ExportError(
            f"the model cannot predict its sample as the service sends it (numbers as float64, "
            f"categories as strings): {type(exc).__name__}: {exc}"
        ) from exc
    same = (
        np.allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)
        if expected.dtype.kind in "fc"
        else np.array_equal(got, expected)
    )
    if not same:
        differ = np.flatnonzero(np.asarray(got != expected).reshape(len(got), -1).any(axis=1))
        at = int(differ[0]) if differ.size else 0
        raise ExportError(
            f"the model answers differently when its sample is sent as the service sends it "
            f"(numbers as float64, categories as strings): row {at} gives {got[at]!r}, "
            f"X gives {expected[at]!r}"
        )


def estimator_info(model: Any, reference: Reference, missing: bool) -> EstimatorInfo:
    """The manifest's `estimator`: the final step's class and plain parameters, the steps."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps else model
    params = final.get_params(deep=False) if hasattr(final, "get_params") else {}
    return EstimatorInfo(
        kind="export",
        class_name=type(final).__name__,
        params={k: _plain(v) for k, v in params.items() if _plain(v) is not _SKIP},
        pipeline=[step for step, _ in steps] if steps else [],
        supports_missing=missing,
        input="frame" if reference.frame else "array",
    )


_SKIP = object()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _SKIP


def missing_allowed(model: Any, reference: Reference) -> list[bool]:
    """Per feature, whether the model predicts a row with that feature missing, sent as
    the service would send it (a pipeline may impute one column and not another)."""
    first = reference.rows[:1]
    allowed = []
    for i, feature in enumerate(reference.features):
        probe = first.copy()
        probe[0, i] = np.nan if feature.type == "number" else None
        served = FrameBuilder(reference.features)(probe) if reference.frame else probe
        try:
            model.predict(served)
        except Exception:  # any refusal of the model: the service must refuse it missing
            allowed.append(False)
        else:
            allowed.append(True)
    return allowed


def target_info(model: Any, task: Task, y: Any, target: npt.NDArray[Any] | None) -> TargetInfo:
    """The manifest's `target`: classes from the model, statistics from `y` when given."""
    name = str(getattr(y, "name", None) or "target")
    if task == "regression":
        if target is None:
            return TargetInfo(name=name)
        return TargetInfo(name=name, histogram=histogram(target.astype(np.float64)))
    classes = np.asarray(model.classes_)
    labels = [_label(c) for c in classes.tolist()]
    if len({str(c) for c in labels}) != len(labels):
        raise ExportError(
            f"the model's classes {labels!r} are not distinct as text; requests and answers "
            "carry labels as text: encode the target with distinct labels and fit again"
        )
    counts = None if target is None else [int(np.sum(target == c)) for c in classes]
    return TargetInfo(name=name, classes=labels, distribution=counts)


def _label(value: Any) -> ClassLabel:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return str(value)


def _metrics(
    model: Any,
    task: Task,
    x: Any,
    target: npt.NDArray[Any] | None,
    given: dict[str, float] | None,
) -> dict[str, float]:
    if given is not None:
        return {str(k): float(v) for k, v in given.items()}
    if target is None:
        return {}
    return evaluate(model, task, x, target)
