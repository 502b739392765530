"""The protocol package: every wire format, knowing no web framework."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tabserve.service.core.runtime import Prediction
from tabserve.service.protocol import default_answer, encode_response, prediction_outputs

PROBA = np.array([[0.25, 0.75], [1e-05, 0.99999]])
LABELS: list[npt.NDArray[Any]] = [
    np.array([1, 0]),
    np.array(["yes", "no"]),
    np.array([b"yes", b"no"], dtype=object),
    np.array([0.5, 1.5]),
    np.array([0.5, 1.5], dtype=">f8"),
    np.array([True, False]),
    np.array([3, 4], dtype=np.uint8),
]


@pytest.mark.parametrize("labels", LABELS, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("with_proba", [True, False])
@pytest.mark.parametrize("request_id", ["r-1", None])
def test_the_default_answer_is_the_general_encoders_bytes(
    labels: npt.NDArray[Any], with_proba: bool, request_id: str | None
) -> None:
    prediction = Prediction(labels, PROBA if with_proba else None)
    names = ["predict", "predict_proba"] if with_proba else ["predict"]
    general, header_length = encode_response(
        model_name="m",
        model_version="2",
        request_id=request_id,
        outputs=prediction_outputs(prediction, names),
        binary=[False] * len(names),
    )
    assert header_length is None
    assert default_answer("m", "2", request_id, prediction) == general


def test_the_protocol_imports_no_web_framework() -> None:
    probe = (
        "import sys, tabserve.service.protocol.error_body, tabserve.service.protocol.records, "
        "tabserve.service.protocol; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
