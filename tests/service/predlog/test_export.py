"""`tabserve log export`: CSV and Parquet files read back, with and without feedback."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.cli import main
from tabserve.service.settings import Settings

IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
OTHER = {
    "sepal_length_cm": 6.7,
    "sepal_width_cm": 3.0,
    "petal_length_cm": 5.2,
    "petal_width_cm": 2.3,
}


@pytest.fixture
def logged(log_settings: Callable[..., Settings]) -> Settings:
    """A log with request a (2 rows, the second with truth) and b (1 row), petal width redacted."""
    settings = log_settings(log_redact=["petal_width_cm"])
    with TestClient(create_app(settings)) as client:
        for request_id, rows in (("a", [IRIS, OTHER]), ("b", [IRIS])):
            answer = client.post(
                "/models/iris/predict", json=rows, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200
        answer = client.post(
            "/models/iris/feedback", json={"request_id": "a", "row": 1, "truth": "virginica"}
        )
        assert answer.json()["accepted"] == 1
    return settings


def test_csv_export_has_one_line_per_row_oldest_first(logged: Settings, tmp_path: Path) -> None:
    out = tmp_path / "iris.csv"
    assert (
        main(["log", "export", "iris", "--out", str(out), "--url", logged.predlog_database_url])
        == 0
    )
    with out.open() as handle:
        lines = list(csv.DictReader(handle))
    assert [(r["request_id"], r["row"]) for r in lines] == [("a", "0"), ("a", "1"), ("b", "0")]
    second = lines[1]
    assert list(second)[:7] == [
        "log_id", "request_id", "row", "model", "version", "time", "latency_seconds"
    ]  # fmt: skip
    assert float(second["sepal_length_cm"]) == 6.7
    assert second["petal_width_cm"] == ""  # redacted
    assert second["prediction"] == "virginica"
    assert second["truth"] == "virginica"
    assert second["feedback_time"].endswith("+00:00")
    assert second["time"].endswith("+00:00")
    probabilities = [float(second[f"proba_{c}"]) for c in ("setosa", "versicolor", "virginica")]
    assert sum(probabilities) == pytest.approx(1)
    assert lines[0]["truth"] == ""


def test_parquet_export_with_feedback_only(logged: Settings, tmp_path: Path) -> None:
    out = tmp_path / "iris.parquet"
    args = ["log", "export", "iris", "--out", str(out), "--format", "parquet", "--with-feedback"]
    assert main([*args, "--url", logged.predlog_database_url]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert (row["request_id"], row["row"], row["truth"]) == ("a", 1, "virginica")
    assert row["sepal_length_cm"] == 6.7
    assert row["petal_width_cm"] is None
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert table.schema.field("sepal_length_cm").type == "double"


def test_console_script_exports_from_the_settings_data_dir(
    logged: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "from-env.csv"
    done = subprocess.run(
        [sys.executable, "-m", "tabserve.service", "log", "export", "iris", "--out", str(out)],
        env={"TABSERVE_DATA_DIR": str(logged.predlog.data_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(f"3 rows of iris written to {out}")
    assert len(out.read_text().splitlines()) == 4


def test_exporting_a_missing_log_fails_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "predictions.db"
    status = main(
        ["log", "export", "iris", "--out", str(tmp_path / "x.csv"), "--url", f"sqlite:///{missing}"]
    )
    assert status == 1
    assert not missing.parent.exists()


def test_an_unknown_model_fails_naming_it(
    logged: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    url = logged.predlog_database_url
    assert main(["log", "export", "nosuch", "--out", str(out), "--url", url]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no predictions of model 'nosuch' in the log at ")
    assert not out.exists()


def test_an_unreachable_postgresql_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql+psycopg://tabserve:secret@127.0.0.1:{port}/log"
    export = ["log", "export", "iris", "--out", str(tmp_path / "x.csv"), "--url", url]
    done = subprocess.run(
        [sys.executable, "-m", "tabserve.service", *export],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot read the prediction log at postgresql+psycopg://")
    assert "secret" not in line
    assert "refused" in line
