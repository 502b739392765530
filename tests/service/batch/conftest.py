"""Batch scoring fixtures: the session's trained models, rows of them, the CLI and the service."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_diabetes, load_iris

from tabserve.service.app import create_app
from tabserve.service.cli import main
from tabserve.service.settings import Settings

Score = Callable[..., tuple[int, str]]


def feature_names(models_dir: Path, name: str, version: int) -> list[str]:
    """The manifest's features, in order."""
    manifest = json.loads((models_dir / name / str(version) / "model.json").read_text())
    return [f["name"] for f in manifest["features"]]


def iris_rows(models_dir: Path) -> pd.DataFrame:
    """Every iris row with an `id` column first, named as the iris models' features."""
    data = load_iris().data
    frame = pd.DataFrame(data, columns=feature_names(models_dir, "iris", 1))
    frame.insert(0, "id", np.arange(len(frame)) + 1000)
    return frame


def diabetes_rows(models_dir: Path) -> pd.DataFrame:
    """Every diabetes row with an `id` column first."""
    frame = pd.DataFrame(load_diabetes().data, columns=feature_names(models_dir, "diabetes", 1))
    frame.insert(0, "id", np.arange(len(frame)))
    return frame


def churn_rows(models_dir: Path) -> pd.DataFrame:
    """The churn training file's rows, typed (missing city None, missing income NaN)."""
    text = pd.read_csv(models_dir.parent / "churn.csv", dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "id": np.arange(len(text)),
            "age": text["age"].astype(float),
            "city": [None if c == "" else c for c in text["city"]],
            "income": [np.nan if v == "NA" else float(v) for v in text["income"]],
        }
    )


def online_answers(models_dir: Path, name: str, version: int, rows: pd.DataFrame) -> pd.DataFrame:
    """The records API's answers for `rows` (through the real lifespan), flattened."""
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in rows.drop(columns="id").to_dict(orient="records")
    ]
    settings = Settings(models_dir=models_dir, inference_threads=1, max_rows=len(records))
    with TestClient(create_app(settings)) as client:
        answer = client.post(f"/models/{name}/versions/{version}/predict", json=records)
    assert answer.status_code == 200, answer.text
    flat = pd.json_normalize(answer.json()["predictions"])
    return flat.drop(columns=[c for c in flat.columns if flat[c].isna().all()])


def read_scored(path: Path) -> pd.DataFrame:
    """A scored file (or folder of parts), floats read back exactly."""
    if path.suffix == ".csv":
        return pd.read_csv(path, float_precision="round_trip")
    return pd.read_parquet(path)


@pytest.fixture
def score(capsys: pytest.CaptureFixture[str]) -> Score:
    """Run `tabserve score ARGS...`; returns the exit status and what it wrote to stderr."""

    def run(*args: Any) -> tuple[int, str]:
        status = main(["score", *map(str, args)])
        return status, capsys.readouterr().err

    return run


def scored_line(err: str) -> str:
    """`N rows scored into OUTPUT` from the command's report, without its timing."""
    line = next(line for line in err.splitlines() if " rows scored into " in line)
    return re.sub(r" \([0-9.]+ s, [0-9-]+( rows/s)?\)$", "", line)
