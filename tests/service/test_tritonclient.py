"""Conformance with the client the industry uses: `tritonclient.http`, unmodified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tabserve.artifact.store import load_artifact

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@pytest.fixture(scope="module")
def triton_client(server: Any) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


def test_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("iris")
    assert triton_client.is_model_ready("iris", "1")
    assert triton_client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton_client.get_model_metadata("iris", "1")
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_matches_the_model(
    triton_client: triton.InferenceServerClient, models_dir: Path, binary_in: bool, binary_out: bool
) -> None:
    features = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    features.set_data_from_numpy(ROWS, binary_data=binary_in)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary_out),
        triton.InferRequestedOutput("predict_proba", binary_data=binary_out),
    ]
    result = triton_client.infer(
        "iris", [features], model_version="1", outputs=outputs, request_id="t-7"
    )
    model = load_artifact(models_dir / "iris" / "1").estimator
    labels = result.as_numpy("predict")
    assert [v.decode() if isinstance(v, bytes) else v for v in labels.tolist()] == list(
        model.predict(ROWS)
    )
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), model.predict_proba(ROWS), rtol=0, atol=1e-5
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "iris",
        "1",
        "t-7",
    )


def test_default_infer_call_with_per_feature_tensors(
    triton_client: triton.InferenceServerClient,
) -> None:
    inputs = []
    for name, values in (
        ("age", np.array([30, 70], dtype=np.int64)),
        ("income", np.array([2500.0, 1800.0])),
    ):
        tensor = triton.InferInput(name, [2], "INT64" if values.dtype == np.int64 else "FP64")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    city = triton.InferInput("city", [2], "BYTES")
    city.set_data_from_numpy(np.array([b"paris", b"lisbon"], dtype=np.object_))
    inputs.append(city)
    result = triton_client.infer("churn", inputs)
    assert set(result.as_numpy("predict").tolist()) <= {b"yes", b"no"}
    assert result.as_numpy("predict_proba").shape == (2, 2)


def test_errors_surface_as_client_exceptions(triton_client: triton.InferenceServerClient) -> None:
    bad = triton.InferInput("input-0", [1, 3], "FP64")
    bad.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]]))
    with pytest.raises(InferenceServerException, match=r"\[rows, 4\]"):
        triton_client.infer("iris", [bad])
    with pytest.raises(InferenceServerException, match="not found"):
        triton_client.infer("nope", [bad])
