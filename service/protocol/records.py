"""The records answer: what `POST /models/{m}/predict` and the streams reply with.

`{"model", "version", "request_id", "predictions": [{"prediction", "probabilities"}]}`,
one prediction per record in the order sent; `probabilities` maps each class label to
its probability (null for regressors).
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import orjson

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probabilities."


def records_document(
    model: str,
    version: int,
    request_id: str,
    labels: npt.NDArray[Any],
    proba: npt.NDArray[Any] | None,
    classes: list[str],
) -> dict[str, Any]:
    """The records answer as plain Python values (labels as numpy gives them by `tolist`)."""
    if proba is None:
        answers = [{"prediction": label, "probabilities": None} for label in labels.tolist()]
    else:
        answers = [
            {"prediction": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels.tolist(), proba.tolist(), strict=True)
        ]
    return {"model": model, "version": version, "request_id": request_id, "predictions": answers}


def records_answer(
    model: str,
    version: int,
    request_id: str,
    labels: npt.NDArray[Any],
    proba: npt.NDArray[Any] | None,
    classes: list[str],
) -> bytes:
    """`records_document`, encoded."""
    return orjson.dumps(records_document(model, version, request_id, labels, proba, classes))


def record_columns(
    labels: npt.NDArray[Any], proba: npt.NDArray[Any] | None, classes: list[str]
) -> dict[str, npt.NDArray[Any]]:
    """The records answer's predictions as columns, for files scored in batch.

    Named as `pandas.json_normalize` flattens the answer's `predictions`:
    `prediction`, then `probabilities.<label>` per class for classifiers, so a
    scored file and the online answer line up column for column.
    """
    columns = {PREDICTION: labels}
    if proba is not None:
        for k, label in enumerate(classes):
            columns[PROBABILITY_PREFIX + label] = proba[:, k]
    return columns
