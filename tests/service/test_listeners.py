"""The data plane's listeners: every API reports each answered request under its request id."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient

from tabserve.service.core.dataplane import Served
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel

ROW = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


def listen(client: TestClient) -> tuple[list[Served], list[tuple[str, int, int]]]:
    dataplane = client.app.state.tabserve.dataplane  # type: ignore[attr-defined]
    served: list[Served] = []
    calls: list[tuple[str, int, int]] = []

    def on_call(model: ServedModel, features: npt.NDArray[Any], prediction: Prediction) -> None:
        calls.append((model.name, model.version, features.shape[0]))

    dataplane.request_listeners.append(served.append)
    dataplane.call_listeners.append(on_call)
    return served, calls


def test_every_api_reports_answers_under_the_request_id(client: TestClient) -> None:
    served, calls = listen(client)
    v2 = {
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]] * 2}
        ]
    }
    answers = [
        client.post("/models/iris/predict", json=ROW, headers={"x-request-id": "rec-1"}),
        client.post(
            "/v1/models/iris:predict",
            json={"instances": [list(ROW.values())]},
            headers={"x-request-id": "v1-1"},
        ),
        client.post("/v2/models/iris/infer", json=v2, headers={"x-request-id": "v2-1"}),
        client.post("/v2/models/iris/versions/1/infer", json=v2, headers={"x-request-id": "v2-2"}),
    ]
    assert [a.status_code for a in answers] == [200] * 4
    assert [s.request_id for s in served] == ["rec-1", "v1-1", "v2-1", "v2-2"]
    assert [s.features.shape[0] for s in served] == [1, 1, 2, 2]
    assert [s.model.version for s in served][-1] == 1
    np.testing.assert_allclose(served[0].features, [[5.1, 3.5, 1.4, 0.2]])
    assert served[0].prediction.predict.tolist() == [
        answers[0].json()["predictions"][0]["prediction"]
    ]
    assert all(s.seconds > 0 and s.received > 0 for s in served)
    # Sequential requests: one model call each, with that request's rows.
    assert [rows for _, _, rows in calls] == [1, 1, 2, 2]


def test_a_refused_request_reaches_no_listener(client: TestClient) -> None:
    served, calls = listen(client)
    bad = client.post("/models/iris/predict", json={**ROW, "petal_width_cm": "wide"})
    assert bad.status_code == 400
    assert served == []
    assert calls == []
