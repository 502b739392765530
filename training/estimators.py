"""Estimators the training CLI offers, wrapped in the pipeline that gets exported.

The exported object is always a scikit-learn `Pipeline` whose input is the raw
feature matrix (see `training.datasets`): categorical encoding and, where the data
has gaps, imputation live inside it, so the service passes raw values through.

XGBoost, LightGBM and CatBoost are optional extras (`pip install 'tabserve[xgboost]'`):
their classes are named as "module:Class" and imported only when chosen.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.manifest import Task
from tabserve.training.datasets import Dataset
from tabserve.training.errors import TrainingError

ParamValue = str | int | float | bool | None
# A class, or "module:Class" for an optional library, imported when the model is chosen.
EstimatorClass = type[BaseEstimator] | str


@dataclass(frozen=True)
class EstimatorSpec:
    """One choice of `--model`: its classes per task and defaults.

    `encode_labels` wraps the classifier in `LabelEncodedClassifier` (for estimators
    that take only labels 0..n-1); `errors` names ("module:Class") the exceptions its
    library raises for bad hyperparameters at fit time, besides TypeError and ValueError.
    """

    classifier: EstimatorClass | None
    regressor: EstimatorClass | None
    defaults: dict[str, ParamValue]
    handles_missing: bool = False
    wants_scaling: bool = False
    encode_labels: bool = False
    errors: tuple[str, ...] = ()


ESTIMATORS: dict[str, EstimatorSpec] = {
    "logistic_regression": EstimatorSpec(
        LogisticRegression, None, {"max_iter": 1000}, wants_scaling=True
    ),
    "ridge": EstimatorSpec(None, Ridge, {}, wants_scaling=True),
    "random_forest": EstimatorSpec(
        RandomForestClassifier, RandomForestRegressor, {"n_estimators": 100, "n_jobs": 1}
    ),
    "hist_gradient_boosting": EstimatorSpec(
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        {"max_iter": 100},
        handles_missing=True,
    ),
    # The boosting libraries take NaN themselves; one thread each, as the service
    # scales with processes. CatBoost writes no catboost_info/ folder into the cwd.
    "xgboost": EstimatorSpec(
        "xgboost:XGBClassifier",
        "xgboost:XGBRegressor",
        {"n_estimators": 100, "n_jobs": 1},
        handles_missing=True,
        encode_labels=True,
        errors=("xgboost.core:XGBoostError",),
    ),
    "lightgbm": EstimatorSpec(
        "lightgbm:LGBMClassifier",
        "lightgbm:LGBMRegressor",
        {"n_estimators": 100, "n_jobs": 1, "verbose": -1},
        handles_missing=True,
        errors=("lightgbm.basic:LightGBMError",),
    ),
    "catboost": EstimatorSpec(
        "catboost:CatBoostClassifier",
        "catboost:CatBoostRegressor",
        {"iterations": 100, "thread_count": 1, "verbose": False, "allow_writing_files": False},
        handles_missing=True,
        errors=("catboost:CatBoostError",),
    ),
}
MISSING_CATEGORY = "__missing__"


def estimator_class(kind: str, task: Task) -> type[BaseEstimator]:
    """The estimator class for `--model kind` on `task`, or a TrainingError saying why not."""
    if kind not in ESTIMATORS:
        raise TrainingError(f"unknown model {kind!r}; expected one of: {', '.join(ESTIMATORS)}")
    named = _class_for(ESTIMATORS[kind], task)
    if named is None:
        fitting = [k for k, spec in ESTIMATORS.items() if _class_for(spec, task)]
        raise TrainingError(
            f"model {kind!r} does not do {task}; for {task} choose one of: {', '.join(fitting)}"
        )
    if isinstance(named, str):
        resolved: type[BaseEstimator] = _imported(named, kind)
        return resolved
    return named


def _class_for(spec: EstimatorSpec, task: Task) -> EstimatorClass | None:
    return spec.classifier if task == "classification" else spec.regressor


def _imported(named: str, kind: str) -> Any:
    """The object `named` ("module:Name"), or a TrainingError saying how to install it."""
    module, _, attribute = named.partition(":")
    library = module.split(".")[0]
    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        raise TrainingError(
            f"model {kind!r} needs the {library} package, which is not installed here: "
            f"pip install 'tabserve[{library}]'"
        ) from exc


def _accepted_params(cls: type[BaseEstimator], defaults: dict[str, Any]) -> set[str]:
    """Hyperparameter names `cls` takes.

    `get_params()` of an instance built with our defaults (LightGBM lists keyword
    arguments it was given, such as `verbose`), and the constructor's named arguments
    (CatBoost's `get_params()` lists only those that were set).
    """
    named = {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in {p.VAR_POSITIONAL, p.VAR_KEYWORD}
    }
    return set(cls(**defaults).get_params()) | named


def parse_params(pairs: list[str]) -> dict[str, ParamValue]:
    """`["max_depth=8", "criterion=entropy"]` -> typed values (int, float, bool, None, str)."""
    params: dict[str, ParamValue] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise TrainingError(f"hyperparameter {pair!r} is not KEY=VALUE")
        params[key.strip()] = _typed(raw.strip())
    return params


def _typed(raw: str) -> ParamValue:
    lowered = raw.lower()
    if lowered in {"none", "null"}:
        return None
    if lowered in {"true", "false"}:
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


@dataclass(frozen=True)
class BuiltPipeline:
    """The unfitted pipeline with what the manifest records about it."""

    pipeline: Pipeline
    params: dict[str, ParamValue]
    supports_missing: bool
    class_name: str
    fit_errors: tuple[type[Exception], ...]


def build_pipeline(
    kind: str, dataset: Dataset, params: dict[str, ParamValue], seed: int
) -> BuiltPipeline:
    """The pipeline for `kind` on `dataset`, hyperparameters checked against the estimator."""
    cls = estimator_class(kind, dataset.task)
    spec = ESTIMATORS[kind]
    merged: dict[str, Any] = {**spec.defaults, **params}
    accepted = _accepted_params(cls, spec.defaults)
    unknown = sorted(set(merged) - set(accepted))
    if unknown:
        raise TrainingError(
            f"{cls.__name__} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
    if "random_state" in accepted and "random_state" not in params:
        merged["random_state"] = seed
    try:
        estimator = cls(**merged)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{cls.__name__}: {exc}") from exc
    impute = not spec.handles_missing and dataset.has_missing()
    steps: list[tuple[str, Any]] = []
    prep = _preprocessor(dataset, impute=impute, scale=spec.wants_scaling)
    if prep is not None:
        steps.append(("prepare", prep))
    final = estimator
    if spec.encode_labels and dataset.task == "classification":
        final = LabelEncodedClassifier(estimator)
    steps.append(("model", final))
    return BuiltPipeline(
        pipeline=Pipeline(steps),
        params={k: plain_param(v) for k, v in sorted(estimator.get_params().items())},
        supports_missing=spec.handles_missing or impute,
        class_name=cls.__name__,
        fit_errors=(TypeError, ValueError, *(_imported(e, kind) for e in spec.errors)),
    )


def _preprocessor(dataset: Dataset, *, impute: bool, scale: bool) -> Any:
    numeric = [i for i, c in enumerate(dataset.columns) if c.type == "number"]
    categorical = [i for i, c in enumerate(dataset.columns) if c.type == "category"]
    numeric_steps: list[tuple[str, Any]] = []
    if impute:
        numeric_steps.append(("impute", SimpleImputer(strategy="median")))
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    if not categorical:
        return Pipeline(numeric_steps) if numeric_steps else None
    # A missing category arrives as None (the CSV loader, JSON null) or as NaN (pandas,
    # numpy object arrays); both become MISSING_CATEGORY, one imputer per marker.
    category_pipeline = Pipeline(
        [
            (
                "impute_nan",
                SimpleImputer(
                    missing_values=np.nan, strategy="constant", fill_value=MISSING_CATEGORY
                ),
            ),
            (
                "impute",
                SimpleImputer(
                    missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY
                ),
            ),
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="ignore",
                    sparse_output=False,
                    dtype=float,
                ),
            ),
        ]
    )
    numeric_part: Any = Pipeline(numeric_steps) if numeric_steps else "passthrough"
    return ColumnTransformer(
        [("number", numeric_part, numeric), ("category", category_pipeline, categorical)],
        sparse_threshold=0.0,
    )


def plain_param(value: Any) -> ParamValue:
    """A hyperparameter as the manifest records it: JSON scalars as they are, else repr.

    Non-finite floats (XGBoost's `missing=nan`) are repr too: JSON has no NaN.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
