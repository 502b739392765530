"""`tabserve predict FILE`: files are read by training's rules, against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tabserve.service.cli import main
from tests.conftest import write_mixed_csv
from tests.service.conftest import ServerProcess


def _predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    status = main(["predict", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_the_training_csv_predicts_as_is(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training = write_mixed_csv(tmp_path / "churn.csv")  # what churn was trained on
    assert ",NA," in training.read_text()
    status, rows, err = _predict(capsys, str(training), "--model", "churn", "--url", server.url)
    assert status == 0, err
    assert len(rows) == 240
    assert "note: column 'churned' left out: it is what churn predicts" in err


def test_missing_markers_are_missing_values(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("age,city,income\n31,?,52000\n45,paris,NA\n\n60,n/a,\n")
    status, answers, err = _predict(capsys, str(rows), "--model", "churn", "--url", server.url)
    assert status == 0, err
    assert len(answers) == 3
    assert {json.loads(a)["prediction"] for a in answers} <= {"yes", "no"}


def test_extra_columns_are_refused_once_unless_ignored(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("customer_id,age,city,income,churned\n7,31,paris,52000,no\n")
    args = (str(rows), "--model", "churn", "--url", server.url)
    status, answers, err = _predict(capsys, *args)
    assert (status, answers) == (1, [])
    assert err.splitlines() == [
        "error: columns 'customer_id' are not features of churn version 1 (features: age, "
        "city, income); remove them or add --ignore-extra-columns",
    ]
    status, answers, err = _predict(capsys, *args, "--ignore-extra-columns")
    assert (status, len(answers)) == (0, 1)
    assert "note: columns 'customer_id' left out: not features of churn" in err


def test_json_lines_without_stream_hint_at_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"age": 31}\n{"age": 45}\n')
    status, _, err = _predict(capsys, str(lines), "--model", "churn")
    assert status == 1
    assert err.strip() == (
        f"error: {lines}: not valid JSON: Extra data at line 2; for JSON Lines "
        "(one record per line) add --stream"
    )
