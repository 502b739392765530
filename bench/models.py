"""The benchmark models of `shared/MEASUREMENTS.md`: same data, same hyperparameters."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

from tabserve.artifact.repository import list_versions
from tabserve.training.datasets import Column, Dataset
from tabserve.training.pipeline import TrainRequest, train

ROWS, FEATURES = 20_000, 20
SPECS = {
    "forest": ("random_forest", {"n_estimators": 100, "max_depth": 12}),
    "logistic": ("logistic_regression", {"max_iter": 1000}),
    "hgb": ("hist_gradient_boosting", {"max_iter": 100}),
}


def dataset() -> Dataset:
    """make_classification(20000, 20 features, 10 informative, 3 classes, seed 0)."""
    features, target = make_classification(
        n_samples=ROWS, n_features=FEATURES, n_informative=10, n_classes=3, random_state=0
    )
    return Dataset(
        name="bench",
        source="sklearn:make_classification(20000 rows, 20 features, 10 informative, 3 classes)",
        columns=[Column(f"x{i}", "number") for i in range(FEATURES)],
        features=np.asarray(features, dtype=np.float64),
        target=np.asarray(target, dtype=np.int64),
        target_name="y",
        task="classification",
    )


def ensure_models(models_dir: Path, log: bool = True) -> Path:
    """Train whichever benchmark model is missing; return the folder."""
    data = None
    for name, (kind, params) in SPECS.items():
        if list_versions(models_dir, name):
            continue
        if log:
            print(f"training benchmark model {name} ({kind}) ...", flush=True)
        data = data or dataset()
        train(TrainRequest(data, kind, models_dir, name, params=dict(params)))
    return models_dir


def sample_rows(count: int, seed: int = 1) -> np.ndarray:
    """`count` rows of the benchmark's own distribution, drawn with `seed`.

    They come from the data set the models were trained on, so they lie within the
    training ranges, as most production traffic does (out-of-range values take the
    slower path that counts them per feature).
    """
    features = _features()
    picked = np.random.default_rng(seed).choice(len(features), count, replace=count > len(features))
    return np.array(features[picked], dtype=np.float64)


@functools.cache
def _features() -> np.ndarray:
    return dataset().features
