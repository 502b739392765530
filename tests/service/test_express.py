"""The express lanes: they answer the common bodies and hand the rest to the documented routes.

A body a lane takes never reaches the documented route; any other body reaches it
once, with the body replayed, and is answered there. Requests the documented routes
would not take (other methods, unknown record versions) are never claimed.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tabserve.service.api import records, v2
from tabserve.service.api.v2_express import ExpressV2
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]
IRIS_NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
RECORD = dict(zip(IRIS_NAMES, SETOSA, strict=True))


@pytest.fixture
def documented(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the documented handlers that ran, in order."""
    ran: list[str] = []

    def counting(name: str, inner: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            ran.append(name)
            return await inner(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(v2, "run_inference", counting("v2", v2.run_inference))
    monkeypatch.setattr(records, "_predict", counting("records", records._predict))
    return ran


def infer_body(data: list[Any], **extra: Any) -> bytes:
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def test_common_bodies_never_reach_the_documented_routes(
    client: TestClient, documented: list[str]
) -> None:
    assert client.post("/v2/models/iris/infer", content=infer_body(SETOSA)).status_code == 200
    assert client.post("/v2/models/iris/versions/1/infer", content=infer_body(SETOSA)).is_success
    assert client.post("/models/iris/predict", json=RECORD).status_code == 200
    assert client.post("/models/iris/versions/1/predict", json=[RECORD]).status_code == 200
    assert documented == []


def test_other_bodies_reach_the_documented_route_once_with_their_body(
    client: TestClient, documented: list[str]
) -> None:
    chosen = infer_body(SETOSA, outputs=[{"name": "predict"}])
    answer = client.post("/v2/models/iris/infer", content=chosen)
    assert answer.status_code == 200
    assert [o["name"] for o in answer.json()["outputs"]] == ["predict"]
    far = {**RECORD, "sepal_length_cm": 50.0}
    assert client.post("/models/iris/predict", json=far).json()["predictions"]
    assert documented == ["v2", "records"]


def test_requests_no_documented_route_takes_are_not_claimed(client: TestClient) -> None:
    assert client.post("/models/iris/versions/9/predict", json=RECORD).status_code == 404
    assert client.get("/v2/models/iris/infer").status_code == 405
    unknown = client.post("/v2/models/atlantis/infer", content=infer_body(SETOSA))
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "model_not_found"


def test_without_the_fast_path_everything_takes_the_documented_routes(
    settings: Settings, documented: list[str]
) -> None:
    general = settings.model_copy(update={"fast_path": False})
    with TestClient(create_app(general)) as client:
        assert client.post("/v2/models/iris/infer", content=infer_body(SETOSA)).is_success
        assert client.post("/models/iris/predict", json=RECORD).is_success
    assert documented == ["v2", "records"]


def test_a_failure_inside_the_lanes_is_the_json_500_with_the_request_context(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lanes and the request context run outside FastAPI's error middleware: what
    # escapes them still gets the error shape, a request id and the security headers.
    def broken(self: ExpressV2, body: bytes) -> None:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(ExpressV2, "decode", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/v2/models/iris/infer", content=infer_body(SETOSA))
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["code"] == "internal"
        assert "a bug" not in answer.text
        assert answer.headers["x-request-id"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        metrics = client.get("/metrics").text
    assert (
        'tabserve_http_requests_total{method="POST",route="/v2/models/{model}/infer",'
        'status="500"} 1.0' in metrics
    )
