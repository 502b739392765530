"""The records answer: what `POST /models/{m}/predict` and the streams reply with.

`{"model", "version", "request_id", "predictions": [{"prediction", "probabilities"}]}`,
one prediction per record in the order sent; `probabilities` maps each class label to
its probability (null for regressors).
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import orjson


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
