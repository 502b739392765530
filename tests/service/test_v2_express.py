"""The V2 express lane: it takes the common request and answers exactly as the general path.

Every body is sent to two apps on the same models: one with the fast path (where the
express lane lives), one whose V2 requests go through FastAPI's routes and the
general codec. Status and body must be identical, byte for byte; and the lane must
really have taken the common bodies (else identical answers would prove nothing).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tabserve.service.api.v2_express import ExpressV2
from tabserve.service.core.served import ServedModel

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
DIABETES = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.003, 0.02, -0.02]


def tensor(data: Any, shape: list[Any], datatype: str = "FP64", name: str = "x") -> Any:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def body(*inputs: Any, **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


# (model, body) pairs the express lane takes.
TAKEN: list[tuple[str, bytes]] = [
    ("iris", body(tensor(SETOSA, [1, 4]))),
    ("iris", body(tensor(SETOSA + VIRGINICA, [2, 4]))),
    ("iris", body(tensor([SETOSA, VIRGINICA], [2, 4]))),
    ("iris", body(tensor(SETOSA, [1, 4]), id="req-7")),
    ("iris", body(tensor(SETOSA, [1, 4], "FP32"))),
    ("iris", body(tensor([5, 3, 1.4, 0.2], [1, 4]))),
    ("iris/versions/1", body(tensor(VIRGINICA, [1, 4]))),
    ("diabetes", body(tensor(DIABETES, [1, 10]))),
    ("diabetes", body(tensor([DIABETES, DIABETES], [2, 10]), id="")),
]

# Bodies it leaves to the general path: other shapes, options, and every kind of error.
LEFT: list[tuple[str, bytes]] = [
    ("iris", body(tensor([50.0, 3.5, 1.4, 0.2], [1, 4]))),  # out of range: counted
    ("iris", body(tensor([None, 3.5, 1.4, 0.2], [1, 4]))),  # missing
    ("iris", body(tensor(SETOSA, [1, 4], "INT64"))),
    ("iris", body(tensor(["5.1", 3.5, 1.4, 0.2], [1, 4]))),
    ("iris", body(tensor([True, 3.5, 1.4, 0.2], [1, 4]))),
    ("iris", body(tensor(SETOSA, [4, 1]))),
    ("iris", body(tensor(SETOSA, [1, 3]))),
    ("iris", body(tensor(SETOSA[:3], [1, 4]))),
    ("iris", body(tensor([SETOSA, VIRGINICA[:3]], [2, 4]))),
    ("iris", body(tensor([[SETOSA]], [1, 4]))),
    ("iris", body(tensor(SETOSA, [0, 4]))),
    ("iris", body(tensor(SETOSA * 101, [101, 4]))),  # over max_rows (100 in tests)
    ("iris", body(tensor([1e39, 3.5, 1.4, 0.2], [1, 4], "FP32"))),
    (
        "iris",
        b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP64","data":[1%s,3,1,0]}]}'
        % (b"0" * 400),
    ),
    ("iris", body(tensor([5.1], [1], name="sepal_length_cm"))),
    ("iris", body(tensor(SETOSA, [1, 4]), tensor(SETOSA, [1, 4], name="y"))),
    ("iris", body(tensor(SETOSA, [1, 4]), outputs=[{"name": "predict"}])),
    ("iris", body(tensor(SETOSA, [1, 4]), parameters={"binary_data_output": True})),
    ("iris", body(tensor(SETOSA, [1, 4]), id=7)),
    ("iris", body({**tensor(SETOSA, [1, 4]), "parameters": {}})),
    ("iris", body(tensor(SETOSA, [1, True]))),
    ("iris", body(tensor(SETOSA, "1,4"))),
    ("iris", body(tensor(SETOSA, [1, 4], ["FP64"]))),
    ("iris", b'{"inputs": [}'),
    ("iris", b"[1, 2]"),
    ("iris", body()),
    ("churn", body(tensor([40, "paris", 50_000.0], [1, 3], "BYTES"))),
]


def answers(client: TestClient, target: str, payload: bytes) -> tuple[int, bytes, str]:
    response = client.post(
        f"/v2/models/{target}/infer",
        content=payload,
        headers={"content-type": "application/json"},
    )
    return response.status_code, response.content, response.headers["content-type"]


@pytest.mark.parametrize(("target", "payload"), TAKEN + LEFT)
def test_express_and_general_paths_answer_alike(
    fast_and_general: tuple[TestClient, TestClient], target: str, payload: bytes
) -> None:
    fast, slow = fast_and_general
    assert answers(fast, target, payload) == answers(slow, target, payload)


def lane(client: TestClient, target: str) -> ExpressV2 | None:
    name, _, version = target.partition("/versions/")
    model: ServedModel = client.app.state.tabserve.dataplane.model(  # type: ignore[attr-defined]
        name, int(version) if version else None
    )
    return ExpressV2.for_model(model)


def test_the_lane_takes_the_common_bodies_and_leaves_the_rest(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    fast, _ = fast_and_general
    for target, payload in TAKEN:
        express = lane(fast, target)
        assert express is not None
        assert express.decode(payload) is not None, payload
    for target, payload in LEFT:
        express = lane(fast, target)
        assert express is None or express.decode(payload) is None, payload


def test_a_model_with_categories_has_no_lane(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    assert lane(fast_and_general[0], "churn") is None


def test_express_answers_count_in_metrics_like_any_other(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    fast, _ = fast_and_general
    for _ in range(3):
        assert answers(fast, "iris", TAKEN[1][1])[0] == 200
    text = fast.get("/metrics").text
    assert 'tabserve_inference_rows_total{model="iris",version="2"} 6.0' in text
    assert (
        'tabserve_http_requests_total{method="POST",route="/v2/models/{model}/infer",'
        'status="200"} 3.0'
    ) in text
