"""Per-call cost of each engine on each estimator we serve: the figures behind `engine_for`.

Run from the repository root (one core, nothing else busy):

    taskset -c 1 python -m bench.engines            # full size, ~3 minutes
    taskset -c 1 python -m bench.engines --quick    # smaller models, a smoke run
    taskset -c 1 python -m bench.engines --only XGB --only LGBM --only CatBoost

Every estimator is fitted in the pipeline training exports, then called through
the same `predict` the service uses (validated float64 or object rows in, labels
and float64 probabilities or values out) at 1, 64 and 1024 rows. XGBoost, LightGBM
and CatBoost are measured too when installed; their `sklearn` row is the library's
own predict through its scikit-learn API. Cells are the
median wall time of one call in µs, all measured in this one run. `numpy-walk` is
a vectorised level-by-level forest evaluator written here only to be measured.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from tabserve.service.core.engines import compile_model, engine_for
from tabserve.service.core.engines.preparation import split_pipeline
from tabserve.service.core.runtime import Prediction

SIZES = (1, 64, 1024)
Predict = Callable[[npt.NDArray[Any]], Prediction]


@dataclass
class Case:
    """One fitted pipeline, its task and the rows it is called with."""

    name: str
    pipeline: Any
    classify: bool
    rows: npt.NDArray[Any]


def main() -> None:
    """Fit every case, time every engine on it, print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and models")
    parser.add_argument("--budget", type=float, default=0.4, help="seconds per cell (max)")
    parser.add_argument(
        "--only", action="append", default=[], help="estimators whose name contains this"
    )
    args = parser.parse_args()
    # One core per process, as the service runs: no OpenMP team for scikit-learn either.
    threadpool_limits(limits=1)
    cases = build_cases(quick=args.quick, only=args.only)
    print(environment())
    print()
    print("| estimator | engine | 1 row | 64 rows | 1024 rows | max diff vs sklearn | serves |")
    print("|---|---|---:|---:|---:|---:|---|")
    for case in cases:
        chosen = engine_for(split_pipeline(case.pipeline)[1])
        reference = sklearn_predict(case)
        candidates = engines(case)
        by_size = [median_us(candidates, case.rows[:n], args.budget) for n in SIZES]
        for engine, predict in candidates.items():
            cells = [f"{timings[engine]:,.1f}" for timings in by_size]
            gap = max_difference(reference(case.rows), predict(case.rows))
            shown = "-" if gap is None else f"{gap:.1e}"
            mark = "**yes**" if engine == chosen else ""
            print(f"| {case.name} | {engine} | {' | '.join(cells)} | {shown} | {mark} |")


def environment() -> str:
    """Library versions and the machine, for the record."""
    names = ["scikit-learn", "numpy", "onnxruntime", "skl2onnx", "onnx", "protobuf"]
    names += [n for n in (*BOOSTERS, "onnxmltools") if _installed(n)]
    versions = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    return f"Python {platform.python_version()}, {versions}; {platform.machine()}"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def build_cases(*, quick: bool, only: list[str] | None = None) -> list[Case]:
    """The estimators we serve, in the pipelines training exports, on generated data.

    `only`: fit just the estimators whose name contains one of these strings.
    """
    wanted = only or [""]
    samples, trees = (4000, 20) if quick else (20000, 100)
    x, y = make_classification(
        n_samples=samples, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    xr, yr = make_regression(n_samples=samples, n_features=20, noise=10.0, random_state=0)
    test = slice(0, 1024)
    train = slice(1024, None)
    scaled = [("prepare", Pipeline([("scale", StandardScaler())]))]
    forest = {"n_estimators": trees, "max_depth": 12, "n_jobs": 1, "random_state": 0}
    classifiers: list[tuple[str, list[tuple[str, Any]]]] = [
        ("RandomForestClassifier", [("model", RandomForestClassifier(**forest))]),
        ("ExtraTreesClassifier", [("model", ExtraTreesClassifier(**forest))]),
        (
            "GradientBoostingClassifier",
            [("model", GradientBoostingClassifier(n_estimators=trees, random_state=0))],
        ),
        (
            "HistGradientBoostingClassifier",
            [("model", HistGradientBoostingClassifier(max_iter=trees, random_state=0))],
        ),
        ("LogisticRegression", [*scaled, ("model", LogisticRegression(max_iter=1000))]),
    ]
    regressors: list[tuple[str, list[tuple[str, Any]]]] = [
        ("RandomForestRegressor", [("model", RandomForestRegressor(**forest))]),
        (
            "GradientBoostingRegressor",
            [("model", GradientBoostingRegressor(n_estimators=trees, random_state=0))],
        ),
        (
            "HistGradientBoostingRegressor",
            [("model", HistGradientBoostingRegressor(max_iter=trees, random_state=0))],
        ),
        ("Ridge", [*scaled, ("model", Ridge())]),
        ("LinearRegression", [("model", LinearRegression())]),
    ]
    boosted_classifiers, boosted_regressors = booster_steps(trees)
    cases = []
    for name, steps in classifiers + boosted_classifiers:
        if any(w in name for w in wanted):
            fitted = Pipeline(steps).fit(x[train], y[train])
            cases.append(Case(name, fitted, True, x[test]))
    for name, steps in regressors + boosted_regressors:
        if any(w in name for w in wanted):
            fitted = Pipeline(steps).fit(xr[train], yr[train])
            cases.append(Case(name, fitted, False, xr[test]))
    if any(w in f"{name}, mixed" for name in MIXED for w in wanted):
        mixed = mixed_cases(x, y, train, test, trees)
        cases += [c for c in mixed if any(w in c.name for w in wanted)]
    return cases


BOOSTERS = ("xgboost", "lightgbm", "catboost")
MIXED = ("HistGradientBoostingClassifier", "LogisticRegression")
Steps = list[tuple[str, list[tuple[str, Any]]]]


def booster_steps(trees: int) -> tuple[Steps, Steps]:
    """XGBoost, LightGBM and CatBoost with `trees` trees, one thread, for those installed."""
    classifiers: Steps = []
    regressors: Steps = []
    if _installed("xgboost"):
        import xgboost

        xgb = {"n_estimators": trees, "n_jobs": 1, "random_state": 0}
        classifiers.append(("XGBClassifier", [("model", xgboost.XGBClassifier(**xgb))]))
        regressors.append(("XGBRegressor", [("model", xgboost.XGBRegressor(**xgb))]))
    if _installed("lightgbm"):
        import lightgbm

        lgbm = {"n_estimators": trees, "n_jobs": 1, "random_state": 0, "verbose": -1}
        classifiers.append(("LGBMClassifier", [("model", lightgbm.LGBMClassifier(**lgbm))]))
        regressors.append(("LGBMRegressor", [("model", lightgbm.LGBMRegressor(**lgbm))]))
    if _installed("catboost"):
        import catboost

        cat = {
            "iterations": trees,
            "thread_count": 1,
            "random_state": 0,
            "verbose": False,
            "allow_writing_files": False,
        }
        classifiers.append(("CatBoostClassifier", [("model", catboost.CatBoostClassifier(**cat))]))
        regressors.append(("CatBoostRegressor", [("model", catboost.CatBoostRegressor(**cat))]))
    return classifiers, regressors


def mixed_cases(
    x: npt.NDArray[np.float64], y: npt.NDArray[Any], train: slice, test: slice, trees: int
) -> list[Case]:
    """20 numeric + 3 categorical features with gaps, as validation hands them over."""
    rng = np.random.default_rng(0)
    colours = np.array(["red", "green", "blue", "black"], dtype=object)
    mixed = np.empty((x.shape[0], 23), dtype=object)
    mixed[:, :20] = np.where(rng.random(x.shape) < 0.05, np.nan, x)
    for j in range(20, 23):
        column = colours[(x[:, j - 20] > 0).astype(int) + 2 * (rng.random(x.shape[0]) < 0.3)]
        column[rng.random(x.shape[0]) < 0.05] = None
        mixed[:, j] = column
    numeric, categorical = list(range(20)), [20, 21, 22]
    encode = Pipeline(
        [
            ("impute", SimpleImputer(missing_values=None, strategy="constant", fill_value="?")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )

    def prepare(numeric_steps: Any) -> ColumnTransformer:
        return ColumnTransformer(
            [("number", numeric_steps, numeric), ("category", encode, categorical)],
            sparse_threshold=0.0,
        )

    impute_scale = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    )
    hgb = Pipeline(
        [
            ("prepare", prepare("passthrough")),
            ("model", HistGradientBoostingClassifier(max_iter=trees, random_state=0)),
        ]
    )
    logistic = Pipeline(
        [("prepare", prepare(impute_scale)), ("model", LogisticRegression(max_iter=1000))]
    )
    return [
        Case(
            "HistGradientBoostingClassifier, mixed",
            hgb.fit(mixed[train], y[train]),
            True,
            mixed[test],
        ),
        Case("LogisticRegression, mixed", logistic.fit(mixed[train], y[train]), True, mixed[test]),
    ]


def sklearn_predict(case: Case) -> Predict:
    """What `SklearnRuntime.predict` does: one predict_proba pass, labels by argmax."""
    model = case.pipeline
    if not case.classify:
        return lambda rows: Prediction(np.asarray(model.predict(rows)))
    classes = np.asarray(model.classes_)

    def predict(rows: npt.NDArray[Any]) -> Prediction:
        proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
        return Prediction(classes[proba.argmax(axis=1)], proba)

    return predict


def engines(case: Case) -> dict[str, Predict]:
    """Every engine that can serve this case, by name."""
    found: dict[str, Predict] = {"sklearn": sklearn_predict(case)}
    found["onnx"] = compile_model(case.pipeline, "onnx", classify=case.classify).predict
    final = split_pipeline(case.pipeline)[1]
    if isinstance(final, LogisticRegression | LinearRegression | Ridge):
        found["numpy"] = compile_model(case.pipeline, "numpy", classify=case.classify).predict
    if isinstance(final, RandomForestClassifier | ExtraTreesClassifier | RandomForestRegressor):
        found["numpy-walk"] = forest_walk(case)
    preparer, _ = split_pipeline(case.pipeline)
    if not preparer.identity and case.rows.dtype == object:
        found["(preprocessing alone)"] = lambda rows: Prediction(preparer(rows))
    return found


def forest_walk(case: Case) -> Predict:
    """A forest evaluated in numpy: every tree descends one level per step, all rows at once."""
    forest = split_pipeline(case.pipeline)[1]
    trees = [e.tree_ for e in forest.estimators_]
    width = max(t.node_count for t in trees)
    outputs = trees[0].value.shape[1] * trees[0].value.shape[2]
    feature = np.zeros((len(trees), width), dtype=np.intp)
    threshold = np.full((len(trees), width), np.inf)
    left = np.tile(np.arange(width), (len(trees), 1))
    right = left.copy()
    value = np.zeros((len(trees), width, outputs))
    for i, tree in enumerate(trees):
        n = tree.node_count
        inner = tree.children_left[:n] >= 0
        feature[i, :n] = np.where(inner, tree.feature[:n], 0)
        threshold[i, :n] = np.where(inner, tree.threshold[:n], np.inf)
        left[i, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
        right[i, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
        value[i, :n] = tree.value[:n].reshape(n, outputs)
    depth = max(t.max_depth for t in trees)
    tree_index = np.arange(len(trees))[:, None]
    classes = np.asarray(getattr(forest, "classes_", []))

    def predict(rows: npt.NDArray[Any]) -> Prediction:
        x = np.asarray(rows, dtype=np.float32).astype(np.float64)
        row_index = np.arange(x.shape[0])[None, :]
        node = np.zeros((len(trees), x.shape[0]), dtype=np.intp)
        for _ in range(depth):
            go_left = x[row_index, feature[tree_index, node]] <= threshold[tree_index, node]
            node = np.where(go_left, left[tree_index, node], right[tree_index, node])
        mean = value[tree_index, node].mean(axis=0)
        if not case.classify:
            return Prediction(mean.reshape(-1))
        return Prediction(classes[mean.argmax(axis=1)], mean)

    return predict


def median_us(
    candidates: dict[str, Predict], rows: npt.NDArray[Any], budget: float, rounds: int = 10
) -> dict[str, float]:
    """Median µs of one call per engine; engines take turns in short blocks of calls.

    Turns put every engine under the same background load (this machine is shared);
    blocks keep each engine's caches warm, as serving one model does. Each engine
    gets about `budget` seconds over `rounds` blocks; each block's first call is a
    warm-up and not counted.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, predict in candidates.items():
            predict(rows)
            deadline = time.perf_counter() + budget / rounds
            calls = 0
            while calls < 1 or (time.perf_counter() < deadline and calls < 200):
                started = time.perf_counter_ns()
                predict(rows)
                times[name].append((time.perf_counter_ns() - started) / 1000)
                calls += 1
    return {name: statistics.median(values) for name, values in times.items()}


def max_difference(expected: Prediction, got: Prediction) -> float | None:
    """Largest absolute difference in probabilities (or values); inf if a label differs.

    None when there is nothing to compare (the preprocessing-alone row).
    """
    if got.predict.shape != expected.predict.shape:
        return None
    if expected.proba is None:
        return float(np.max(np.abs(got.predict - expected.predict)))
    if got.proba is None:
        return None
    if not np.array_equal(got.predict, expected.predict):
        return float("inf")
    return float(np.max(np.abs(got.proba - expected.proba)))


if __name__ == "__main__":
    main()
