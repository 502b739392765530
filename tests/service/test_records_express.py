"""The records express route answers like the FastAPI record route, and leaves it the rest.

Each body goes to an app with the fast path on (the express route in front of the
record routes) and to one with it off; status and JSON must agree. Both get the
same X-Request-ID, since the answer echoes it. Answers are compared as JSON values
(orjson writes 1e-05 as 0.00001), errors byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient

from tabserve.service.api.records_express import RecordsExpress
from tabserve.service.app import create_app
from tabserve.service.core.served import ServedModel
from tabserve.service.settings import Settings

IRIS_NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
SETOSA = dict(zip(IRIS_NAMES, [5.1, 3.5, 1.4, 0.2], strict=True))
VIRGINICA = dict(zip(IRIS_NAMES, [6.7, 3.0, 5.2, 2.3], strict=True))


def diabetes_record(settings: Settings) -> dict[str, float]:
    with TestClient(create_app(settings)) as client:
        served = client.get("/models/diabetes").json()["versions"][0]["features"]
    return {f["name"]: (f["min"] + f["max"]) / 2 for f in served}


def taken(settings: Settings) -> list[tuple[str, Any]]:
    """(path, body) pairs the express route answers itself."""
    diabetes = diabetes_record(settings)
    return [
        ("/models/iris/predict", SETOSA),
        ("/models/iris/predict", [SETOSA, VIRGINICA]),
        ("/models/iris/predict", {**SETOSA, "sepal_width_cm": 3}),
        ("/models/iris/versions/1/predict", [VIRGINICA]),
        ("/models/diabetes/predict", diabetes),
        ("/models/diabetes/predict", [diabetes, diabetes]),
    ]


LEFT: list[tuple[str, Any]] = [
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": 50.0}),  # out of range
    ("/models/iris/predict", {**SETOSA, "extra": 1.0}),
    ("/models/iris/predict", {k: v for k, v in SETOSA.items() if k != "petal_width_cm"}),
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": "5.1"}),
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": True}),
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": None}),
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": [5.1]}),
    ("/models/iris/predict", []),
    ("/models/iris/predict", [SETOSA, 7]),
    ("/models/iris/predict", [[SETOSA]]),
    ("/models/iris/predict", [SETOSA] * 101),  # over max_rows (100 in tests)
    ("/models/iris/predict", "setosa"),
    ("/models/iris/predict", {**SETOSA, "sepal_widht_cm": 3.0}),  # a typo: did you mean
    ("/models/iris/predict", [SETOSA, {**SETOSA, "sepal_length_cm": "x"}]),
    ("/models/iris/predict", {**SETOSA, "sepal_length_cm": 1e39}),
    ("/models/iris/versions/9/predict", SETOSA),
    ("/models/iris/versions/x/predict", SETOSA),
    ("/models/atlantis/predict", SETOSA),
    ("/models/churn/predict", {"age": 40, "city": "paris", "income": 50_000.0}),
]


def answer(client: TestClient, path: str, body: Any) -> tuple[int, Any, str]:
    """Status, JSON (its bytes for an error) and content type."""
    response = client.post(
        path,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", "x-request-id": "same-id"},
    )
    payload = response.json() if response.status_code == 200 else response.content
    return response.status_code, payload, response.headers["content-type"]


def test_express_and_general_routes_answer_alike(
    fast_and_general: tuple[TestClient, TestClient], settings: Settings
) -> None:
    fast, slow = fast_and_general
    for path, body in taken(settings) + LEFT:
        assert answer(fast, path, body) == answer(slow, path, body), (path, body)


def test_errors_have_v2_wording_on_both_routes(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    for client in fast_and_general:
        errors = [answer(client, path, body) for path, body in LEFT]
        errors = [e for e in errors if e[0] != 200]  # out of range and churn are served
        assert len(errors) == len(LEFT) - 2
        for status, payload, _ in errors:
            assert status in (400, 404, 413), payload
            assert b"should be" not in payload, payload
            assert b"not permitted" not in payload, payload
        typo = answer(client, "/models/iris/predict", {**SETOSA, "sepal_widht_cm": 3.0})
        assert b"(did you mean 'sepal_width_cm'?), got 'sepal_widht_cm'" in typo[1]
        unknown = answer(client, "/models/iris/versions/9/predict", SETOSA)
        assert unknown[:2] == (
            404,
            b'{"error":"model \'iris\' has no version 9; versions: 1, 2",'
            b'"code":"model_not_found","details":[]}',
        )


def lane(client: TestClient, name: str, version: int | None = None) -> RecordsExpress | None:
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    model: ServedModel = state.dataplane.model(name, version)
    return RecordsExpress.for_model(model, state.web.max_string_length)


def test_the_route_takes_the_common_bodies_and_leaves_the_rest(
    fast_and_general: tuple[TestClient, TestClient], settings: Settings
) -> None:
    fast, _ = fast_and_general
    for path, body in taken(settings):
        name = path.split("/")[2]
        version = int(path.split("/")[4]) if "/versions/" in path else None
        express = lane(fast, name, version)
        assert express is not None
        assert express.decode(orjson.dumps(body)) is not None, body
    iris = lane(fast, "iris")
    assert iris is not None
    for path, body in LEFT:
        if path == "/models/iris/predict":
            assert iris.decode(orjson.dumps(body)) is None, body
    assert lane(fast, "churn") is None  # categorical inputs: always the general route


def test_express_answers_are_counted_and_logged_under_the_route(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    fast, _ = fast_and_general
    for _ in range(3):
        assert answer(fast, "/models/iris/predict", [SETOSA, VIRGINICA])[0] == 200
    text = fast.get("/metrics").text
    assert 'tabserve_inference_rows_total{model="iris",version="2"} 6.0' in text
    assert (
        'tabserve_http_requests_total{method="POST",route="/models/iris/predict",status="200"} 3.0'
    ) in text


def test_the_docs_still_show_the_record_routes(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    fast, _ = fast_and_general
    paths = fast.get("/openapi.json").json()["paths"]
    assert "post" in paths["/models/iris/predict"]
    assert (
        "sepal_length_cm" in orjson.dumps(fast.get("/openapi.json").json()["components"]).decode()
    )


def test_a_body_left_to_fastapi_is_counted_once(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    """The fallback runs FastAPI's stack with its bookkeeping already done, not twice."""
    fast, _ = fast_and_general
    out_of_range = {**SETOSA, "sepal_length_cm": 50.0}
    for _ in range(2):
        response = fast.post("/models/iris/predict", json=out_of_range)
        assert response.status_code == 200
        assert response.headers.get_list("x-request-id") == [response.json()["request_id"]]
    response = fast.post("/models/iris/predict", json={"sepal_length_cm": "x"})
    assert response.status_code == 400
    text = fast.get("/metrics").text
    route = 'method="POST",route="/models/iris/predict"'
    assert f'tabserve_http_requests_total{{{route},status="200"}} 2.0' in text
    assert f'tabserve_http_requests_total{{{route},status="400"}} 1.0' in text
    assert 'tabserve_out_of_range_values_total{feature="sepal_length_cm",model="iris",' in text
