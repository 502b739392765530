"""The CloudEvents payload sink, against a real HTTP receiver, through the real lifespan."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.service.sinks.budget import CpuBudget
from tests.service.conftest import ServerProcess, free_port

IRIS_ROWS = [
    {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2},
    {"sepal_length_cm": 6.7, "sepal_width_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3},
]
IRIS_FEATURES = list(IRIS_ROWS[0])
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


@dataclass
class Received:
    """One POST the receiver answered."""

    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class Receiver:
    """An HTTP/1.1 server in a thread that records every POST.

    Each POST waits for `gate` (set: no wait), then `delay` seconds, then is recorded
    and answered with `status` and a body framed as `answer` says: by content-length
    ("length"), chunked ("chunked"), by closing the connection ("close"), or by
    content-length on a connection closed right after without saying so ("stale").
    """

    def __init__(self) -> None:
        self.events: list[Received] = []
        self.connections = 0
        self.status = 202
        self.answer = "length"
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver.arrived:
                    receiver.connections += 1

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                receiver.gate.wait(30)
                time.sleep(receiver.delay)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.arrived:
                    receiver.events.append(Received(self.path, headers, raw))
                    receiver.arrived.notify_all()
                self.send_response(receiver.status)
                if receiver.answer == "chunked":
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"2\r\nok\r\n0\r\n\r\n")
                elif receiver.answer == "close":  # the body ends with the connection
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(b"accepted")
                    self.close_connection = True
                else:
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    # "stale": keep-alive as far as the client knows, yet closed
                    self.close_connection = receiver.answer == "stale"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The events once `count` have arrived (fails the test if they never do)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, timeout), (
                f"{len(self.events)} of {count} events arrived"
            )
            return list(self.events)

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def sink_app(models_dir: Path, receiver: Receiver) -> Callable[..., FastAPI]:
    """`sink_app(**settings)`: an app whose sink sends to the receiver."""

    def build(**overrides: Any) -> FastAPI:
        values: dict[str, Any] = {
            "models_dir": models_dir,
            "inference_threads": 2,
            "max_rows": 100,
            "sink_url": receiver.url,
            "sink_namespace": "ml",
            "sink_source": "http://tabserve.ml.svc/",
        }
        return create_app(Settings(**{**values, **overrides}))

    return build


def count(app: FastAPI, metric: str, **labels: str) -> float:
    """A sink counter's value (0 when the series was never touched)."""
    registry = app.state.tabserve.metrics.registry
    value = registry.get_sample_value(f"tabserve_sink_events_{metric}_total", labels)
    return float(value or 0.0)


def by_type(events: list[Received], request_id: str) -> dict[str, Received]:
    return {e.headers["ce-type"]: e for e in events if e.headers["ce-id"] == request_id}


def test_request_and_response_events_in_kserve_format(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    app = sink_app()
    with TestClient(app) as client:
        records = client.post(
            "/models/iris/predict", json=IRIS_ROWS, headers={"x-request-id": "r-1"}
        )
        v2_request = {
            "id": "v-1",
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [2, 4],
                    "data": [list(row.values()) for row in IRIS_ROWS],
                }
            ],
        }
        v2 = client.post("/v2/models/iris/infer", json=v2_request, headers={"x-request-id": "v-1"})
        assert (records.status_code, v2.status_code) == (200, 200)
    events = receiver.wait_for(4)
    assert len(events) == 4
    assert all(e.path == "/events" for e in events)

    pair = by_type(events, "r-1")
    request, response = pair[REQUEST], pair[RESPONSE]
    for event, kind in ((request, REQUEST), (response, RESPONSE)):
        headers = {k: v for k, v in event.headers.items() if k.startswith("ce-")}
        times = {k: headers.pop(k) for k in ("ce-time", "ce-recordedtime")}
        assert headers == {
            "ce-specversion": "1.0",
            "ce-id": "r-1",
            "ce-type": kind,
            "ce-source": "http://tabserve.ml.svc/",
            "ce-inferenceservicename": "iris",
            "ce-namespace": "ml",
            "ce-component": "predictor",
            "ce-endpoint": "",
            "ce-metadata": "{}",
        }
        assert event.headers["content-type"] == "application/json"
        for stamp in times.values():
            assert stamp.endswith("Z")
            datetime.fromisoformat(stamp)
    # The request happened when it arrived, the response when it was answered;
    # both were recorded (sent) later.
    request_time = datetime.fromisoformat(request.headers["ce-time"])
    response_time = datetime.fromisoformat(response.headers["ce-time"])
    assert request_time < response_time
    assert response_time <= datetime.fromisoformat(response.headers["ce-recordedtime"])

    assert request.body == {
        "id": "r-1",
        "inputs": [
            {
                "name": name,
                "datatype": "FP64",
                "shape": [2],
                "data": [row[name] for row in IRIS_ROWS],
            }
            for name in IRIS_FEATURES
        ],
    }
    answer = records.json()["predictions"]
    assert response.body["model_name"] == "iris"
    assert response.body["model_version"] == "2"
    assert response.body["id"] == "r-1"
    outputs = {o["name"]: o for o in response.body["outputs"]}
    assert outputs["predict"] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": [p["prediction"] for p in answer],
    }
    assert outputs["predict_proba"]["shape"] == [2, 3]
    assert outputs["predict_proba"]["data"] == pytest.approx(
        [p for row in answer for p in row["probabilities"].values()]
    )

    # A V2 answer is sent exactly as the V2 route returned it (same id, same bytes).
    pair = by_type(events, "v-1")
    assert pair[RESPONSE].raw == v2.content
    assert [i["data"] for i in pair[REQUEST].body["inputs"]] == [
        [row[name] for row in IRIS_ROWS] for name in IRIS_FEATURES
    ]
    assert count(app, "sent", event="request") == 2
    assert count(app, "sent", event="response") == 2


def test_categories_missing_values_and_redaction(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    app = sink_app(log_redact=["income"])
    rows = [
        {"age": 60, "city": "paris", "income": 2500.0},
        {"age": 30, "city": None, "income": None},
    ]
    with TestClient(app) as client:
        answer = client.post("/models/churn/predict", json=rows, headers={"x-request-id": "c-1"})
        assert answer.status_code == 200
    pair = by_type(receiver.wait_for(2), "c-1")
    assert pair[REQUEST].body["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [60.0, 30.0]},
        {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["paris", None]},
        {"name": "income", "datatype": "FP64", "shape": [2], "data": [None, None]},
    ]
    assert b"2500" not in pair[REQUEST].raw
    predict = pair[RESPONSE].body["outputs"][0]
    assert predict["data"] == [p["prediction"] for p in answer.json()["predictions"]]


def test_attributes_outside_printable_ascii_are_percent_encoded(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    # HTTP request ids are plain ASCII; a caller of the data plane may use any string.
    app = sink_app(sink_events="request", sink_endpoint="100%")
    odd = 'café "1"'
    with TestClient(app) as client:
        state = app.state.tabserve
        model = state.registry.ready("iris")
        batch = model.schema.from_records([IRIS_ROWS[0]])

        async def predict() -> None:
            await state.dataplane.predict(model, batch, request_id=odd)

        client.portal.call(predict)
    [event] = receiver.wait_for(1)
    assert event.headers["ce-id"] == "caf%C3%A9%20%221%22"
    assert unquote(event.headers["ce-id"]) == odd
    assert event.headers["ce-endpoint"] == "100%25"
    assert event.body["id"] == odd


def test_a_regressor_answer_has_no_probabilities(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    app = sink_app(sink_events="response")
    row = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.01)
    with TestClient(app) as client:
        answer = client.post("/models/diabetes/predict", json=row, headers={"x-request-id": "d-1"})
        assert answer.status_code == 200, answer.text
    [event] = receiver.wait_for(1)
    assert event.headers["ce-type"] == RESPONSE
    assert event.body["outputs"] == [
        {
            "name": "predict",
            "datatype": "FP64",
            "shape": [1],
            "data": [pytest.approx(answer.json()["predictions"][0]["prediction"])],
        }
    ]


@pytest.mark.parametrize("events", ["request", "response"])
def test_one_kind_of_event_only(
    sink_app: Callable[..., FastAPI], receiver: Receiver, events: str
) -> None:
    app = sink_app(sink_events=events)
    with TestClient(app) as client:
        for i in range(3):
            client.post("/models/iris/predict", json=IRIS_ROWS[0], headers={"x-request-id": f"{i}"})
    received = receiver.wait_for(3)
    assert len(received) == 3
    kind = REQUEST if events == "request" else RESPONSE
    assert {e.headers["ce-type"] for e in received} == {kind}
    assert sorted(e.headers["ce-id"] for e in received) == ["0", "1", "2"]
    assert count(app, "sent", event=events) == 3


@pytest.mark.parametrize(
    ("answer", "connections"), [("length", 1), ("chunked", 1), ("close", 12), ("stale", 12)]
)
def test_every_answer_framing_is_read_and_connections_are_reused_when_possible(
    sink_app: Callable[..., FastAPI], receiver: Receiver, answer: str, connections: int
) -> None:
    receiver.answer = answer
    app = sink_app(sink_concurrency=1)
    with TestClient(app) as client:
        for _ in range(6):
            assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    assert len(receiver.wait_for(12)) == 12
    assert count(app, "sent", event="request") + count(app, "sent", event="response") == 12
    assert receiver.connections == connections


def test_concurrent_events_share_a_bounded_set_of_connections(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    receiver.delay = 0.01
    app = sink_app(sink_concurrency=2)
    with TestClient(app) as client:
        for _ in range(10):
            assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    assert len(receiver.wait_for(20)) == 20
    assert 1 <= receiver.connections <= 2


def test_receiver_down_predictions_still_answer_and_failures_count(
    models_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/"
    app = create_app(Settings(models_dir=models_dir, sink_url=nowhere))
    with TestClient(app) as client:
        for _ in range(5):
            answer = client.post("/models/iris/predict", json=IRIS_ROWS[0])
            assert answer.status_code == 200
            assert answer.json()["predictions"][0]["prediction"] == "setosa"
    assert count(app, "failed", event="request", reason="connection") == 5
    assert count(app, "failed", event="response", reason="connection") == 5
    assert count(app, "sent", event="request") == 0
    # Ten failures, one warning: the next would come a minute later at the earliest.
    warnings = [line for line in capfd.readouterr().err.splitlines() if "payload sink" in line]
    assert len(warnings) == 1, warnings
    assert nowhere in warnings[0]


def test_non_2xx_answers_count_as_failed(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    receiver.status = 503
    app = sink_app()
    with TestClient(app) as client:
        assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    receiver.wait_for(2)
    assert count(app, "failed", event="request", reason="status") == 1
    assert count(app, "failed", event="response", reason="status") == 1
    assert count(app, "sent", event="request") == 0


def test_credentials_in_the_url_go_as_basic_auth_and_never_into_the_log(
    sink_app: Callable[..., FastAPI], receiver: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    receiver.status = 401
    url = receiver.url.replace("http://", "http://sink:s3cret@")
    app = sink_app(sink_url=url, sink_events="request")
    with TestClient(app) as client:
        assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    [event] = receiver.wait_for(1)
    assert event.headers["authorization"] == "Basic " + base64.b64encode(b"sink:s3cret").decode()
    assert count(app, "failed", event="request", reason="status") == 1
    [warning] = [line for line in capfd.readouterr().err.splitlines() if "payload sink" in line]
    assert "answered 401" in warning
    assert receiver.url in warning
    assert "s3cret" not in warning


def test_a_receiver_slower_than_the_timeout_counts_timeouts(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    receiver.gate.clear()
    app = sink_app(sink_timeout_seconds=0.2, sink_events="request")
    with TestClient(app) as client:
        assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    assert count(app, "failed", event="request", reason="timeout") == 1


def test_a_full_queue_drops_and_counts_while_predictions_answer(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    receiver.gate.clear()  # the receiver takes nothing until the requests are done
    app = sink_app(sink_queue_size=1, sink_concurrency=1, sink_timeout_seconds=30)
    requests = 12
    with TestClient(app) as client:
        for i in range(requests):
            answer = client.post("/models/iris/predict", json=IRIS_ROWS[i % 2])
            assert answer.status_code == 200
            assert answer.json()["predictions"][0]["prediction"] == ["setosa", "virginica"][i % 2]
        dropped = count(app, "dropped", event="request", reason="queue_full")
        # At most one request in flight, one waiting for a free slot, one in the queue.
        assert dropped >= requests - 3
        assert count(app, "dropped", event="response", reason="queue_full") == dropped
        receiver.gate.set()
    sent = count(app, "sent", event="request") + count(app, "sent", event="response")
    assert sent + 2 * dropped == 2 * requests
    assert len(receiver.events) == sent


def test_shutdown_drains_the_queue(sink_app: Callable[..., FastAPI], receiver: Receiver) -> None:
    receiver.gate.clear()
    receiver.delay = 0.05
    app = sink_app(sink_concurrency=1, sink_drain_seconds=30, sink_timeout_seconds=30)
    with TestClient(app) as client:
        for i in range(5):
            client.post("/models/iris/predict", json=IRIS_ROWS[0], headers={"x-request-id": f"{i}"})
        assert receiver.events == []
        receiver.gate.set()
    # Shutdown returned only once every queued event was delivered.
    assert len(receiver.events) == 10
    assert sorted({e.headers["ce-id"] for e in receiver.events}) == ["0", "1", "2", "3", "4"]
    assert count(app, "sent", event="request") + count(app, "sent", event="response") == 10
    assert count(app, "dropped", event="request", reason="shutdown") == 0


def test_shutdown_stops_waiting_after_the_drain_period(
    sink_app: Callable[..., FastAPI], receiver: Receiver
) -> None:
    receiver.gate.clear()  # stays shut: nothing can be delivered
    app = sink_app(sink_concurrency=1, sink_drain_seconds=0.3, sink_timeout_seconds=30)
    with TestClient(app) as client:
        for _ in range(3):
            assert client.post("/models/iris/predict", json=IRIS_ROWS[0]).status_code == 200
    # One in flight (cancelled), the rest still queued: all dropped as 'shutdown'.
    assert count(app, "dropped", event="request", reason="shutdown") == 3
    assert count(app, "dropped", event="response", reason="shutdown") == 3
    assert count(app, "sent", event="request") == 0


def burn(cpu_seconds: float) -> None:
    """Use this much CPU time on the calling thread."""
    until = time.thread_time() + cpu_seconds
    while time.thread_time() < until:
        pass


def test_the_cpu_budget_asks_for_the_pause_that_restores_the_share() -> None:
    started = time.monotonic()
    budget = CpuBudget(0.01, window=3600)
    burn(0.02)
    pause = budget.overdraft()
    elapsed = time.monotonic() - started
    # 0.02 s of CPU is 1 % of 2 s: the wall time so far plus the pause (a busy
    # machine only stretches the wall time already spent).
    assert 2.0 - elapsed <= pause <= 2.5
    assert pause > 0.5


def test_the_cpu_budget_forgets_a_window_that_is_over() -> None:
    budget = CpuBudget(0.01, window=0.05)
    burn(0.02)
    time.sleep(0.06)
    assert budget.overdraft() == 0.0


def test_a_cpu_share_of_one_never_pauses() -> None:
    budget = CpuBudget(1.0, window=3600)
    burn(0.02)
    assert budget.overdraft() == 0.0


def test_settings_refuse_what_cannot_be_sent() -> None:
    with pytest.raises(ValidationError, match="sink_url"):
        Settings(sink_url="ftp://collector/")
    with pytest.raises(ValidationError, match="sink_namespace"):
        Settings(sink_namespace="two words")
    with pytest.raises(ValidationError, match="sink_queue_size"):
        Settings(sink_queue_size=0)


def test_no_sink_url_no_listener(app: FastAPI) -> None:
    with TestClient(app):
        assert app.state.tabserve.dataplane.request_listeners == []


@pytest.mark.slow
def test_a_served_process_with_two_workers_sends_events(
    models_dir: Path, receiver: Receiver, launch: Callable[..., ServerProcess]
) -> None:
    server = launch(
        models_dir,
        "--workers",
        "2",
        env={"TABSERVE_SINK_URL": receiver.url, "TABSERVE_SINK_COMPONENT": "tabserve"},
    )
    ids = [f"p-{i}" for i in range(8)]
    for request_id in ids:
        answer = httpx.post(
            server.url + "/models/iris/predict",
            json=IRIS_ROWS[1],
            headers={"x-request-id": request_id},
        )
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == request_id
    events = receiver.wait_for(16)
    # The two workers' counters add up (a sender counts once the receiver answered).
    sent = 'tabserve_sink_events_sent_total{event="response"} 8.0'
    deadline = time.monotonic() + 30
    while sent not in httpx.get(server.url + "/metrics").text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent in httpx.get(server.url + "/metrics").text
    assert server.stop() == 0
    assert sorted(e.headers["ce-id"] for e in events) == sorted(ids * 2)
    assert {e.headers["ce-component"] for e in events} == {"tabserve"}
    port = urlsplit(server.url).port
    assert {e.headers["ce-source"] for e in events} == {f"http://localhost:{port}/"}
    responses = [e.body for e in events if e.headers["ce-type"] == RESPONSE]
    assert {r["outputs"][0]["data"][0] for r in responses} == {"virginica"}
