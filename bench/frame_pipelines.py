"""Notebook pipelines with gaps, exported: scikit-learn against the compiled engine, per call.

    python -m bench.frame_pipelines [--trees 100] [--calls 200]

Prints figures; asserts nothing. Each pipeline is fitted on a pandas DataFrame of 2000
rows (two numbers and two string columns, each with missing values): a
`ColumnTransformer` with a `OneHotEncoder(handle_unknown="ignore")` (NaN among its
categories) and either nothing for the numbers (NaN reaches the trees) or imputers,
ending in a 100-tree forest or HistGradientBoosting. It is exported with
`tabserve.export`, then loaded twice from the same folder, by `SklearnRuntime` (the
DataFrame the model was fitted on, built per call) and by `CompiledRuntime`, and each
is called with the same validated rows (missing values, unseen categories) as the
service calls it: median µs per call over `--calls` calls at 1 and 64 rows, one
thread, in this one process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

import tabserve
from tabserve.service.core.engines import CompiledRuntime
from tabserve.service.core.runtime import Runtime, SklearnRuntime

SIZES = (1, 64)


def frame(rows: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    """Numbers and strings with gaps; `unseen`: categories the model never saw, too."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(np.float64),
            "income": rng.normal(3000, 800, rows).round(2),
            "city": rng.choice(["berlin", "lisbon", "paris", "rome"], rows).astype(object),
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        }
    )
    data.loc[data.index % 7 == 0, "age"] = np.nan
    data.loc[data.index % 11 == 0, "income"] = np.nan
    data.loc[data.index % 13 == 0, "city"] = np.nan
    if unseen:
        data.loc[data.index % 5 == 0, "city"] = "madrid"
    return data


def pipelines(trees: int) -> dict[str, Callable[[], Pipeline]]:
    """The pipelines measured, by the name printed."""

    def prep(numbers: Any, categories: Any) -> ColumnTransformer:
        return ColumnTransformer(
            [("numbers", numbers, ["age", "income"]), ("cats", categories, ["city", "plan"])]
        )

    ignore = OneHotEncoder(handle_unknown="ignore")
    imputed = make_pipeline(SimpleImputer(strategy="most_frequent"), ignore)
    forest = RandomForestClassifier(trees, max_depth=10, random_state=0, n_jobs=1)
    boosted = HistGradientBoostingClassifier(max_iter=trees, random_state=0)
    return {
        "forest, NaN to the trees": lambda: Pipeline(
            [("prep", prep("passthrough", ignore)), ("model", forest)]
        ),
        "forest, imputed": lambda: Pipeline(
            [("prep", prep(SimpleImputer(), imputed)), ("model", forest)]
        ),
        "hist gradient boosting, NaN to the trees": lambda: Pipeline(
            [("prep", prep("passthrough", ignore)), ("model", boosted)]
        ),
    }


def served_rows(data: pd.DataFrame) -> npt.NDArray[Any]:
    """Rows as validation hands them to a runtime: floats (NaN) and strings (None)."""
    rows: npt.NDArray[Any] = data.to_numpy(dtype=object)
    rows[pd.isna(data).to_numpy()] = None
    rows[:, :2] = data[["age", "income"]].to_numpy(dtype=np.float64).astype(object)
    return rows


def median_us(runtime: Runtime, rows: npt.NDArray[Any], calls: int) -> float:
    """Median wall time of one `predict` call, in µs."""
    runtime.predict(rows)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        runtime.predict(rows)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    """Fit, export, load twice, time; print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    threadpool_limits(limits=1)  # one core per process, as the service runs
    train = frame(2000, seed=0)
    label = pd.Series(np.where(train["age"].fillna(40) > 50, "old", "young"), name="band")
    asked = served_rows(frame(64, seed=7, unseen=True))
    print("| pipeline | engine | 1 row | 64 rows |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for k, (name, build) in enumerate(pipelines(args.trees).items()):
            model = build().fit(train, label)
            tabserve.export(model, train, label, name=f"p{k}", models_dir=folder)
            path = Path(folder) / f"p{k}" / "1"
            for runtime in (SklearnRuntime(path), CompiledRuntime(path)):
                runtime.load()
                cells = [f"{median_us(runtime, asked[:n], args.calls):,.0f}" for n in SIZES]
                print(f"| {name} | {runtime.engine} | {' | '.join(cells)} |")
                runtime.unload()


if __name__ == "__main__":
    main()
