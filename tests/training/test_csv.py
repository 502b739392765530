"""CSV data: inferred and overridden column types, missing values, categories, the task."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tabserve.artifact.manifest import CategoryStats, NumericStats
from tabserve.artifact.store import load_artifact, read_manifest
from tabserve.training.csv_table import MISSING_MARKERS
from tabserve.training.datasets import Column, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ParamValue
from tabserve.training.pipeline import TrainRequest, train

WriteCsv = Callable[[str, str], Path]

# people.csv (see conftest.py), by column, None where the cell is a missing marker.
AGES = [31, 45, None, 22, 38, None, 29, 51, 33, 27, None, 41]
AGES += [36, 24, 48, 30, 39, 26, 44, 35, 28, 50, 32, 47]
CITIES = ["paris", "berlin", "rome", "paris", "berlin", "rome", None, "paris", "berlin", "rome"]
CITIES += ["paris", None, "rome", "berlin", "paris", "rome", "berlin", "paris", "rome", "berlin"]
CITIES += ["paris", "rome", "berlin", "paris"]
INCOMES = [1200.5, 1800, 1500, 900.25, 2100, 1300, 1000, 2500, 1750.75, 1100, 1400, 1950]
INCOMES += [1650, 950, 2300, 1250, 1850, 1050, 2050, 1600, 1150, 2400, 1350, 2200]
LABELS = ["yes", "no"] * 12

SMALL: dict[str, dict[str, ParamValue]] = {
    "logistic_regression": {},
    "random_forest": {"n_estimators": 10},
    "hist_gradient_boosting": {"max_iter": 10},
}


def test_people_csv_types_and_values(people_csv: Path) -> None:
    data = load_csv(people_csv, "label")
    assert data.name == "people"
    assert data.source == f"csv:{people_csv}"
    assert data.task == "classification"
    assert data.target_name == "label"
    assert data.columns == [
        Column("age", "number"),
        Column("city", "category"),
        Column("income", "number"),
    ]
    assert data.features.dtype == object
    assert data.features.shape == (24, 3)
    ages = data.features[:, 0].astype(np.float64)
    np.testing.assert_array_equal(ages, [math.nan if a is None else a for a in AGES])
    assert data.features[:, 1].tolist() == CITIES  # " paris " is stripped, "" and "null" are None
    assert data.features[:, 2].tolist() == INCOMES
    assert all(type(v) is float for v in data.features[:, 2])
    assert data.target.tolist() == LABELS
    assert data.has_categories
    assert data.has_missing()


def test_all_numeric_csv_gives_a_float_matrix(write_csv: WriteCsv) -> None:
    path = write_csv("n.csv", "a,b,y\n1,2.5,0\n3,,1\n5,6,0\n7,8,1\n")
    data = load_csv(path, "y")
    assert data.features.dtype == np.float64
    np.testing.assert_array_equal(data.features, [[1, 2.5], [3, math.nan], [5, 6], [7, 8]])
    assert not data.has_categories
    assert data.has_missing()
    assert data.target.dtype == np.int64
    assert data.target.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("marker", sorted(MISSING_MARKERS))
def test_every_missing_marker_in_any_case_is_missing(marker: str, write_csv: WriteCsv) -> None:
    cell = marker.upper()
    path = write_csv("m.csv", f"num,cat,y\n1,a,0\n {cell} , {cell} ,1\n3,b,0\n4,c,1\n")
    data = load_csv(path, "y")
    assert data.columns == [Column("num", "number"), Column("cat", "category")]
    assert math.isnan(data.features[1, 0])
    assert data.features[:, 1].tolist() == ["a", None, "b", "c"]


def test_people_manifest_records_categories_missing_and_support(
    people_csv: Path, models_dir: Path, call_cli: Any
) -> None:
    result = call_cli(
        "--csv",
        str(people_csv),
        "--target",
        "label",
        "--model",
        "random_forest",
        "--param",
        "n_estimators=10",
        "--models-dir",
        str(models_dir),
    )
    assert result.code == 0, result.stderr
    manifest = read_manifest(models_dir / "people" / "1")
    assert manifest.name == "people"
    assert manifest.training.source == f"csv:{people_csv}"
    assert manifest.training.rows == 24
    assert manifest.training.train_rows == 19
    assert manifest.training.test_rows == 5
    assert manifest.feature_names == ["age", "city", "income"]
    assert [f.type for f in manifest.features] == ["number", "category", "number"]

    age, city, income = (f.stats for f in manifest.features)
    present_ages = np.asarray([a for a in AGES if a is not None], dtype=np.float64)
    assert isinstance(age, NumericStats)
    assert age.count == 21
    assert age.missing == 3
    assert age.min == 22.0
    assert age.max == 51.0
    assert age.mean == float(present_ages.mean())
    assert age.std == float(present_ages.std())
    assert sum(age.histogram.counts) == 21
    assert city == CategoryStats(
        count=22, missing=2, categories=["berlin", "paris", "rome"], frequencies=[7, 8, 7]
    )
    assert isinstance(income, NumericStats)
    assert (income.count, income.missing) == (24, 0)
    assert (income.min, income.max) == (900.25, 2500.0)
    assert income.mean == float(np.mean(INCOMES))

    assert manifest.target.name == "label"
    assert manifest.target.classes == ["no", "yes"]
    assert manifest.target.distribution == [12, 12]
    assert manifest.estimator.supports_missing is True
    assert manifest.estimator.pipeline == ["prepare", "model"]


RAW_ROWS: list[list[Any]] = [
    [31.0, "paris", 1200.5],
    [None, "rome", 1500.0],  # a missing number as None
    [math.nan, "berlin", 1800.0],  # a missing number as NaN
    [40.0, None, 1700.0],  # a missing category as None
    [40.0, math.nan, 1700.0],  # a missing category as NaN
    [40.0, "madrid", 1700.0],  # a category never seen in training
    [None, None, math.nan],
    [math.nan, math.nan, None],
]


@pytest.mark.parametrize("model", sorted(SMALL))
def test_loaded_pipeline_predicts_raw_rows(model: str, people_csv: Path, models_dir: Path) -> None:
    data = load_csv(people_csv, "label")
    result = train(TrainRequest(data, model, models_dir, "people", params=SMALL[model]))
    assert result.manifest.estimator.supports_missing is True
    loaded = load_artifact(models_dir / "people" / "1")
    rows = np.array(RAW_ROWS, dtype=object)
    predicted = loaded.estimator.predict(rows)
    assert predicted.shape == (len(RAW_ROWS),)
    assert set(predicted.tolist()) <= {"no", "yes"}
    np.testing.assert_array_equal(predicted, result.pipeline.predict(rows))
    proba = loaded.estimator.predict_proba(rows)
    np.testing.assert_array_equal(proba, result.pipeline.predict_proba(rows))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # a missing number means the same whether it arrives as None or NaN
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(np.array([[None, "rome", 1500.0]], dtype=object)),
        loaded.estimator.predict_proba(np.array([[math.nan, "rome", 1500.0]], dtype=object)),
    )
    # so does a missing category
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(np.array([[40.0, None, 1700.0]], dtype=object)),
        loaded.estimator.predict_proba(np.array([[40.0, math.nan, 1700.0]], dtype=object)),
    )
    # and the training rows themselves predict as in memory
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(data.features), result.pipeline.predict_proba(data.features)
    )


@pytest.mark.parametrize(
    ("model", "supports_missing"),
    [("random_forest", False), ("logistic_regression", False), ("hist_gradient_boosting", True)],
)
def test_supports_missing_without_gaps_depends_on_the_estimator(
    model: str, supports_missing: bool, write_csv: WriteCsv, models_dir: Path
) -> None:
    rows = "".join(f"{i},{'ab'[i % 2]},{i % 2}\n" for i in range(12))
    path = write_csv("full.csv", "x,c,y\n" + rows)
    data = load_csv(path, "y")
    assert not data.has_missing()
    manifest = train(TrainRequest(data, model, models_dir, "full", params=SMALL[model])).manifest
    assert manifest.estimator.supports_missing is supports_missing


def test_categorical_override_turns_numbers_into_sorted_string_categories(
    write_csv: WriteCsv, models_dir: Path
) -> None:
    rows = ["zip,size,y", "75001,1,a", "10115,2,b", "00184,XL,a", "75001,2,b", "10115,1,a"]
    rows += ["75001,XL,b"]
    path = write_csv("shop.csv", "\n".join(rows) + "\n")
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y")
    assert str(info.value) == (
        f"{path}: column 'size' is 66% numbers but line 4 has non-numeric value 'XL'; "
        "fix the value, or pass --categorical size to treat the column as categories"
    )
    data = load_csv(path, "y", categorical=frozenset({"zip", "size"}))
    assert data.columns == [Column("zip", "category"), Column("size", "category")]
    assert data.features[:, 0].tolist() == ["75001", "10115", "00184", "75001", "10115", "75001"]
    manifest = train(
        TrainRequest(data, "random_forest", models_dir, "shop", params={"n_estimators": 5})
    ).manifest
    zip_stats, size_stats = (f.stats for f in manifest.features)
    assert zip_stats == CategoryStats(
        count=6, missing=0, categories=["00184", "10115", "75001"], frequencies=[1, 2, 3]
    )
    assert size_stats == CategoryStats(
        count=6, missing=0, categories=["1", "2", "XL"], frequencies=[2, 2, 2]
    )


def test_numeric_override_keeps_numbers_and_refuses_a_bad_value(write_csv: WriteCsv) -> None:
    path = write_csv("n.csv", "a,b,y\n1,x,0\n2,y,1\n3,z,0\n4,w,1\n")
    data = load_csv(path, "y", numeric=frozenset({"a"}))
    assert data.columns == [Column("a", "number"), Column("b", "category")]
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y", numeric=frozenset({"b"}))
    assert str(info.value) == f"{path}: numeric column 'b' has non-numeric value 'x' on line 2"


def test_override_naming_an_unknown_column_is_refused(people_csv: Path) -> None:
    with pytest.raises(TrainingError) as info:
        load_csv(people_csv, "label", categorical=frozenset({"town"}))
    assert str(info.value) == f"{people_csv}: column 'town' given on the command line not found"


def test_float_target_is_regression(write_csv: WriteCsv, models_dir: Path) -> None:
    rows = "".join(f"{i},{'ab'[i % 3 % 2]},{i * 1.5 + 0.25}\n" for i in range(10))
    path = write_csv("prices.csv", "x,c,price\n" + rows)
    data = load_csv(path, "price")
    assert data.task == "regression"
    assert data.target.dtype == np.float64
    assert data.target.tolist() == [i * 1.5 + 0.25 for i in range(10)]
    manifest = train(
        TrainRequest(data, "ridge", models_dir, "prices", params={"alpha": 1.0})
    ).manifest
    assert manifest.task == "regression"
    assert manifest.target.classes is None
    assert manifest.target.histogram is not None
    assert sum(manifest.target.histogram.counts) == 10
    assert list(manifest.metrics) == ["r2", "mae", "rmse"]


def test_integer_target_inference_and_task_override(write_csv: WriteCsv, models_dir: Path) -> None:
    few = write_csv("few.csv", "x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    many = write_csv("many.csv", "x,y\n" + "".join(f"{i},{i}\n" for i in range(30)))
    assert load_csv(few, "y").task == "classification"
    assert load_csv(few, "y").target.dtype == np.int64
    assert load_csv(many, "y").task == "regression"

    regression = load_csv(few, "y", task="regression")
    assert regression.task == "regression"
    assert regression.target.dtype == np.float64
    manifest = train(
        TrainRequest(regression, "random_forest", models_dir, "few", params={"n_estimators": 5})
    ).manifest
    assert manifest.task == "regression"
    assert manifest.estimator.class_name == "RandomForestRegressor"

    classification = load_csv(few, "y", task="classification")
    manifest = train(
        TrainRequest(classification, "random_forest", models_dir, "c", params={"n_estimators": 5})
    ).manifest
    assert manifest.task == "classification"
    assert manifest.target.classes == [0, 1, 2]
    assert manifest.target.distribution == [10, 10, 10]
    assert read_manifest(models_dir / "c" / "1").target.classes == [0, 1, 2]  # ints stay ints


def test_regression_override_on_a_text_target_is_refused(people_csv: Path) -> None:
    with pytest.raises(TrainingError) as info:
        load_csv(people_csv, "label", task="regression")
    assert str(info.value) == f"{people_csv}: regression target 'label' has non-numeric value 'yes'"


def test_task_override_through_the_cli(
    write_csv: WriteCsv, models_dir: Path, call_cli: Any
) -> None:
    path = write_csv("few.csv", "x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    args = ["--csv", str(path), "--target", "y", "--models-dir", str(models_dir)]
    result = call_cli(*args, "--model", "ridge", "--task", "regression")
    assert result.code == 0, result.stderr
    assert read_manifest(models_dir / "few" / "1").task == "regression"
    result = call_cli(*args, "--model", "ridge")
    assert result.code == 2
    assert "model 'ridge' does not do classification" in result.stderr


def test_header_and_cells_are_trimmed_and_bom_is_skipped(write_csv: WriteCsv) -> None:
    path = write_csv("bom.csv", "\ufeff a , label \r\n1,x\r\n2,y\r\n3,x\r\n4,y\r\n")
    data = load_csv(path, "label")
    assert data.columns == [Column("a", "number")]
    assert data.target.tolist() == ["x", "y", "x", "y"]


def test_blank_lines_before_the_header_are_skipped(write_csv: WriteCsv) -> None:
    path = write_csv("late.csv", "\n \n\r\na,label\n1,x\n\n2,y\n3,x\n4,y\n")
    data = load_csv(path, "label")
    assert data.columns == [Column("a", "number")]
    assert data.features[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert data.target.tolist() == ["x", "y", "x", "y"]
    mixed = write_csv("mixed.csv", "\n \n\r\na,label\n1,x\n\n2,y\n3,x\nabc,y\n")
    with pytest.raises(TrainingError) as info:
        load_csv(mixed, "label")
    # lines are counted in the file, the blank ones before the header included
    assert "line 9 has non-numeric value 'abc'" in str(info.value)


def test_labels_that_are_one_number_stay_distinct_classes(
    write_csv: WriteCsv, models_dir: Path
) -> None:
    rows = "".join(f"{i},{['01', '1', '001'][i % 3]}\n" for i in range(30))
    path = write_csv("codes.csv", "x,code\n" + rows)
    data = load_csv(path, "code")
    assert data.task == "classification"
    assert sorted(set(data.target.tolist())) == ["001", "01", "1"]
    manifest = train(
        TrainRequest(data, "random_forest", models_dir, "codes", params={"n_estimators": 5})
    ).manifest
    assert manifest.target.classes == ["001", "01", "1"]
    assert manifest.target.distribution == [10, 10, 10]
    assert read_manifest(models_dir / "codes" / "1").target.classes == ["001", "01", "1"]
    spelled = write_csv("floats.csv", "x,y\n" + "".join(f"{i},{i % 2}.0\n" for i in range(8)))
    assert load_csv(spelled, "y").target.tolist() == [0, 1] * 4  # one spelling each: numbers


def test_target_with_an_empty_cell_is_refused(write_csv: WriteCsv) -> None:
    path = write_csv("t.csv", "a,y\n1,x\n2,\n3,y\n4,NA\n")
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y")
    assert str(info.value) == (
        f"{path}: target column 'y' is empty on line 3 (2 rows in all); "
        "drop those rows or fill them in"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,a,y\n1,2,3\n", "duplicate column names: a"),
        ("a,b,y\n,1,0\nNA,2,1\n", "column 'a' has no values"),
        ("y\n1\n2\n", "no feature columns besides the target 'y'"),
        ("a,y\n1,2\n3,4,5\n", "line 3 has 3 fields, the header has 2"),
        ("a,y\n1,2\n3\n", "line 3 has 1 fields, the header has 2"),
        ("", "empty file; expected a header row and data rows"),
        ("\n\n", "empty file; expected a header row and data rows"),
        ("a,y\n", "no data rows after the header"),
        ("a,y\n\n , \n", "no data rows after the header"),
    ],
)
def test_unusable_csv_is_refused_with_the_file_named(
    text: str, message: str, write_csv: WriteCsv
) -> None:
    path = write_csv("bad.csv", text)
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y")
    assert str(info.value) == f"{path}: {message}"


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,y\n1,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y")
    assert str(info.value) == f"{path}: not UTF-8 text (invalid continuation byte at byte 9)"


# Line 1 header; line 3 blank; lines 5-6 hold one quoted cell spanning two lines;
# line 8 blank; so data row 6 ("abc") sits on line 10 of the file.
SPREAD_CSV = 'a,note,y\n1,x,0\n\n2,y,1\n3,"two\nlines",0\n4,w,1\n\n5,z,0\nabc,q,1\n6,r,\n'


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {},
            "column 'a' is 85% numbers but line 10 has non-numeric value 'abc'; "
            "fix the value, or pass --categorical a to treat the column as categories",
        ),
        (
            {"numeric": frozenset({"a"})},
            "numeric column 'a' has non-numeric value 'abc' on line 10",
        ),
        (
            {"categorical": frozenset({"a"})},
            "target column 'y' is empty on line 11 (1 rows in all); "
            "drop those rows or fill them in",
        ),
    ],
)
def test_messages_name_the_file_line_past_blank_lines_and_multiline_cells(
    override: dict[str, frozenset[str]], message: str, write_csv: WriteCsv
) -> None:
    path = write_csv("spread.csv", SPREAD_CSV)
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y", **override)  # type: ignore[arg-type]
    assert str(info.value) == f"{path}: {message}"


def test_ragged_row_is_named_by_its_file_line(write_csv: WriteCsv) -> None:
    path = write_csv("ragged.csv", 'a,b,y\n\n1,"x\ny",0\n\n2,3\n')
    with pytest.raises(TrainingError) as info:
        load_csv(path, "y")
    assert str(info.value) == f"{path}: line 6 has 2 fields, the header has 3"


def test_multiline_header_and_cells_keep_their_values(write_csv: WriteCsv) -> None:
    path = write_csv("spread.csv", SPREAD_CSV.replace("6,r,\n", "6,r,1\n"))
    data = load_csv(path, "y", categorical=frozenset({"a"}))
    assert data.features[:, 1].tolist() == ["x", "y", "two\nlines", "w", "z", "q", "r"]
