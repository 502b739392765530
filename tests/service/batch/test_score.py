"""`tabserve score` in-process: the served model's answers, its checks, its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tabserve.service.batch.columns import MISSING_MARKERS
from tabserve.training.csv_table import MISSING_MARKERS as TRAINING_MISSING
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train
from tests.service.batch.conftest import (
    Score,
    churn_rows,
    diabetes_rows,
    iris_rows,
    online_answers,
    read_scored,
    scored_line,
)

CASES = {
    "iris-forest": ("iris", 1, iris_rows),
    "iris-logistic": ("iris", 2, iris_rows),
    "diabetes-ridge": ("diabetes", 1, diabetes_rows),
    "churn-mixed": ("churn", 1, churn_rows),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_scored_file_equals_the_record_api(
    case: str, suffix: str, models_dir: Path, tmp_path: Path, score: Score
) -> None:
    name, version, rows_of = CASES[case]
    rows = rows_of(models_dir)
    source = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        rows.to_csv(source, index=False)
    else:
        rows.to_parquet(source, index=False)
    out = tmp_path / f"scored{suffix}"
    status, err = score(
        source, out, "--models-dir", models_dir, "--model", name, "--version", version,
        "--id-column", "id", "--chunk-rows", 64,
    )  # fmt: skip
    assert (status, scored_line(err)) == (0, f"{len(rows)} rows scored into {out}")
    scored = read_scored(out)
    online = online_answers(models_dir, name, version, rows)
    assert list(scored.columns) == ["id", *online.columns]
    assert scored["id"].tolist() == rows["id"].tolist()
    pd.testing.assert_frame_equal(scored.drop(columns="id"), online, check_exact=True)


def test_the_default_version_is_the_highest(models_dir: Path, tmp_path: Path, score: Score) -> None:
    rows = iris_rows(models_dir)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    status, err = score(
        tmp_path / "rows.parquet", tmp_path / "out.parquet", "--models-dir", models_dir,
        "--model", "iris",
    )  # fmt: skip
    assert status == 0
    assert any(line.startswith("model iris version 2 (") for line in err.splitlines())
    online = online_answers(models_dir, "iris", 2, rows)
    pd.testing.assert_frame_equal(read_scored(tmp_path / "out.parquet"), online, check_exact=True)


def test_a_folder_of_parts_scores_like_one_file(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    rows = iris_rows(models_dir)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, start in enumerate(range(0, len(rows), 40)):
        rows.iloc[start : start + 40].to_parquet(parts / f"part-{k}.parquet", index=False)
    (parts / "_SUCCESS").write_text("")
    rows.to_parquet(tmp_path / "whole.parquet", index=False)
    common = ("--models-dir", models_dir, "--model", "iris", "--id-column", "id", "--keep")
    assert score(parts, tmp_path / "a.parquet", *common, "petal_width_cm")[0] == 0
    assert (
        score(tmp_path / "whole.parquet", tmp_path / "b.parquet", *common, "petal_width_cm")[0] == 0
    )
    from_parts, whole = read_scored(tmp_path / "a.parquet"), read_scored(tmp_path / "b.parquet")
    assert list(whole.columns)[:2] == ["id", "petal_width_cm"]
    pd.testing.assert_frame_equal(from_parts, whole, check_exact=True)


def _bad_iris(models_dir: Path, path: Path) -> pd.DataFrame:
    """Iris as CSV text with three refused cells (rows 5, 7 and 130 of the file)."""
    rows = iris_rows(models_dir).astype({"sepal_width_cm": object, "petal_length_cm": object})
    rows.loc[5, "sepal_width_cm"] = "abc"
    rows.loc[7, "petal_length_cm"] = "?"
    rows.loc[130, "sepal_width_cm"] = "1e400"
    rows.to_csv(path, index=False)
    return rows


def test_a_refused_row_fails_the_run_naming_file_row_feature_value(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    source = tmp_path / "bad.csv"
    _bad_iris(models_dir, source)
    out = tmp_path / "out.csv"
    status, err = score(source, out, "--models-dir", models_dir, "--model", "iris", "--version", 1)
    assert status == 1
    assert (
        f"error: refused: {source}, row 5: feature 'sepal_width_cm' (index 1): "
        "expected a number, got 'abc'"
    ) in err
    assert "--on-error skip" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # nothing half-written


def test_skip_scores_the_rest_and_writes_refused_rows_with_reasons(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    source = tmp_path / "bad.csv"
    rows = _bad_iris(models_dir, source)
    out = tmp_path / "out.csv"
    status, err = score(
        source, out, "--models-dir", models_dir, "--model", "iris", "--version", 1,
        "--id-column", "id", "--on-error", "skip", "--chunk-rows", 100,
    )  # fmt: skip
    assert status == 0
    side = tmp_path / "out.refused.csv"
    assert scored_line(err) == f"147 rows scored into {out}"
    assert err.splitlines()[-1] == f"3 rows refused, with reasons in {side}"
    refused = pd.read_csv(side, keep_default_na=False)
    assert refused[["source", "row", "id", "feature", "value"]].values.tolist() == [
        [str(source), 5, 1005, "sepal_width_cm", "'abc'"],
        [str(source), 7, 1007, "petal_length_cm", "None"],
        [str(source), 130, 1130, "sepal_width_cm", "'inf'"],
    ]
    assert refused["expected"].tolist() == [
        "a number",
        "a number (this model does not accept missing values)",
        "a finite number",
    ]
    scored = read_scored(out)
    good = rows.drop(index=[5, 7, 130]).astype(float).astype({"id": int})
    assert scored["id"].tolist() == good["id"].tolist()
    online = online_answers(models_dir, "iris", 1, good)
    pd.testing.assert_frame_equal(scored.drop(columns="id"), online, check_exact=True)


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        (
            "nope",
            None,
            "error: no model 'nope' under {models} (models there: churn, diabetes, iris)",
        ),
        ("iris", 7, "error: model 'iris' has no version 7 (versions: 1, 2)"),
    ],
)
def test_an_unknown_model_or_version_is_refused(
    models_dir: Path, tmp_path: Path, score: Score, model: str, version: int | None, message: str
) -> None:
    iris_rows(models_dir).to_csv(tmp_path / "rows.csv", index=False)
    pinned = ["--version", version] if version is not None else []
    status, err = score(
        tmp_path / "rows.csv", tmp_path / "out.csv", "--models-dir", models_dir,
        "--model", model, *pinned,
    )  # fmt: skip
    assert (status, err.splitlines()[-1]) == (1, message.format(models=models_dir))


def test_a_missing_feature_column_names_the_file_and_the_column(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    iris_rows(models_dir).drop(columns="petal_width_cm").to_csv(tmp_path / "rows.csv", index=False)
    status, err = score(
        tmp_path / "rows.csv", tmp_path / "out.csv", "--models-dir", models_dir, "--model", "iris"
    )
    assert status == 1
    assert f"error: {tmp_path / 'rows.csv'}: no column 'petal_width_cm'" in err


def test_an_edited_sealed_artifact_is_refused(tmp_path: Path, score: Score) -> None:
    models = tmp_path / "models"
    iris = load_bundled("iris")
    train(
        TrainRequest(
            iris, "logistic_regression", models, "iris", signing_key=Ed25519PrivateKey.generate()
        )
    )
    iris_rows(models).to_csv(tmp_path / "rows.csv", index=False)
    path = models / "iris" / "1" / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    first, second = manifest["features"][:2]
    first["name"], second["name"] = second["name"], first["name"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    status, err = score(
        tmp_path / "rows.csv", tmp_path / "out.csv", "--models-dir", models, "--model", "iris"
    )
    assert status == 1
    assert "error: model 'iris' version 1 cannot be loaded: " in err
    assert "the manifest was modified after export" in err
    assert not (tmp_path / "out.csv").exists()


def test_csv_missing_cells_are_trainings() -> None:
    assert MISSING_MARKERS == TRAINING_MISSING


def test_parquet_keeps_its_types_so_a_number_stored_as_text_is_refused(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    rows = iris_rows(models_dir)
    rows["petal_width_cm"] = rows["petal_width_cm"].astype(str)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    status, err = score(
        tmp_path / "rows.parquet", tmp_path / "out.parquet", "--models-dir", models_dir,
        "--model", "iris",
    )  # fmt: skip
    assert status == 1
    assert (
        f"error: refused: {tmp_path / 'rows.parquet'}, row 0: feature 'petal_width_cm' "
        "(index 3): expected a number, got '0.2'"
    ) in err


def test_a_kept_column_may_not_hide_an_answer(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    iris_rows(models_dir).assign(prediction=1).to_csv(tmp_path / "rows.csv", index=False)
    status, err = score(
        tmp_path / "rows.csv", tmp_path / "out.csv", "--models-dir", models_dir,
        "--model", "iris", "--keep", "prediction",
    )  # fmt: skip
    assert (status, err.strip()) == (
        1,
        "error: column 'prediction' cannot be kept: the answers use that name",
    )


def test_a_kept_column_whose_type_changes_between_chunks_is_refused_by_name(
    models_dir: Path, tmp_path: Path, score: Score
) -> None:
    rows = iris_rows(models_dir)
    rows["note"] = [None] * 64 + ["checked"] * (len(rows) - 64)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    status, err = score(
        tmp_path / "rows.parquet", tmp_path / "out.parquet", "--models-dir", models_dir,
        "--model", "iris", "--keep", "note", "--chunk-rows", 64,
    )  # fmt: skip
    assert status == 1
    assert f"error: {tmp_path / 'out.parquet'}: a chunk's column types differ from the first" in err
    assert not (tmp_path / "out.parquet").exists()
