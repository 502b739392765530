"""Training data from what was served: logged inputs that received ground truth.

The served model's manifest is the reference: its features (names, types, order)
become the columns, its task and classes the target. A logged input without a
value for a feature (redacted, or from a version that lacked it) is a missing
value, which the exported pipeline imputes. The original data source recorded in
the manifest can be merged in, so a retrained version does not forget what the
first one learnt.

This module knows nothing of how the log is kept: `LoggedExample` is what the
reader (`log_reader`, which needs no service code or settings) hands over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import LogSource, Manifest
from tabserve.artifact.repository import list_versions, version_path
from tabserve.artifact.store import read_manifest
from tabserve.training.datasets import Column, Dataset, load_bundled, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ParamValue, estimator_class, plain_param
from tabserve.training.log_reader import LoggedExample, default_log_url, read_labelled


def dataset_from_log(
    manifest: Manifest,
    examples: Sequence[LoggedExample],
    *,
    store: str,
    original: Dataset | None = None,
) -> Dataset:
    """A dataset of `examples` (plus `original`'s rows) in `manifest`'s feature layout."""
    model = manifest.name
    if not examples:
        raise TrainingError(
            f"the prediction log at {store} has no predictions of model {model!r} with "
            "feedback; send ground truth with POST /models/{name}/feedback first"
        )
    columns = [(f.name, f.type) for f in manifest.features]
    numeric = all(kind == "number" for _, kind in columns)
    features = np.empty((len(examples), len(columns)), dtype=np.float64 if numeric else object)
    redacted = []
    for index, (name, kind) in enumerate(columns):
        values = [_feature_value(e.inputs.get(name), kind, model, name, e) for e in examples]
        features[:, index] = values
        if all(_missing(v) for v in values):
            redacted.append(name)
    target = _target(manifest, examples)
    merged_with = None
    merged_rows = 0
    if original is not None:
        _check_same_layout(manifest, original)
        merged_with, merged_rows = original.source, len(original.target)
        features = np.concatenate([features, original.features.astype(features.dtype)])
        # Strings keep their own width: numpy widens to the longer label, never truncates.
        more = original.target.astype(str if target.dtype.kind == "U" else target.dtype)
        target = np.concatenate([target, more])
    elif redacted:
        raise TrainingError(
            f"no logged prediction of model {model!r} has a value for "
            f"{', '.join(repr(n) for n in redacted)} (redacted in the log?); add --with-original "
            "to merge the original training data, which has them"
        )
    times = [e.predicted_at for e in examples]
    provenance = LogSource(
        model=model,
        store=store,
        versions=sorted({e.version for e in examples}),
        rows=len(examples),
        first_prediction=min(times),
        last_prediction=max(times),
        redacted=redacted,
        merged_with=merged_with,
        merged_rows=merged_rows,
    )
    return Dataset(
        name=model,
        source=f"log:{model}",
        columns=[Column(name, kind) for name, kind in columns],
        features=features,
        target=target,
        target_name=manifest.target.name,
        task=manifest.task,
        log=provenance,
    )


def original_dataset(manifest: Manifest) -> Dataset:
    """Reload the data a version was trained on, as its manifest records it.

    A version trained from the log records the source it merged, if any; that
    source is what "original" means for it.
    """
    source = manifest.training.source
    if manifest.training.log is not None:
        if manifest.training.log.merged_with is None:
            raise TrainingError(
                f"model {manifest.name!r} version {manifest.version} was trained from the "
                "prediction log alone; it records no original data to merge"
            )
        source = manifest.training.log.merged_with
    kind, _, where = source.partition(":")
    if kind == "sklearn":
        return load_bundled(where)
    if kind == "csv":
        categorical = frozenset(f.name for f in manifest.features if f.type == "category")
        return load_csv(
            Path(where),
            manifest.target.name,
            task=manifest.task,
            categorical=categorical,
            numeric=frozenset(f.name for f in manifest.features if f.type == "number"),
        )
    raise TrainingError(f"cannot reload the original data source {source!r}")


def _feature_value(value: Any, kind: str, model: str, name: str, example: LoggedExample) -> Any:
    if value is None:
        return math.nan if kind == "number" else None
    if kind == "category":
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrainingError(
            f"logged input {name!r} of request {example.request_id!r} (model {model!r}) is "
            f"{value!r}; expected a number"
        )
    return float(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _target(manifest: Manifest, examples: Sequence[LoggedExample]) -> npt.NDArray[Any]:
    truths = [e.truth for e in examples]
    if manifest.task == "regression":
        return np.asarray([float(t) for t in truths], dtype=np.float64)
    classes = manifest.target.classes or []
    if classes and all(isinstance(c, int) for c in classes):
        return np.asarray([int(t) for t in truths], dtype=np.int64)
    return np.asarray([str(t) for t in truths], dtype=str)


def _check_same_layout(manifest: Manifest, original: Dataset) -> None:
    expected = [(f.name, f.type) for f in manifest.features]
    found = [(c.name, c.type) for c in original.columns]
    if expected != found:
        raise TrainingError(
            f"the original data {original.source} no longer has model {manifest.name!r}'s "
            f"features (expected {expected}, found {found}); retrain without --with-original"
        )
    if original.task != manifest.task:
        raise TrainingError(
            f"the original data {original.source} is a {original.task} task, "
            f"model {manifest.name!r} a {manifest.task} one"
        )


def latest_manifest(models_dir: Path, model: str) -> Manifest:
    """The manifest of `model`'s newest version: the reference for retraining it."""
    versions = list_versions(models_dir, model)
    if not versions:
        raise TrainingError(
            f"no model {model!r} under {models_dir}; --from-log retrains a model that was "
            "served (pass the --models-dir the service used)"
        )
    return read_manifest(version_path(models_dir, model, versions[-1]), root=models_dir)


def reused_params(manifest: Manifest) -> dict[str, ParamValue]:
    """The hyperparameters `manifest`'s estimator was given beyond its defaults (seed aside)."""
    defaults = estimator_class(manifest.estimator.kind, manifest.task)().get_params()
    return {
        key: value
        for key, value in manifest.estimator.params.items()
        if key != "random_state" and key in defaults and plain_param(defaults[key]) != value
    }


def read_log(models_dir: Path, model: str, url: str | None, with_original: bool) -> Dataset:
    """`model`'s labelled predictions from the prediction log at `url` (default: the service's)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    reference = latest_manifest(models_dir, model)
    url = url or default_log_url()
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise TrainingError(f"--log-url {url!r} is not a database URL: {exc}") from exc
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and not Path(database).is_file():
        raise TrainingError(
            f"no prediction log at {shown}: the file does not exist (is the service logging? "
            "set TABSERVE_PREDLOG_MODE, or pass --log-url)"
        )
    try:
        examples = read_labelled(url, model)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = str(orig if orig is not None else exc).splitlines()[0]
        raise TrainingError(f"cannot read the prediction log at {shown}: {reason}") from exc
    original = original_dataset(reference) if with_original else None
    return dataset_from_log(reference, examples, store=shown, original=original)
