"""Every bundled dataset trains through the CLI and its manifest matches the data."""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from sklearn import datasets as sk_datasets
from sklearn import metrics as sk_metrics
from sklearn.model_selection import train_test_split

from tabserve.artifact.store import load_artifact, read_manifest

DECILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
QUANTILES = {"p01": 1, "p05": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}


@dataclass(frozen=True)
class Case:
    dataset: str
    loader: Any
    model: str
    params: tuple[str, ...]
    class_name: str
    pipeline: list[str]
    features: list[str]
    classes: list[str] | None
    distribution: list[int] | None
    rows: int
    train_rows: int
    test_rows: int


BREAST_CANCER_PARTS = [
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
]

CASES = [
    Case(
        "iris",
        sk_datasets.load_iris,
        "random_forest",
        ("n_estimators=10",),
        "RandomForestClassifier",
        ["model"],
        ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
        ["setosa", "versicolor", "virginica"],
        [50, 50, 50],
        150,
        120,
        30,
    ),
    Case(
        "wine",
        sk_datasets.load_wine,
        "logistic_regression",
        (),
        "LogisticRegression",
        ["prepare", "model"],
        [
            "alcohol",
            "malic_acid",
            "ash",
            "alcalinity_of_ash",
            "magnesium",
            "total_phenols",
            "flavanoids",
            "nonflavanoid_phenols",
            "proanthocyanins",
            "color_intensity",
            "hue",
            "od280_od315_of_diluted_wines",
            "proline",
        ],
        ["class_0", "class_1", "class_2"],
        [59, 71, 48],
        178,
        142,
        36,
    ),
    Case(
        "breast_cancer",
        sk_datasets.load_breast_cancer,
        "hist_gradient_boosting",
        ("max_iter=10",),
        "HistGradientBoostingClassifier",
        ["model"],
        [f"mean_{p}" for p in BREAST_CANCER_PARTS]
        + [f"{p}_error" for p in BREAST_CANCER_PARTS]
        + [f"worst_{p}" for p in BREAST_CANCER_PARTS],
        # sklearn codes malignant as 0, but classes are the sorted label names.
        ["benign", "malignant"],
        [357, 212],
        569,
        455,
        114,
    ),
    Case(
        "digits",
        sk_datasets.load_digits,
        "random_forest",
        ("n_estimators=10",),
        "RandomForestClassifier",
        ["model"],
        [f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        [str(d) for d in range(10)],
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
        1797,
        1437,
        360,
    ),
    Case(
        "diabetes",
        sk_datasets.load_diabetes,
        "ridge",
        ("alpha=0.5",),
        "Ridge",
        ["prepare", "model"],
        ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
        None,
        None,
        442,
        353,
        89,
    ),
]


def _bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Rows per bin (-inf, e0), [e0, e1), ..., [e_last, inf), counted with plain masks."""
    bounds = [-np.inf, *edges, np.inf]
    return [int(((values >= lo) & (values < hi)).sum()) for lo, hi in itertools.pairwise(bounds)]


@pytest.mark.parametrize("case", CASES, ids=[c.dataset for c in CASES])
def test_bundled_dataset_trains_and_manifest_matches_data(
    case: Case, call_cli: Any, models_dir: Path
) -> None:
    params = [arg for p in case.params for arg in ("--param", p)]
    result = call_cli(
        "--dataset", case.dataset, "--model", case.model, *params, "--models-dir", str(models_dir)
    )
    assert result.code == 0, result.stderr

    folder = models_dir / case.dataset / "1"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["model.joblib", "model.json", "model.seal.json"]
    manifest = read_manifest(folder)
    raw = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    loaded = load_artifact(folder)
    assert loaded.manifest == manifest

    bunch = case.loader()
    data = np.asarray(bunch.data, dtype=np.float64)

    # identity and estimator
    assert manifest.name == case.dataset
    assert manifest.version == 1
    assert manifest.task == ("regression" if case.classes is None else "classification")
    assert manifest.estimator.kind == case.model
    assert manifest.estimator.class_name == case.class_name
    assert type(loaded.estimator[-1]).__name__ == case.class_name
    assert manifest.estimator.pipeline == case.pipeline
    assert [name for name, _ in loaded.estimator.steps] == case.pipeline
    assert manifest.estimator.supports_missing is (case.model == "hist_gradient_boosting")
    for param in case.params:
        key, _, text = param.partition("=")
        assert str(manifest.estimator.params[key]) == text
    assert manifest.estimator.params == {
        k: (v if v is None or isinstance(v, bool | int | float | str) else repr(v))
        for k, v in sorted(loaded.estimator[-1].get_params().items())
    }

    # features: names, count, order, statistics equal to numpy on the data
    assert manifest.feature_names == case.features
    assert [f["name"] for f in raw["features"]] == case.features
    assert len(manifest.features) == data.shape[1] == loaded.estimator.n_features_in_
    for index, feature in enumerate(manifest.features):
        column = data[:, index]
        stats = feature.stats
        assert feature.type == "number"
        assert stats.kind == "number"
        assert stats.count == case.rows
        assert stats.missing == 0
        assert stats.min == float(column.min())
        assert stats.max == float(column.max())
        assert stats.mean == float(column.mean())
        assert stats.std == float(column.std())
        assert stats.quantiles == {k: float(np.percentile(column, q)) for k, q in QUANTILES.items()}
        edges = sorted({float(e) for e in np.percentile(column, DECILES)})
        assert stats.histogram.edges == edges
        assert stats.histogram.counts == _bin_counts(column, edges)
        assert sum(stats.histogram.counts) == case.rows

    # target
    assert manifest.target.name == "target"
    if case.classes is None:
        target = np.asarray(bunch.target, dtype=np.float64)
        assert manifest.target.classes is None
        assert manifest.target.distribution is None
        assert manifest.target.histogram is not None
        assert sum(manifest.target.histogram.counts) == case.rows
        assert manifest.target.histogram.counts == _bin_counts(
            target, manifest.target.histogram.edges
        )
    else:
        target = np.asarray([str(n) for n in bunch.target_names])[bunch.target]
        assert manifest.target.classes == case.classes
        assert raw["target"]["classes"] == case.classes
        assert manifest.target.classes == loaded.estimator.classes_.tolist()
        assert manifest.target.distribution == case.distribution
        assert manifest.target.histogram is None

    # the split and the held-out metrics
    assert manifest.training.source == f"sklearn:{case.dataset}"
    assert manifest.training.rows == case.rows
    assert manifest.training.train_rows == case.train_rows
    assert manifest.training.test_rows == case.test_rows
    assert manifest.training.test_size == 0.2
    assert manifest.training.seed == 0
    _, x_test, _, y_test = train_test_split(
        data,
        target,
        test_size=0.2,
        random_state=0,
        stratify=None if case.classes is None else target,
    )
    assert len(y_test) == case.test_rows
    predicted = loaded.estimator.predict(x_test)
    if case.classes is None:
        assert manifest.metrics == {
            "r2": sk_metrics.r2_score(y_test, predicted),
            "mae": sk_metrics.mean_absolute_error(y_test, predicted),
            "rmse": np.sqrt(sk_metrics.mean_squared_error(y_test, predicted)),
        }
        assert list(manifest.metrics) == ["r2", "mae", "rmse"]
    else:
        proba = loaded.estimator.predict_proba(x_test)
        if len(case.classes) == 2:
            auc = sk_metrics.roc_auc_score(y_test == case.classes[1], proba[:, 1])
        else:
            auc = sk_metrics.roc_auc_score(y_test, proba, multi_class="ovr", labels=case.classes)
        assert manifest.metrics == {
            "accuracy": sk_metrics.accuracy_score(y_test, predicted),
            "f1_macro": sk_metrics.f1_score(y_test, predicted, average="macro"),
            "roc_auc": auc,
        }
        assert list(manifest.metrics) == ["accuracy", "f1_macro", "roc_auc"]
        assert manifest.metrics["accuracy"] > 0.8

    # environment and the file's hash
    assert manifest.environment.python == platform.python_version()
    assert manifest.environment.numpy == np.__version__
    assert manifest.environment.scikit_learn == sklearn.__version__
    assert manifest.environment.joblib == joblib.__version__
    model_bytes = (folder / "model.joblib").read_bytes()
    assert manifest.artifact.file == "model.joblib"
    assert manifest.artifact.format == "joblib"
    assert manifest.artifact.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert manifest.artifact.size_bytes == len(model_bytes)

    # what the CLI printed
    lines = result.stdout.splitlines()
    assert lines[0] == f"model {case.dataset} version 1 ({case.class_name})"
    assert lines[1].split() == ["metric", "value"]
    for line, (metric, value) in zip(lines[3:], manifest.metrics.items(), strict=False):
        assert line.split() == [metric, f"{value:.4f}"]
    assert lines[-1] == f"saved to {folder} (sha256 {manifest.artifact.sha256[:12]}...)"
    assert len(lines) == 3 + len(manifest.metrics) + 1
