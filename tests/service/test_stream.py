"""`WS /models/{m}/stream` through the real lifespan (TestClient's WebSocket session)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tabserve.service.core.dataplane import Served
from tabserve.service.core.registry import ModelVersion
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import FeatureSchema
from tabserve.service.settings import Settings

WINDOW = 4
MAX_MESSAGE_BYTES = 16384
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROW = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


@pytest.fixture
def settings(models_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """A small window and message limit, so tests can fill them (plus any `indirect` overrides)."""
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "data_dir": tmp_path / "data",
        "inference_threads": 2,
        "max_rows": 100,
        "stream_window": WINDOW,
        "stream_max_message_bytes": MAX_MESSAGE_BYTES,
    }
    return Settings(**{**values, **getattr(request, "param", {})})


def iris_records(count: int, seed: int) -> list[dict[str, float]]:
    """Records spread over the iris feature ranges."""
    rng = np.random.default_rng(seed)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    rows = rng.uniform(low, high, size=(count, 4)).round(2)
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]


def same_predictions(streamed: list[dict[str, Any]], direct: list[dict[str, Any]]) -> None:
    """Labels equal; probabilities equal up to float rounding (batches sum in another order)."""
    assert [p["prediction"] for p in streamed] == [p["prediction"] for p in direct]
    for got, want in zip(streamed, direct, strict=True):
        assert got["probabilities"].keys() == want["probabilities"].keys()
        assert list(got["probabilities"].values()) == pytest.approx(
            list(want["probabilities"].values()), rel=1e-9, abs=1e-12
        )


def listen(client: TestClient) -> tuple[list[Served], list[int]]:
    """Every answered request and the rows of every model call, as the data plane reports them."""
    dataplane = client.app.state.tabserve.dataplane  # type: ignore[attr-defined]
    served: list[Served] = []
    calls: list[int] = []

    def on_call(model: ServedModel, features: npt.NDArray[Any], prediction: Prediction) -> None:
        calls.append(features.shape[0])

    dataplane.request_listeners.append(served.append)
    dataplane.call_listeners.append(on_call)
    return served, calls


def settle(client: TestClient, until: Callable[[], bool]) -> None:
    """Let the app's event loop run (health probes go through it) until `until()` holds."""
    for _ in range(2000):
        if until():
            return
        client.get("/v2/health/live")
    raise AssertionError("the app never reached the expected state")


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_pipelined_messages_share_model_calls_and_answer_in_order(
    client: TestClient, hold: Any
) -> None:
    served, calls = listen(client)
    records = iris_records(9, seed=1)
    messages = [
        {"request_id": "m0", "records": records[0]},
        {"request_id": "m1", "records": records[1:3]},
        {"request_id": "m2", "records": records[3:6]},
        {"request_id": "m3", "records": records[6:9]},
    ]
    held = hold("iris")
    with client.websocket_connect("/models/iris/stream") as ws:
        for message in messages:
            ws.send_json(message)
        assert held.entered.wait(timeout=30)  # m0 is in the model; the others wait behind it
        batcher = client.app.state.tabserve.registry.ready("iris").batcher  # type: ignore[attr-defined]
        settle(client, lambda: batcher.queued_rows == 8)
        held.release.set()
        answers = [ws.receive_json() for _ in messages]
    assert [a["request_id"] for a in answers] == ["m0", "m1", "m2", "m3"]
    assert calls == [1, 8]  # the three queued messages went into one model call
    assert [s.request_id for s in served] == ["m0", "m1", "m2", "m3"]
    for message, answer in zip(messages, answers, strict=True):
        direct = client.post("/models/iris/predict", json=message["records"]).json()
        assert answer.keys() == direct.keys()
        assert (answer["model"], answer["version"]) == ("iris", 2)
        same_predictions(answer["predictions"], direct["predictions"])


def test_many_messages_come_back_in_order_with_generated_ids(client: TestClient) -> None:
    records = iris_records(60, seed=2)
    with client.websocket_connect("/models/iris/stream", headers={"x-request-id": "conn-7"}) as ws:
        assert dict(ws.extra_headers or [])[b"x-request-id"] == b"conn-7"
        for index, record in enumerate(records):
            ws.send_json(record if index % 2 else [record])  # a record, or a list of one
        answers = [ws.receive_json() for _ in records]
    assert [a["request_id"] for a in answers] == [f"conn-7-{i}" for i in range(1, 61)]
    direct = client.post("/models/iris/predict", json=records).json()["predictions"]
    same_predictions([a["predictions"][0] for a in answers], direct)


def test_regression_answers_have_no_probabilities(client: TestClient) -> None:
    record = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.01)
    with client.websocket_connect("/models/diabetes/stream") as ws:
        ws.send_json({"request_id": "d", "records": [record, record]})
        answer = ws.receive_json()
    direct = client.post("/models/diabetes/predict", json=[record, record]).json()
    assert answer["predictions"] == direct["predictions"]
    assert answer["predictions"][0]["probabilities"] is None


DEEP = "[" * 40 + "1" + "]" * 40
# (message, code, request id or None for the generated one, first detail's expected items)
BAD_MESSAGES: list[tuple[str, str, str | None, dict[str, Any]]] = [
    ("{not json", "malformed_json", None, {"field": "message", "expected": "a JSON document"}),
    ("42", "invalid_request", None, {"field": "message", "value": 42}),
    (
        json.dumps({"request_id": "b1", "records": [{**ROW, "petal_width_cm": "wide"}]}),
        "invalid_input",
        "b1",
        {"field": "petal_width_cm", "index": 3, "row": 0, "value": "wide", "expected": "a number"},
    ),
    (
        json.dumps({"request_id": "b2", "records": {**ROW, "colour": "red"}}),
        "invalid_input",
        "b2",
        {"field": "feature name", "row": 0, "value": "colour"},
    ),
    (
        json.dumps({"request_id": "b3", "records": [ROW] * 101}),
        "too_large",
        "b3",
        {"field": "records", "value": "101 rows"},
    ),
    (json.dumps({"request_id": "b4", "records": []}), "invalid_input", "b4", {"field": "rows"}),
    (json.dumps({**ROW, "petal_length_cm": 1e39}), "invalid_input", None, {"index": 2, "row": 0}),
    (
        json.dumps({"request_id": "not an id", "records": ROW}),
        "invalid_request",
        None,
        {"field": "request_id", "value": "not an id"},
    ),
    (
        json.dumps({"request_id": "b5", "rows": [ROW]}),
        "invalid_request",
        "b5",
        {"field": "envelope", "value": "rows"},
    ),
    # Refused before the envelope is read, so under the generated id:
    (
        json.dumps({"request_id": "b6", "records": "x" * MAX_MESSAGE_BYTES}),
        "too_large",
        None,
        {"field": "message", "expected": f"at most {MAX_MESSAGE_BYTES} bytes"},
    ),
    ('{"request_id": "b7", "records": ' + DEEP + "}", "too_large", None, {}),
]


def test_a_bad_message_gets_an_error_and_the_stream_goes_on(client: TestClient) -> None:
    good = json.dumps({"request_id": "good", "records": ROW})
    with client.websocket_connect("/models/iris/stream", headers={"x-request-id": "c"}) as ws:
        for index, (text, _, _, _) in enumerate(BAD_MESSAGES):
            ws.send_text(good if index % 2 == 0 else json.dumps(ROW))
            ws.send_text(text)
        ws.send_bytes(good.encode())
        replies = [ws.receive_json() for _ in range(2 * len(BAD_MESSAGES) + 1)]
    answers, errors = replies[0::2], replies[1::2]
    assert all("predictions" in a for a in answers)
    assert answers[-1]["request_id"] == "good"
    for index, ((_, code, request_id, detail), error) in enumerate(
        zip(BAD_MESSAGES, errors, strict=True)
    ):
        assert set(error) == {"request_id", "error", "code", "details"}, error
        assert error["code"] == code, error
        assert error["error"], error
        assert error["request_id"] == (request_id or f"c-{2 * index + 2}"), error
        if detail:
            assert detail.items() <= error["details"][0].items(), error
    assert metric(client, 'tabserve_stream_messages_total{code="ok",model="iris"}') == 12
    assert metric(client, 'tabserve_stream_messages_total{code="too_large",model="iris"}') == 3
    assert metric(client, 'tabserve_validation_errors_total{model="iris",reason="malformed"}') == 1


@pytest.mark.parametrize(
    "bad",
    [
        [ROW, {**ROW, "sepal_width_cm": "x"}],
        {("sepal_widht_cm" if k == "sepal_width_cm" else k): v for k, v in ROW.items()},
        [ROW, 7],
    ],
    ids=["wrong-type", "typo", "not-a-record"],
)
def test_errors_are_worded_as_the_http_api_words_them(client: TestClient, bad: Any) -> None:
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json(bad)
        error = ws.receive_json()
    http = client.post("/models/iris/predict", json=bad).json()
    assert error["code"] == http["code"] == "invalid_input"
    assert error["error"] == http["error"]
    assert error["details"] == http["details"]
    assert "should be" not in error["error"]


def test_back_pressure_stops_reading_when_the_window_is_full(client: TestClient, hold: Any) -> None:
    dataplane = client.app.state.tabserve.dataplane  # type: ignore[attr-defined]
    predict = dataplane.predict
    in_flight = [0]
    most = [0]

    async def counted(*args: Any, **kwargs: Any) -> Prediction:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            return await predict(*args, **kwargs)
        finally:
            in_flight[0] -= 1

    dataplane.predict = counted
    _, calls = listen(client)
    held = hold("iris")
    records = iris_records(3 * WINDOW, seed=3)
    with client.websocket_connect("/models/iris/stream") as ws:
        for index, record in enumerate(records):
            ws.send_json({"request_id": f"r{index}", "records": record})
        assert held.entered.wait(timeout=30)
        batcher = client.app.state.tabserve.registry.ready("iris").batcher  # type: ignore[attr-defined]
        settle(client, lambda: batcher.queued_rows == WINDOW - 1)
        for _ in range(50):  # the loop keeps running; the unread messages stay unread
            client.get("/v2/health/live")
        assert in_flight[0] == WINDOW
        assert batcher.queued_rows == WINDOW - 1
        unread = ws._receive_tx.statistics().current_buffer_used  # type: ignore[attr-defined]
        assert unread == len(records) - WINDOW
        held.release.set()
        answers = [ws.receive_json() for _ in records]
    assert [a["request_id"] for a in answers] == [f"r{i}" for i in range(len(records))]
    assert most[0] == WINDOW
    assert max(calls) <= WINDOW
    assert sum(calls) == len(records)


def test_messages_still_queued_when_the_stream_closes_are_not_computed(
    client: TestClient, hold: Any
) -> None:
    _, calls = listen(client)
    held = hold("iris")
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json({"request_id": "running", "records": ROW})
        assert held.entered.wait(timeout=30)
        ws.send_json({"request_id": "queued", "records": [ROW, ROW]})
        batcher = client.app.state.tabserve.registry.ready("iris").batcher  # type: ignore[attr-defined]
        settle(client, lambda: batcher.queued_rows == 2)
    streams = client.app.state.streams  # type: ignore[attr-defined]
    settle(client, lambda: streams.open_streams == 0)  # well within the 0.25 s watch delay:
    # closing cancels the stream's pending replies, and with them its queued request
    held.release.set()
    settle(client, lambda: batcher.queued_rows == 0 and calls == [1])
    for _ in range(20):
        client.get("/v2/health/live")
    assert calls == [1]


def test_a_passed_deadline_is_an_error_for_that_message_only(client: TestClient, hold: Any) -> None:
    held = hold("iris")
    rejected = 'tabserve_requests_rejected_total{model="iris",reason="deadline",version="2"}'
    with client.websocket_connect(
        "/models/iris/stream", headers={"X-Request-Timeout-Ms": "50"}
    ) as ws:
        ws.send_json({"request_id": "first", "records": ROW})
        assert held.entered.wait(timeout=30)
        ws.send_json({"request_id": "late", "records": ROW})
        settle(client, lambda: metric(client, rejected) == 1)
        held.release.set()
        first, late = ws.receive_json(), ws.receive_json()
        ws.send_json({"request_id": "after", "records": ROW})
        after = ws.receive_json()
    assert first["request_id"] == "first"
    assert "predictions" in first
    assert (late["request_id"], late["code"]) == ("late", "deadline_exceeded")
    assert after["request_id"] == "after"
    assert "predictions" in after


@pytest.mark.parametrize("settings", [{"queue_max_rows": 2, "batch_max_rows": 1}], indirect=True)
def test_a_full_model_queue_is_an_overloaded_error(client: TestClient, hold: Any) -> None:
    held = hold("iris")
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json({"request_id": "a", "records": ROW})
        assert held.entered.wait(timeout=30)
        for name in ("b", "c", "d"):
            ws.send_json({"request_id": name, "records": [ROW, ROW]})
        rejected = 'tabserve_requests_rejected_total{model="iris",reason="overloaded",version="2"}'
        settle(client, lambda: metric(client, rejected) == 2)
        held.release.set()
        replies = [ws.receive_json() for _ in range(4)]
    assert [r["request_id"] for r in replies] == ["a", "b", "c", "d"]
    assert "predictions" in replies[0]
    assert "predictions" in replies[1]
    assert [r["code"] for r in replies[2:]] == ["overloaded", "overloaded"]
    assert metric(client, 'tabserve_stream_messages_total{code="overloaded",model="iris"}') == 2


def closed_at_once(client: TestClient, path: str, **headers: str) -> WebSocketDisconnect:
    """The close that follows the handshake (no reply comes before it)."""
    with (
        client.websocket_connect(path, headers=headers) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    return closed.value


def test_unknown_model_or_version_closes_with_4404(client: TestClient) -> None:
    for path, reason in [
        ("/models/nope/stream", "model 'nope' not found; models served: churn, diabetes, iris"),
        ("/models/iris/versions/9/stream", "model 'iris' has no version 9; versions: 1, 2"),
        ("/models/iris/versions/x/stream", "model 'iris' has no version 'x'"),
    ]:
        closed = closed_at_once(client, path)
        assert closed.code == 4404
        assert closed.reason.startswith(reason)


def test_a_long_reason_is_cut_to_what_a_close_frame_holds(client: TestClient) -> None:
    closed = closed_at_once(client, "/models/" + "é" * 100 + "/stream")
    assert closed.code == 4404
    assert len(closed.reason.encode()) <= 123
    assert closed.reason.startswith("model 'éé")


def test_a_model_that_is_not_ready_closes_with_4503(client: TestClient) -> None:
    registry = client.app.state.tabserve.registry  # type: ignore[attr-defined]
    registry.add(ModelVersion.failed("iris", 1, Path("iris/1"), "sklearn", "lost its disk"))
    closed = closed_at_once(client, "/models/iris/versions/1/stream")
    assert closed.code == 4503
    assert closed.reason.startswith("model 'iris' version 1 is failed")


def test_a_malformed_timeout_header_closes_with_1008(client: TestClient) -> None:
    closed = closed_at_once(client, "/models/iris/stream", **{"X-Request-Timeout-Ms": "soon"})
    assert closed.code == 1008
    assert closed.reason.startswith("X-Request-Timeout-Ms: expected a positive whole number")


def test_the_version_route_streams_that_version(client: TestClient) -> None:
    records = iris_records(5, seed=4)
    with client.websocket_connect("/models/iris/versions/1/stream") as ws:
        ws.send_json(records)
        answer = ws.receive_json()
    direct = client.post("/models/iris/versions/1/predict", json=records).json()
    assert (answer["model"], answer["version"]) == ("iris", 1)
    same_predictions(answer["predictions"], direct["predictions"])


def test_open_streams_are_counted_and_logged(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    gauge = "tabserve_stream_connections"
    with client.websocket_connect("/models/iris/stream", headers={"x-request-id": "w1"}) as ws:
        ws.send_json([ROW, ROW])
        ws.receive_json()
        assert metric(client, gauge) == 1
    settle(client, lambda: metric(client, gauge) == 0)
    assert metric(client, 'tabserve_stream_rows_total{model="iris",version="2"}') == 2
    logged = ""

    def seen() -> bool:
        nonlocal logged
        logged += capsys.readouterr().err
        return "id=w1" in logged

    settle(client, seen)  # the access log is written in batches
    assert "WS /models/iris/stream /models/{model}/stream 101" in logged


def test_draining_answers_what_was_read_then_closes_with_1012(
    client: TestClient, hold: Any
) -> None:
    hub = client.app.state.streams  # type: ignore[attr-defined]
    held = hold("iris")
    drained = threading.Event()
    with client.websocket_connect("/models/iris/stream") as ws:
        for index in range(3):
            ws.send_json({"request_id": f"d{index}", "records": ROW})
        assert held.entered.wait(timeout=30)
        batcher = client.app.state.tabserve.registry.ready("iris").batcher  # type: ignore[attr-defined]
        settle(client, lambda: batcher.queued_rows == 2)
        hub.drain_then(drained.set)  # what SIGTERM does, before the server's own handler
        assert not drained.is_set()  # answers are still owed
        held.release.set()
        answers = [ws.receive_json() for _ in range(3)]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert [a["request_id"] for a in answers] == ["d0", "d1", "d2"]
    assert closed.value.code == 1012
    assert closed.value.reason == "server is shutting down; reconnect"
    assert drained.wait(timeout=30)
    with (
        client.websocket_connect("/models/iris/stream") as ws,
        pytest.raises(WebSocketDisconnect) as refused,
    ):
        ws.receive_json()
    assert refused.value.code == 1012


def test_browser_pages_of_other_origins_are_refused(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(
            "/models/iris/stream", headers={"origin": "https://elsewhere.example"}
        ),
    ):
        pass
    assert refused.value.code == 1008
    with client.websocket_connect(
        "/models/iris/stream", headers={"origin": "http://testserver"}
    ) as ws:
        ws.send_json(ROW)
        assert "predictions" in ws.receive_json()


@pytest.mark.parametrize("settings", [{"cors_origins": ["https://app.example"]}], indirect=True)
def test_origins_allowed_for_cors_may_open_streams(client: TestClient) -> None:
    with client.websocket_connect(
        "/models/iris/stream", headers={"origin": "https://app.example"}
    ) as ws:
        ws.send_json(ROW)
        assert "predictions" in ws.receive_json()


def test_a_default_stream_follows_a_new_default_version(client: TestClient) -> None:
    registry = client.app.state.tabserve.registry  # type: ignore[attr-defined]
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json(ROW)
        before = ws.receive_json()
        registry.set_default("iris", 1)
        ws.send_json(ROW)
        after = ws.receive_json()
    assert (before["version"], after["version"]) == (2, 1)


def test_a_second_sigterm_stops_waiting_for_streams(client: TestClient, hold: Any) -> None:
    hub = client.app.state.streams  # type: ignore[attr-defined]
    held = hold("iris")
    calls: list[str] = []
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json(ROW)
        assert held.entered.wait(timeout=30)
        hub.drain_then(lambda: calls.append("first"))
        assert calls == []  # waiting for the answer the stream owes
        hub.drain_then(lambda: calls.append("second"))
        assert calls == ["first"]  # the server's handler runs now, once
        held.release.set()
        assert "predictions" in ws.receive_json()
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    settle(client, lambda: hub.open_streams == 0)
    assert calls == ["first"]


@pytest.mark.parametrize(
    "settings", [{"predlog_mode": "all", "predlog_flush_seconds": 0.05}], indirect=True
)
def test_the_prediction_log_keeps_stream_answers_under_their_request_ids(
    client: TestClient,
) -> None:
    records = iris_records(3, seed=11)
    with client.websocket_connect("/models/iris/stream") as ws:
        ws.send_json({"request_id": "logged-1", "records": records[:2]})
        ws.send_json({"request_id": "logged-2", "records": records[2]})
        answers = [ws.receive_json(), ws.receive_json()]
    page: list[dict[str, Any]] = []

    def logged() -> bool:
        page[:] = client.get("/models/iris/predictions").json()["items"]
        return len(page) == 3

    settle(client, logged)
    rows = sorted((item["request_id"], item["row"]) for item in page)
    assert rows == [("logged-1", 0), ("logged-1", 1), ("logged-2", 0)]
    assert [a["request_id"] for a in answers] == ["logged-1", "logged-2"]


# Messages the records express lane takes, and messages it leaves to the general checks.
EXPRESS_TAKES: list[Any] = [
    ROW,
    [ROW, {**ROW, "sepal_width_cm": 3}],
    {"request_id": "e1", "records": [ROW]},
    {"records": ROW},
]
EXPRESS_LEAVES: list[Any] = [
    {**ROW, "sepal_length_cm": 50.0},  # out of range: served, and counted
    {**ROW, "extra": 1.0},
    {k: v for k, v in ROW.items() if k != "petal_width_cm"},
    {**ROW, "sepal_length_cm": "5.1"},
    {**ROW, "sepal_length_cm": True},
    {**ROW, "sepal_length_cm": None},
    [],
    [ROW, 7],
    [ROW] * 101,  # over max_rows
    "setosa",
    {"request_id": "e2", "records": []},
]


def stream_replies(client: TestClient, messages: list[Any]) -> list[Any]:
    """Each message's reply, sent one at a time (so each is its own model call)."""
    with client.websocket_connect("/models/iris/stream", headers={"x-request-id": "conn"}) as ws:
        replies = []
        for message in messages:
            ws.send_json(message)
            replies.append(ws.receive_json())
    return replies


def test_express_and_general_checks_answer_stream_messages_alike(
    fast_and_general: tuple[TestClient, TestClient],
) -> None:
    fast, general = fast_and_general
    messages = [*EXPRESS_TAKES, *EXPRESS_LEAVES]
    replies = stream_replies(fast, messages)
    assert replies == stream_replies(general, messages)
    assert [("error" in reply) for reply in replies] == [False] * 5 + [True] * 10
    assert replies[4]["predictions"][0]["prediction"] is not None


def test_common_stream_messages_skip_the_general_checks(
    fast_and_general: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, general = fast_and_general
    checked: list[int] = []
    general_check = FeatureSchema.from_records

    def counting(self: FeatureSchema, records: Any) -> Any:
        checked.append(len(records))
        return general_check(self, records)

    monkeypatch.setattr(FeatureSchema, "from_records", counting)
    stream_replies(fast, EXPRESS_TAKES)
    assert checked == []
    stream_replies(general, EXPRESS_TAKES)
    assert checked == [1, 2, 1, 1]
