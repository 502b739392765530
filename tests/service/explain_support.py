"""What the explanation tests share: records from datasets, and the model's own outputs.

The expected outputs are computed here from the artifact with each library's own API
(`predict_proba`, `decision_function`, XGBoost's `output_margin`, LightGBM's
`raw_score`, CatBoost's `RawFormulaVal`), never with the service's code, so additivity
is checked against the model itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.pipeline import Pipeline

from tabserve.artifact.frames import FrameBuilder
from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.manifest import Manifest
from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import Dataset


def records_of(data: Dataset, rows: slice) -> list[dict[str, Any]]:
    """Dataset rows as JSON records: missing numbers and categories become null."""
    names = [c.name for c in data.columns]
    out = []
    for row in data.features[rows]:
        record = {}
        for name, column, value in zip(names, data.columns, row, strict=True):
            if column.type == "number":
                number = float(value)
                record[name] = None if math.isnan(number) else number
            else:
                record[name] = None if value is None or value != value else str(value)
        out.append(record)
    return out


def served_rows(manifest: Manifest, records: list[dict[str, Any]]) -> Any:
    """The records as the service hands them to the model (a DataFrame for frame models)."""
    numeric = all(f.type == "number" for f in manifest.features)
    rows = np.array(
        [
            [
                (math.nan if r[f.name] is None else float(r[f.name]))
                if f.type == "number"
                else r[f.name]
                for f in manifest.features
            ]
            for r in records
        ],
        dtype=np.float64 if numeric else object,
    )
    if manifest.estimator.input == "frame":
        return FrameBuilder(manifest.features)(rows)
    return rows


def model_outputs(folder: Path, records: list[dict[str, Any]], space: str) -> npt.NDArray[Any]:
    """[rows, outputs]: what the artifact's model itself outputs in `space`."""
    loaded = load_artifact(folder)
    model = loaded.estimator
    x = served_rows(loaded.manifest, records)
    if space == "probability":
        return np.asarray(model.predict_proba(x), dtype=np.float64)
    if space == "value" and not _is_booster(model):
        return np.asarray(model.predict(x), dtype=np.float64).reshape(len(records), -1)
    final = model[-1] if isinstance(model, Pipeline) else model
    prepared = isinstance(model, Pipeline) and len(model.steps) > 1
    columns = model[:-1].transform(x) if prepared else x
    if isinstance(final, LabelEncodedClassifier):
        final = final.estimator_
    library = type(final).__module__.split(".")[0]
    if library == "xgboost":
        raw = final.predict(columns, output_margin=True)
    elif library == "lightgbm":
        raw = final.predict(columns, raw_score=True)
    elif library == "catboost":
        raw = final.predict(columns, prediction_type="RawFormulaVal")
    else:
        raw = model.decision_function(x)
    return np.asarray(raw, dtype=np.float64).reshape(len(records), -1)


def _is_booster(model: Any) -> bool:
    final = model[-1] if isinstance(model, Pipeline) else model
    if isinstance(final, LabelEncodedClassifier):
        final = final.estimator_
    return type(final).__module__.split(".")[0] in {"xgboost", "lightgbm", "catboost"}


def assert_additive(answer: dict[str, Any], expected: npt.NDArray[Any], tolerance: float) -> None:
    """Per row and output: base + attributions = the model's own output, within `tolerance`
    relative to max(1, |output|); the answer's `value` is that output too."""
    features = answer["features"]
    for r, row in enumerate(answer["explanations"]):
        assert len(row["outputs"]) == expected.shape[1]
        for k, output in enumerate(row["outputs"]):
            assert list(output["attributions"]) == features
            total = output["base_value"] + math.fsum(output["attributions"].values())
            scale = max(1.0, abs(expected[r, k]))
            assert abs(total - expected[r, k]) <= tolerance * scale, (r, k, total, expected[r, k])
            assert abs(output["value"] - expected[r, k]) <= tolerance * scale
