"""The compiled runtime: parity with scikit-learn, fallback, the on-disk cache, engine choice.

Artifacts are real: `tabserve.training.pipeline.train` fits and exports them. Estimators the
training CLI does not offer (extra trees, gradient boosting, linear regression,
k-nearest neighbours) are added to its registry for the duration of a fixture.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OneHotEncoder,
    StandardScaler,
)

from tabserve.artifact.store import read_manifest
from tabserve.service.app import create_app
from tabserve.service.core.engines import TOLERANCE, CompiledRuntime
from tabserve.service.core.engines import cache as cache_module
from tabserve.service.core.engines import compiled as compiled_module
from tabserve.service.core.engines import onnx as onnx_module
from tabserve.service.core.engines.cache import CACHE_DIR, GRAPH_FILE, RECORD_FILE
from tabserve.service.core.engines.parity import parity_rows
from tabserve.service.core.engines.preparation import UnsupportedModelError, split_pipeline
from tabserve.service.core.runtime import Prediction, SklearnRuntime
from tabserve.service.settings import Settings
from tabserve.training import estimators
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.estimators import EstimatorSpec
from tabserve.training.pipeline import TrainRequest, train
from tests.conftest import write_mixed_csv

EXTRA_ESTIMATORS = {
    "extra_trees": EstimatorSpec(
        ExtraTreesClassifier, ExtraTreesRegressor, {"n_estimators": 10, "n_jobs": 1}
    ),
    "gradient_boosting": EstimatorSpec(
        GradientBoostingClassifier, GradientBoostingRegressor, {"n_estimators": 10}
    ),
    "linear_regression": EstimatorSpec(None, LinearRegression, {}),
    "k_neighbors": EstimatorSpec(KNeighborsClassifier, None, {}),
}
SMALL = {
    "random_forest": {"n_estimators": 10},
    "hist_gradient_boosting": {"max_iter": 15},
}
CLASSIFIERS = [
    "random_forest",
    "extra_trees",
    "gradient_boosting",
    "hist_gradient_boosting",
    "logistic_regression",
]
REGRESSORS = [
    "random_forest",
    "extra_trees",
    "gradient_boosting",
    "hist_gradient_boosting",
    "ridge",
    "linear_regression",
]
NUMPY_KINDS = {"logistic_regression", "ridge", "linear_regression"}


def write_mixed_regression_csv(path: Path, rows: int = 240, seed: int = 5) -> Path:
    """Numeric and categorical columns with gaps, and a numeric target."""
    rng = np.random.default_rng(seed)
    shops = ["north", "south", "east", "west"]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["age", "shop", "visits", "spend"])
        for i in range(rows):
            age = int(rng.integers(18, 80))
            shop = shops[i % 4]
            visits = round(float(rng.gamma(2.0, 3.0)), 1)
            spend = 20 * visits + 3 * age + 150 * (i % 4) + float(rng.normal(0, 25))
            out.writerow(
                [age, "" if i % 11 == 0 else shop, "NA" if i % 7 == 0 else visits, round(spend, 2)]
            )
    return path


@pytest.fixture(scope="module")
def extra_estimators() -> Iterator[None]:
    """Training's registry with the estimators it does not offer itself."""
    with pytest.MonkeyPatch.context() as patch:
        for kind, spec in EXTRA_ESTIMATORS.items():
            patch.setitem(estimators.ESTIMATORS, kind, spec)
        yield


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """Numeric and mixed (categories + missing values) data for both tasks."""
    folder = tmp_path_factory.mktemp("data")
    return {
        "iris": load_bundled("iris"),
        "diabetes": load_bundled("diabetes"),
        "churn": load_csv(write_mixed_csv(folder / "churn.csv"), "churned"),
        "spend": load_csv(
            write_mixed_regression_csv(folder / "spend.csv"), "spend", task="regression"
        ),
    }


@pytest.fixture(scope="module")
def zoo(
    tmp_path_factory: pytest.TempPathFactory,
    datasets: dict[str, Dataset],
    extra_estimators: None,
) -> dict[tuple[str, str], Path]:
    """Every supported estimator on numeric and on mixed data: (dataset, kind) -> folder."""
    root = tmp_path_factory.mktemp("zoo")
    made = {}
    for data, kinds in [
        ("iris", CLASSIFIERS),
        ("churn", CLASSIFIERS),
        ("diabetes", REGRESSORS),
        ("spend", REGRESSORS),
    ]:
        for kind in kinds:
            name = f"{data}-{kind.replace('_', '-')}"
            request = TrainRequest(datasets[data], kind, root, name, params=SMALL.get(kind, {}))
            train(request)
            made[data, kind] = root / name / "1"
    return made


def train_one(
    models_dir: Path, data: Dataset, kind: str, name: str, params: dict[str, Any] | None = None
) -> Path:
    """A fresh artifact of its own (tests that change the folder use one each)."""
    train(TrainRequest(data, kind, models_dir, name, params=params or SMALL.get(kind, {})))
    return models_dir / name / "1"


def loaded(folder: Path, **options: Any) -> CompiledRuntime:
    runtime = CompiledRuntime(folder, **options)
    runtime.load()
    return runtime


def reference(folder: Path) -> SklearnRuntime:
    runtime = SklearnRuntime(folder)
    runtime.load()
    return runtime


def assert_same_answers(
    got: Prediction, expected: Prediction, tolerance: float, *, exact_labels: bool = True
) -> None:
    """Labels identical (values and dtype kind), probabilities or values within tolerance."""
    assert got.predict.shape == expected.predict.shape
    if expected.proba is None:
        assert got.proba is None
        assert got.predict.dtype == np.float64
        scale = max(1.0, float(np.abs(expected.predict).max()))
        assert np.abs(got.predict - expected.predict).max() <= tolerance * scale
        return
    assert got.predict.dtype.kind == expected.predict.dtype.kind
    if exact_labels:
        assert got.predict.tolist() == expected.predict.tolist()
    assert got.proba is not None
    assert got.proba.dtype == np.float64
    assert got.proba.shape == expected.proba.shape
    assert np.abs(got.proba - expected.proba).max() <= tolerance


def fallback_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tabserve.models" and "serving with scikit-learn" in r.getMessage()
    ]


# --- parity on every supported estimator ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [("iris", k) for k in CLASSIFIERS]
    + [("churn", k) for k in CLASSIFIERS]
    + [("diabetes", k) for k in REGRESSORS]
    + [("spend", k) for k in REGRESSORS],
)
def test_compiled_answers_match_scikit_learn(
    zoo: dict[tuple[str, str], Path], datasets: dict[str, Dataset], data: str, kind: str
) -> None:
    folder = zoo[data, kind]
    runtime = loaded(folder)
    engine = "numpy" if kind in NUMPY_KINDS else "onnx"
    assert runtime.engine == engine
    sklearn = reference(folder)
    # The training rows themselves (with their gaps), then fresh rows from the manifest
    # (other seed than the load-time check), then a single row.
    training_rows = datasets[data].features
    fresh = parity_rows(read_manifest(folder), rows=400, seed=11)
    for rows in (training_rows, fresh, fresh[:1]):
        assert_same_answers(runtime.predict(rows), sklearn.predict(rows), TOLERANCE[engine])


def test_missing_values_reach_the_compiled_model(
    zoo: dict[tuple[str, str], Path], datasets: dict[str, Dataset]
) -> None:
    # HistGradientBoosting takes NaN itself; the others impute. Rows with every
    # value missing must still match.
    for kind in ("hist_gradient_boosting", "random_forest", "logistic_regression"):
        folder = zoo["churn", kind]
        empty = np.array([[np.nan, None, np.nan], [30.0, None, np.nan]], dtype=object)
        assert_same_answers(
            loaded(folder).predict(empty),
            reference(folder).predict(empty),
            TOLERANCE["numpy" if kind in NUMPY_KINDS else "onnx"],
        )


def test_string_labels_stay_strings(zoo: dict[tuple[str, str], Path]) -> None:
    prediction = loaded(zoo["iris", "random_forest"]).predict(np.array([[5.1, 3.5, 1.4, 0.2]]))
    assert prediction.predict.tolist() == ["setosa"]
    assert isinstance(prediction.predict[0], str)
    assert prediction.proba is not None
    assert prediction.proba.sum() == pytest.approx(1.0, abs=1e-12)


# --- preprocessing re-evaluated in numpy ----------------------------------------------

MIXED_FIT = np.array(
    [
        [1.0, "a", "x", 10.0],
        [np.nan, None, "y", 20.0],
        [3.0, np.nan, None, 30.0],
        [4.0, "b", "x", np.nan],
    ],
    dtype=object,
)
MIXED_ROWS = np.array(
    [
        [np.nan, np.nan, "y", 1.0],
        [2.0, None, np.nan, 2.0],
        [5.0, "b", "unseen", np.nan],
        [1.0, "a", "x", 4.0],
    ],
    dtype=object,
)


def category_steps(*, nan_imputer: bool, encoder: Any) -> Pipeline:
    steps: list[tuple[str, Any]] = []
    if nan_imputer:  # what training adds for categories that arrive as NaN
        steps.append(("impute_nan", SimpleImputer(strategy="constant", fill_value="__missing__")))
    steps.append(
        (
            "impute",
            SimpleImputer(missing_values=None, strategy="constant", fill_value="__missing__"),
        )
    )
    steps.append(("encode", encoder))
    return Pipeline(steps)


@pytest.mark.parametrize(
    "transformer",
    [
        ColumnTransformer(
            [
                ("number", SimpleImputer(strategy="median"), [0]),
                (
                    "category",
                    category_steps(
                        nan_imputer=True,
                        encoder=OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    ),
                    [1, 2],
                ),
            ],
            remainder=Pipeline(
                [("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]
            ),
            sparse_threshold=0.0,
        ),
        ColumnTransformer(
            [
                (
                    "category",
                    category_steps(
                        nan_imputer=False,
                        encoder=OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    ),
                    np.array([False, True, True, False]),
                ),
                ("number", "passthrough", slice(3, 4)),
                ("unused", "drop", [0]),
            ],
            sparse_threshold=0.0,
        ),
    ],
    ids=["training-shape", "mask-slice-drop"],
)
def test_preparation_equals_scikit_learn_transform_bit_for_bit(transformer: Any) -> None:
    # Without the NaN imputer a categorical NaN is an error in scikit-learn: None only.
    nan_to_none = np.frompyfunc(
        lambda v: None if isinstance(v, float) and math.isnan(v) else v, 1, 1
    )
    fit, rows = MIXED_FIT, MIXED_ROWS
    if "impute_nan" not in str(transformer):
        fit, rows = fit.copy(), rows.copy()
        fit[:, 1:3] = nan_to_none(fit[:, 1:3])
        rows[:, 1:3] = nan_to_none(rows[:, 1:3])
    fitted = transformer.fit(fit)
    preparer, _ = split_pipeline(Pipeline([("prepare", fitted), ("model", Ridge())]))
    expected = np.asarray(fitted.transform(rows), dtype=np.float64)
    got = preparer(rows)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_unknown_category_raises_when_the_encoder_says_error() -> None:
    encoder = OneHotEncoder(handle_unknown="error", sparse_output=False)
    fitted = category_steps(nan_imputer=True, encoder=encoder).fit(MIXED_FIT[:, 1:3])
    preparer, _ = split_pipeline(Pipeline([("prepare", fitted), ("model", Ridge())]))
    np.testing.assert_array_equal(
        preparer(MIXED_ROWS[:2, 1:3]), fitted.transform(MIXED_ROWS[:2, 1:3])
    )
    with pytest.raises(ValueError, match="unseen"):
        preparer(MIXED_ROWS[2:3, 1:3])


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (FunctionTransformer(np.log1p), "FunctionTransformer is not supported"),
        (KBinsDiscretizer(n_bins=2), "KBinsDiscretizer is not supported"),
        (SimpleImputer(add_indicator=True), "add_indicator=True"),
        (OneHotEncoder(drop="first"), "drop='first'"),
        (OneHotEncoder(min_frequency=2), "infrequent categories"),
    ],
)
def test_other_preprocessing_is_unsupported(step: Any, reason: str) -> None:
    numbers = np.array([[1.0], [2.0], [2.0], [5.0]])
    with pytest.raises(UnsupportedModelError, match=re.escape(reason)):
        split_pipeline(Pipeline([("prepare", step), ("model", Ridge())]).fit(numbers, [0, 1, 0, 1]))


# --- fallback -------------------------------------------------------------------------


def test_unsupported_estimator_serves_with_scikit_learn_and_says_why(
    tmp_path: Path,
    datasets: dict[str, Dataset],
    extra_estimators: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = train_one(tmp_path, datasets["iris"], "k_neighbors", "knn")
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(folder)
    assert runtime.engine == "sklearn"
    assert fallback_lines(caplog) == [
        "model knn version 1: KNeighborsClassifier has no compiled engine; "
        "serving with scikit-learn"
    ]
    rows = datasets["iris"].features
    assert_same_answers(runtime.predict(rows), reference(folder).predict(rows), 0.0)
    assert not (folder / CACHE_DIR).exists()


def test_parity_beyond_tolerance_falls_back(
    tmp_path: Path, datasets: dict[str, Dataset], caplog: pytest.LogCaptureFixture
) -> None:
    folder = train_one(tmp_path, datasets["churn"], "random_forest", "strict")
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(folder, tolerance=0.0)  # float32 never matches to the last bit
    assert runtime.engine == "sklearn"
    [line] = fallback_lines(caplog)
    assert line.startswith("model strict version 1: parity check: probabilities differ")
    assert "tolerance 0" in line
    rows = datasets["churn"].features
    assert_same_answers(runtime.predict(rows), reference(folder).predict(rows), 0.0)
    # only a graph that passed parity is cached
    assert not (folder / CACHE_DIR).exists()


def test_different_labels_fall_back(
    tmp_path: Path,
    datasets: dict[str, Dataset],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = train_one(tmp_path, datasets["iris"], "random_forest", "swapped")
    honest = compiled_module._Classifier.predict

    def swapped(self: Any, features: npt.NDArray[Any]) -> Prediction:
        answer = honest(self, features)
        return Prediction(answer.predict[::-1].copy(), answer.proba)

    monkeypatch.setattr(compiled_module._Classifier, "predict", swapped)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(folder)
    assert runtime.engine == "sklearn"
    [line] = fallback_lines(caplog)
    assert "labels differ from scikit-learn's" in line


@pytest.mark.parametrize("sampled", ["manifest rows", "one mean row"])
def test_float32_thresholds_are_caught_at_the_splits(
    tmp_path: Path,
    datasets: dict[str, Dataset],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sampled: str,
) -> None:
    # Without the exact float64 thresholds, HistGradientBoosting parts ways with
    # scikit-learn on values within float32 rounding of a split: the check must see
    # it, through the split probes even when the sampled rows happen to miss it.
    folder = train_one(tmp_path, datasets["diabetes"], "hist_gradient_boosting", "rounded")
    if sampled == "one mean row":

        def mean_row(manifest: Any) -> npt.NDArray[np.float64]:
            return np.array([[f.stats.mean for f in manifest.features]])

        monkeypatch.setattr(compiled_module, "parity_rows", mean_row)
    exact = onnx_module._use_exact_thresholds

    def rounded(graph: Any, model: Any) -> None:
        exact(graph, model)
        [node] = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
        [values] = [a for a in node.attribute if a.name == "nodes_values_as_tensor"]
        thresholds = numpy_helper.to_array(values.t).astype(np.float32).astype(np.float64)
        values.t.CopyFrom(numpy_helper.from_array(thresholds))

    monkeypatch.setattr(onnx_module, "_use_exact_thresholds", rounded)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(folder)
    assert runtime.engine == "sklearn"
    [line] = fallback_lines(caplog)
    assert line.startswith("model rounded version 1: parity check: ")
    assert "values differ from scikit-learn's" in line
    if sampled == "one mean row":
        assert "parity check: at split thresholds: values differ" in line


def test_conversion_error_falls_back(
    tmp_path: Path,
    datasets: dict[str, Dataset],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = train_one(tmp_path, datasets["iris"], "random_forest", "broken")

    def fails(model: Any) -> bytes:
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(compiled_module, "convert", fails)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(folder)
    assert runtime.engine == "sklearn"
    assert fallback_lines(caplog) == [
        "model broken version 1: compiled model failed: RuntimeError: converter exploded; "
        "serving with scikit-learn"
    ]


# --- the cache beside the artifact ----------------------------------------------------


@pytest.fixture
def forest(tmp_path: Path, datasets: dict[str, Dataset]) -> Path:
    """A fresh forest artifact on mixed data, never loaded yet."""
    return train_one(tmp_path, datasets["churn"], "random_forest", "forest")


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts calls to the ONNX converter (names of the converted estimators)."""
    made: list[str] = []
    real = compiled_module.convert

    def counted(model: Any) -> bytes:
        made.append(type(model).__name__)
        return real(model)

    monkeypatch.setattr(compiled_module, "convert", counted)
    return made


def test_first_load_writes_the_cache_and_the_next_reuses_it(
    forest: Path, conversions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert loaded(forest).engine == "onnx"
    assert conversions == ["RandomForestClassifier"]
    folder = forest / CACHE_DIR
    assert sorted(p.name for p in folder.iterdir()) == [RECORD_FILE, GRAPH_FILE]
    record = json.loads((folder / RECORD_FILE).read_text())
    graph = (folder / GRAPH_FILE).read_bytes()
    assert record["sha256"] == hashlib.sha256(graph).hexdigest()
    assert record["size_bytes"] == len(graph)
    assert record["source_sha256"] == read_manifest(forest).artifact.sha256
    assert set(record["libraries"]) == {"skl2onnx", "onnx", "scikit-learn", "tabserve-converter"}

    def refuse(model: Any) -> bytes:
        raise AssertionError("the second load must not convert")

    monkeypatch.setattr(compiled_module, "convert", refuse)
    again = loaded(forest)
    assert again.engine == "onnx"
    assert (folder / GRAPH_FILE).read_bytes() == graph


@pytest.mark.parametrize(
    "tamper",
    ["graph bytes", "graph missing", "record unreadable", "other artifact", "other library"],
)
def test_a_damaged_or_stale_cache_is_rebuilt(
    forest: Path, conversions: list[str], tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    loaded(forest)
    folder = forest / CACHE_DIR
    record = json.loads((folder / RECORD_FILE).read_text())
    if tamper == "graph bytes":
        (folder / GRAPH_FILE).write_bytes((folder / GRAPH_FILE).read_bytes()[:-7] + b"garbage")
    elif tamper == "graph missing":
        (folder / GRAPH_FILE).unlink()
    elif tamper == "record unreadable":
        (folder / RECORD_FILE).write_text("{not json")
    elif tamper == "other artifact":
        record["source_sha256"] = "0" * 64
        (folder / RECORD_FILE).write_text(json.dumps(record))
    else:
        record["libraries"]["skl2onnx"] = "0.0.1"
        (folder / RECORD_FILE).write_text(json.dumps(record))
    caplog.clear()  # the first load's line, if an earlier app set the logger to INFO
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        assert loaded(forest).engine == "onnx"
    assert conversions == ["RandomForestClassifier"] * 2
    rebuilt = json.loads((folder / RECORD_FILE).read_text())
    assert rebuilt["sha256"] == hashlib.sha256((folder / GRAPH_FILE).read_bytes()).hexdigest()
    assert rebuilt["source_sha256"] == read_manifest(forest).artifact.sha256
    assert rebuilt["libraries"] == record["libraries"] or tamper == "other library"
    [line] = [r.getMessage() for r in caplog.records if "compiled for onnx" in r.getMessage()]
    assert "converted in" in line
    assert "cached in" in line


def test_read_only_folder_converts_in_memory_and_says_so(
    forest: Path,
    conversions: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # We run as root in CI, where chmod does not stop writes: fail as a read-only mount does.
    def read_only(path: Path, data: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache_module, "_write_atomic", read_only)
    with caplog.at_level(logging.INFO, logger="tabserve.models"):
        runtime = loaded(forest)
    assert runtime.engine == "onnx"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"model forest version 1: compiled cache could not be written to {forest / CACHE_DIR} "
        "(Read-only file system); serving the in-memory conversion, the next load converts again"
    ]
    assert not (forest / CACHE_DIR / RECORD_FILE).exists()
    loaded(forest)
    assert conversions == ["RandomForestClassifier"] * 2


def test_a_write_interrupted_midway_leaves_no_partial_cache(
    forest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    assert loaded(forest).engine == "onnx"
    assert list((forest / CACHE_DIR).iterdir()) == []  # temporary files removed
    monkeypatch.undo()
    loaded(forest)
    assert sorted(p.name for p in (forest / CACHE_DIR).iterdir()) == [RECORD_FILE, GRAPH_FILE]


def test_linear_models_need_no_cache(zoo: dict[tuple[str, str], Path]) -> None:
    folder = zoo["churn", "logistic_regression"]
    assert loaded(folder).engine == "numpy"
    assert not (folder / CACHE_DIR).exists()


# --- engine choice through settings and the real app ----------------------------------


def test_engine_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().engine == "auto"
    monkeypatch.setenv("TABSERVE_ENGINE", "sklearn")
    assert Settings().engine == "sklearn"
    monkeypatch.setenv("TABSERVE_ENGINE", "onnx")
    with pytest.raises(ValidationError, match="engine"):
        Settings()


@pytest.fixture(scope="module")
def app_models(
    tmp_path_factory: pytest.TempPathFactory,
    datasets: dict[str, Dataset],
    extra_estimators: None,
) -> Path:
    """forest (onnx), logistic (numpy), churn (mixed HGB, onnx), knn (sklearn)."""
    root = tmp_path_factory.mktemp("app-models")
    train_one(root, datasets["iris"], "random_forest", "forest")
    train_one(root, datasets["iris"], "logistic_regression", "logistic")
    train_one(root, datasets["churn"], "hist_gradient_boosting", "churn")
    train_one(root, datasets["iris"], "k_neighbors", "knn")
    return root


def model_info_engines(client: TestClient) -> dict[str, str]:
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "tabserve_model_info":
                found[sample.labels["model"]] = sample.labels["engine"]
    return found


def metadata_engine(client: TestClient, name: str) -> str:
    response = client.get(f"/v2/models/{name}/versions/1")
    assert response.status_code == 200
    engine: str = response.json()["parameters"]["engine"]
    return engine


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("auto", {"forest": "onnx", "logistic": "numpy", "churn": "onnx", "knn": "sklearn"}),
        ("sklearn", dict.fromkeys(["forest", "logistic", "churn", "knn"], "sklearn")),
    ],
)
def test_the_app_reports_and_serves_with_the_chosen_engine(
    app_models: Path, datasets: dict[str, Dataset], engine: str, expected: dict[str, str]
) -> None:
    settings = Settings(models_dir=app_models, engine=engine, inference_threads=1)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        assert model_info_engines(client) == expected
        assert {name: metadata_engine(client, name) for name in expected} == expected
        for name, data in [("forest", "iris"), ("logistic", "iris"), ("churn", "churn")]:
            dataset = datasets[data]
            rows = dataset.features[::7]
            names = [c.name for c in dataset.columns]
            records = [dict(zip(names, _json_row(row), strict=True)) for row in rows]
            response = client.post(f"/models/{name}/versions/1/predict", json=records)
            assert response.status_code == 200, response.text
            answers = response.json()["predictions"]
            expected_answer = reference(app_models / name / "1").predict(rows)
            assert [a["prediction"] for a in answers] == expected_answer.predict.tolist()
            assert expected_answer.proba is not None
            classes = read_manifest(app_models / name / "1").target.classes or []
            served = np.array([[a["probabilities"][str(c)] for c in classes] for a in answers])
            assert np.abs(served - expected_answer.proba).max() <= TOLERANCE["onnx"]


def _json_row(row: npt.NDArray[Any]) -> list[Any]:
    """A row as JSON values: NaN becomes null."""
    return [None if isinstance(v, float) and np.isnan(v) else v for v in row.tolist()]
