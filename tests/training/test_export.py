"""`tabserve.export`: the manifest it writes, and every refusal with its message."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import tabserve
from tabserve.artifact.manifest import CategoryStats, DriftInfo, Manifest, NumericStats
from tabserve.artifact.repository import list_models
from tabserve.artifact.store import load_artifact, read_manifest
from tabserve.training.errors import ExportError

REPO_ROOT = Path(__file__).resolve().parents[2]


def people(rows: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(3000, 500, rows),
            "city": rng.choice(["berlin", "paris", "rome"], rows).astype(object),
        }
    )
    x.loc[x.index % 7 == 0, "income"] = np.nan
    x.loc[x.index % 9 == 0, "city"] = np.nan
    y = pd.Series(np.where(x["age"] > 45, "old", "young"), name="band")
    return x, y


def churn_pipeline() -> Pipeline:
    prep = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city"],
            ),
        ]
    )
    return Pipeline([("prep", prep), ("model", LogisticRegression())])


@pytest.fixture
def fitted() -> tuple[Pipeline, pd.DataFrame, pd.Series]:
    x, y = people()
    return churn_pipeline().fit(x, y), x, y


def test_the_manifest_describes_the_model_and_its_sample(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    manifest = tabserve.export(model, x, y, name="band", models_dir=tmp_path)
    assert manifest == read_manifest(tmp_path / "band" / "1")
    assert (manifest.name, manifest.version, manifest.task) == ("band", 1, "classification")
    assert manifest.feature_names == ["age", "income", "city"]
    assert [f.type for f in manifest.features] == ["number", "number", "category"]
    dtypes = [f.dtype.name for f in manifest.features if f.dtype]
    assert dtypes == ["int64", "float64", str(x["city"].dtype)]  # object, or str in pandas 3
    assert manifest.estimator.input == "frame"
    assert manifest.estimator.class_name == "LogisticRegression"
    assert manifest.estimator.pipeline == ["prep", "model"]
    assert manifest.estimator.supports_missing
    assert manifest.missing_allowed == [True, True, True]
    income = manifest.features[1].stats
    assert isinstance(income, NumericStats)
    assert (income.count, income.missing) == (102, 18)
    assert income.min == pytest.approx(x["income"].min())
    assert sum(income.histogram.counts) == 102
    city = manifest.features[2].stats
    assert isinstance(city, CategoryStats)
    assert city.categories == ["berlin", "paris", "rome"]
    assert (sum(city.frequencies), city.missing) == (106, 14)
    assert manifest.target.name == "band"
    assert manifest.target.classes == ["old", "young"]
    assert manifest.target.distribution == [int((y == "old").sum()), int((y == "young").sum())]
    assert manifest.metrics["accuracy"] == pytest.approx((model.predict(x) == y).mean())
    assert set(manifest.metrics) == {"accuracy", "f1_macro", "roc_auc"}
    assert manifest.environment.scikit_learn == sklearn.__version__
    assert manifest.environment.libraries == {}
    assert manifest.training.source == "export:pandas.DataFrame"
    assert (manifest.training.rows, manifest.training.test_rows) == (120, 0)
    assert manifest.drift == DriftInfo(available=True, reason=None)
    loaded = load_artifact(tmp_path / "band" / "1")
    assert loaded.estimator.predict(x).tolist() == model.predict(x).tolist()


def test_a_sample_under_100_rows_keeps_its_statistics_but_gives_no_drift(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    small = tabserve.export(model, x.head(99), y.head(99), name="band", models_dir=tmp_path)
    assert small.training.rows == 99
    assert all(f.stats is not None for f in small.features)  # validation keeps its ranges
    assert small.drift == DriftInfo(
        available=False,
        reason="the reference sample has 99 rows; a drift reference needs at least 100: "
        "export with a larger sample of the training data (X in tabserve.export, --data FILE "
        "in tabserve import)",
    )
    enough = tabserve.export(model, x.head(100), y.head(100), name="band", models_dir=tmp_path)
    assert enough.drift.available


def test_a_manifest_written_before_the_drift_field_loads_with_drift_available(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    written = tabserve.export(model, x, y, name="band", models_dir=tmp_path).model_dump(mode="json")
    del written["drift"]
    assert Manifest.model_validate(written).drift == DriftInfo(available=True, reason=None)
    unreasoned = {**written, "drift": {"available": False}}
    with pytest.raises(ValueError, match=r"drift\.reason is set exactly when drift is unavailable"):
        Manifest.model_validate(unreasoned)
    no_stats = {**written, "features": [{**f, "stats": None} for f in written["features"]]}
    with pytest.raises(ValueError, match="features without training statistics have no drift"):
        Manifest.model_validate(no_stats)


def test_regression_without_y_has_no_target_statistics_or_metrics(tmp_path: Path) -> None:
    x, _ = people()
    numbers = x[["age"]]
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(numbers, x["age"] * 2.0)
    manifest = tabserve.export(model, numbers, name="r", models_dir=tmp_path, version=4)
    assert (manifest.version, manifest.task) == (4, "regression")
    assert manifest.target.histogram is None
    assert manifest.metrics == {}
    given = tabserve.export(model, numbers, name="r", models_dir=tmp_path, metrics={"r2": 0.5})
    assert (given.version, given.metrics) == (5, {"r2": 0.5})


def test_a_numpy_sample_works_when_the_model_records_its_feature_names(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    _, x, y = fitted
    numbers = x[["age", "income"]]
    model = HistGradientBoostingClassifier(max_iter=5).fit(numbers, y)
    manifest = tabserve.export(model, numbers.to_numpy(), y, name="n", models_dir=tmp_path)
    assert manifest.feature_names == ["age", "income"]
    assert manifest.training.source == "export:numpy.ndarray"


def test_a_category_dtype_keeps_its_declared_categories(tmp_path: Path) -> None:
    x, y = people()
    x = x[["age", "city"]].copy()
    x["city"] = x["city"].astype(pd.CategoricalDtype(["berlin", "lisbon", "paris", "rome"]))
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    manifest = tabserve.export(model.fit(x, y), x, y, name="c", models_dir=tmp_path)
    city = manifest.features[1]
    assert city.dtype is not None
    assert city.dtype.categories == ["berlin", "lisbon", "paris", "rome"]
    assert isinstance(city.stats, CategoryStats)
    assert city.stats.categories == ["berlin", "lisbon", "paris", "rome"]
    assert city.stats.frequencies[1] == 0  # declared, never seen in the sample


# refusals ---------------------------------------------------------------------------------


def refused(model: Any, x: Any, y: Any = None, **kwargs: Any) -> str:
    with pytest.raises(ExportError) as info:
        tabserve.export(model, x, y, name="m", models_dir=kwargs.pop("models_dir"), **kwargs)
    return str(info.value)


def test_an_unfitted_model_is_refused(tmp_path: Path) -> None:
    x, y = people()
    assert refused(churn_pipeline(), x, y, models_dir=tmp_path) == (
        "Pipeline is not fitted: call model.fit(X, y) before exporting it"
    )
    assert not tmp_path.joinpath("m").exists()


def test_a_missing_column_is_named(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    assert refused(model, x.drop(columns=["city", "age"]), y, models_dir=tmp_path) == (
        "X lacks columns 'age', 'city' that the model was fitted on; pass the columns it was "
        "fitted on (model.feature_names_in_: 'age', 'income', 'city')"
    )


def test_columns_in_another_order_are_named(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    assert refused(model, x[["age", "city", "income"]], y, models_dir=tmp_path) == (
        "X has its columns in another order than the model was fitted on: column 1 is 'city' "
        "where the model expects 'income' (fitted order: 'age', 'income', 'city'); "
        "pass X[model.feature_names_in_]"
    )


def test_an_extra_column_is_named(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    assert refused(model, x.assign(band=y), y, models_dir=tmp_path) == (
        "X has column 'band' that the model was not fitted on (the target?); "
        "pass X[model.feature_names_in_]"
    )


def test_a_y_of_another_length_is_refused(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    assert refused(model, x, y[:-3], models_dir=tmp_path) == (
        "y has 117 rows but X has 120: pass the target of the same rows"
    )


def test_a_numpy_sample_without_feature_names_is_refused(tmp_path: Path) -> None:
    x, y = people()
    numbers = x[["age"]].to_numpy()
    model = LogisticRegression().fit(numbers, y)
    assert refused(model, numbers, y, models_dir=tmp_path).startswith(
        "X is a numpy array and the model records no feature names (it was fitted on an "
        "array): pass X as a pandas DataFrame with one named column per feature"
    )


class Scorer(BaseEstimator):
    """Fitted, but neither a classifier nor a regressor."""

    def fit(self, x: Any, y: Any) -> Scorer:
        self.n_features_in_ = x.shape[1]
        self.feature_names_in_ = np.asarray(list(x.columns), dtype=object)
        return self

    def predict(self, x: Any) -> Any:
        return np.zeros(len(x))


def test_a_task_it_cannot_tell_is_refused(tmp_path: Path) -> None:
    x, y = people()
    message = refused(Scorer().fit(x, y), x, y, models_dir=tmp_path)
    assert message == (
        "cannot tell whether Scorer is a classifier or a regressor: scikit-learn's "
        "is_classifier and is_regressor are both False for it. Export a classifier or "
        "regressor (a Pipeline ending in one), or give your estimator ClassifierMixin or "
        "RegressorMixin"
    )


def test_a_lambda_is_named_with_how_to_ship_it(tmp_path: Path) -> None:
    x, y = people()
    numbers = x[["age"]]
    model = make_pipeline(
        FunctionTransformer(lambda v: v * 2, feature_names_out="one-to-one"), LogisticRegression()
    ).fit(numbers, y)
    message = refused(model, numbers, y, models_dir=tmp_path)
    assert message.startswith(
        "parameter 'func' of FunctionTransformer is a lambda (tests.training.test_export."
        "test_a_lambda_is_named_with_how_to_ship_it.<locals>.<lambda>): pickle stores "
        "functions by name and a lambda has none, so the server could not load the model; "
        "define it with def at the top level of a module and move it into a module the "
        "serving environment can import"
    )
    assert message.endswith("(or use a library function, e.g. numpy.log1p)")
    assert not tmp_path.joinpath("m").exists()


NOTEBOOK = """
import numpy as np, pandas as pd, tabserve
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

class Doubler(TransformerMixin, BaseEstimator):
    def fit(self, x, y=None):
        return self
    def transform(self, x):
        return x * 2

def halve(v):
    return v / 2

x = pd.DataFrame({"a": np.arange(20.0)})
y = np.arange(20) % 2
cases = {
    "class": make_pipeline(Doubler(), LogisticRegression()),
    "function": make_pipeline(
        __import__("sklearn.preprocessing").preprocessing.FunctionTransformer(halve),
        LogisticRegression(),
    ),
}
for name, model in cases.items():
    try:
        tabserve.export(model.fit(x, y), x, y, name=name, models_dir=MODELS)
    except tabserve.ExportError as exc:
        print(name, "|", exc)
"""


def test_code_defined_in_main_is_named_with_how_to_ship_it(tmp_path: Path) -> None:
    script = NOTEBOOK.replace("MODELS", repr(str(tmp_path)))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" | ", 1) for line in proc.stdout.splitlines())
    ship = (
        "move it into a module the serving environment can import (a package you install "
        "there, or a .py file on its PYTHONPATH), import it from that module, fit again and "
        "export"
    )
    assert lines["class"] == (
        "step Doubler is an instance of class Doubler defined in __main__ (a notebook or "
        f"script), which the server cannot import; {ship}"
    )
    assert lines["function"] == (
        "parameter 'func' of FunctionTransformer is function halve defined in __main__ (a "
        f"notebook or script), which the server cannot import; {ship}"
    )
    assert list_models(tmp_path) == {}


def test_non_string_categories_are_refused_with_the_fix(tmp_path: Path) -> None:
    x = pd.DataFrame({"zip": pd.Series([75001, 75002, 75003, 75001] * 5, dtype=object)})
    y = np.arange(20) % 2
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression()).fit(x, y)
    assert refused(model, x, y, models_dir=tmp_path) == (
        "column 'zip' holds int 75001 (row 0) among categories: requests send categories as "
        "strings, so the model would never see it; convert the column before fitting "
        "(X['zip'].astype(str), or a number dtype) and fit again"
    )


def test_the_written_manifest_is_plain_json(
    fitted: tuple[Pipeline, pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    model, x, y = fitted
    tabserve.export(model, x, y, name="band", models_dir=tmp_path)
    raw = json.loads((tmp_path / "band" / "1" / "model.json").read_text(encoding="utf-8"))
    assert raw["estimator"]["input"] == "frame"
    assert [f["missing"] for f in raw["features"]] == [True, True, True]
