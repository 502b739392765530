"""Tracing (docs/tracing.md): spans through the real lifespan, into the SDK's in-memory exporter.

Each test runs an app with `TABSERVE_TRACING_ENABLED` and reads the spans once its
lifespan has ended: the component's stop shuts the batch processor down, which
exports what it holds, so nothing here waits on the processor's schedule.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tabserve.service.app import create_app
from tabserve.service.core.batching import Batcher, TimedBatcher
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tabserve.service.tracing.rpc import _peer
from tests.service.conftest import HeldRuntime, free_port
from tests.service.support import FailingRuntime, queue_behind_held_call, serve_with

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
ROW = [5.1, 3.5, 1.4, 0.2]
RECORD = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
INFER = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}

EXPECTED_HTTP: dict[str, Any] = {
    "http.request.method": "POST",
    "http.route": "/v2/models/{model}/infer",
    "url.path": "/v2/models/iris/infer",
    "http.response.status_code": 200,
    "tabserve.model.name": "iris",
    "tabserve.rows": 2,
    "tabserve.request_id": "req-7",
}


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    """Tracing on; the rest as the other service tests have it."""
    return Settings(models_dir=models_dir, inference_threads=2, max_rows=100, tracing_enabled=True)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@contextlib.contextmanager
def serving(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[TestClient]:
    """A traced app's client; spans are exported when the block (the lifespan) ends,
    and the app's count of exported spans is checked against the exporter's."""
    app = create_app(settings, span_exporter=exporter)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    registry = app.state.tabserve.metrics.registry
    counted = registry.get_sample_value(
        "tabserve_tracing_spans_exported_total", {"result": "success"}
    )
    assert counted == len(exporter.get_finished_spans())


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> dict[str, ReadableSpan]:
    found = {}
    for span in exporter.get_finished_spans():
        if span.parent is not None and span.parent.span_id == parent.context.span_id:
            assert span.name not in found, f"two {span.name} spans under {parent.name}"
            found[span.name] = span
    return found


def parent_id(span: ReadableSpan) -> str:
    """The span id of the caller's span this one continues (the traceparent's)."""
    assert span.parent is not None
    assert span.parent.is_remote
    return format(span.parent.span_id, "016x")


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def test_tracing_off_adds_no_middleware_and_times_nothing(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, inference_threads=1))
    with TestClient(app) as client:
        served = client.app.state.tabserve.registry.ready("iris")  # type: ignore[attr-defined]
        assert type(served.batcher) is Batcher
    assert "TracingMiddleware" not in [m.cls.__name__ for m in app.user_middleware]  # type: ignore[attr-defined]


@pytest.mark.parametrize("fast_path", [True, False], ids=["lane", "documented-route"])
def test_an_infer_request_is_a_server_span_in_the_callers_trace(
    settings: Settings, exporter: InMemorySpanExporter, fast_path: bool
) -> None:
    with serving(settings.model_copy(update={"fast_path": fast_path}), exporter) as client:
        served = client.app.state.tabserve.registry.ready("iris")  # type: ignore[attr-defined]
        assert type(served.batcher) is TimedBatcher
        response = client.post(
            "/v2/models/iris/infer",
            json={**INFER, "inputs": [{**INFER["inputs"][0], "shape": [2, 4], "data": ROW * 2}]},
            headers={"traceparent": TRACEPARENT, "x-request-id": "req-7"},
        )
        assert response.status_code == 200
    [span] = server_spans(exporter)
    assert span.name == "POST /v2/models/{model}/infer"
    assert hex_ids(span)[0] == TRACE_ID
    assert parent_id(span) == CALLER_SPAN
    attributes = dict(span.attributes or {})
    assert {k: attributes[k] for k in EXPECTED_HTTP} == EXPECTED_HTTP
    assert attributes["tabserve.model.version"] == served.version
    assert attributes["client.address"] == "testclient"
    assert span.status.status_code is StatusCode.UNSET
    steps = children(exporter, span)
    assert set(steps) == {"tabserve.queue", "tabserve.predict"}
    queue, predict = steps["tabserve.queue"], steps["tabserve.predict"]
    assert dict(predict.attributes or {})["tabserve.call.rows"] == 2
    assert dict(predict.attributes or {})["tabserve.engine"] == served.runtime.engine
    assert span.start_time <= queue.start_time <= queue.end_time  # type: ignore[operator]
    assert queue.end_time == predict.start_time
    assert predict.end_time <= span.end_time  # type: ignore[operator]


@pytest.mark.parametrize("fast_path", [True, False], ids=["lane", "documented-route"])
def test_a_record_predict_is_named_by_its_route(
    settings: Settings, exporter: InMemorySpanExporter, fast_path: bool
) -> None:
    with serving(settings.model_copy(update={"fast_path": fast_path}), exporter) as client:
        assert client.post("/models/iris/predict", json=[RECORD]).status_code == 200
    [span] = server_spans(exporter)
    assert span.name == "POST /models/iris/predict"
    assert dict(span.attributes or {})["tabserve.model.name"] == "iris"
    assert set(children(exporter, span)) == {"tabserve.queue", "tabserve.predict"}


@pytest.mark.parametrize("fast_path", [True, False], ids=["lane", "documented-route"])
def test_a_server_error_is_an_error_with_its_exception_and_a_client_error_is_not(
    settings: Settings, exporter: InMemorySpanExporter, fast_path: bool
) -> None:
    with serving(settings.model_copy(update={"fast_path": fast_path}), exporter) as client:
        bad = {"inputs": [{**INFER["inputs"][0], "data": [1, 2, 3]}]}
        assert client.post("/v2/models/iris/infer", json=bad).status_code == 400
        serve_with(client.app.state.tabserve, "iris", FailingRuntime)  # type: ignore[attr-defined]
        assert client.post("/v2/models/iris/infer", json=INFER).status_code == 500
    client_error, server_error = sorted(server_spans(exporter), key=lambda s: s.start_time or 0)
    assert dict(client_error.attributes or {})["http.response.status_code"] == 400
    assert client_error.status.status_code is StatusCode.UNSET
    assert client_error.events == ()
    attributes = dict(server_error.attributes or {})
    assert attributes["http.response.status_code"] == 500
    assert attributes["error.type"] == "ZeroDivisionError"
    assert server_error.status.status_code is StatusCode.ERROR
    [event] = server_error.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ZeroDivisionError"


def test_requests_queued_behind_a_call_get_queue_spans_and_share_the_next_call(
    settings: Settings, exporter: InMemorySpanExporter
) -> None:
    with serving(settings, exporter) as client:
        held = serve_with(client.app.state.tabserve, "iris", HeldRuntime)  # type: ignore[attr-defined]

        def send(request_id: str) -> Callable[[], None]:
            def post() -> None:
                headers = {"x-request-id": request_id}
                client.post("/v2/models/iris/infer", json=INFER, headers=headers)

            return post

        queue_behind_held_call(client, held, "iris", [send(f"r{i}") for i in range(3)], 2)
    spans = {dict(s.attributes or {})["tabserve.request_id"]: s for s in server_spans(exporter)}
    first = children(exporter, spans["r0"])
    for later in ("r1", "r2"):
        steps = children(exporter, spans[later])
        queue, predict = steps["tabserve.queue"], steps["tabserve.predict"]
        assert dict(predict.attributes or {})["tabserve.call.requests"] == 2
        assert dict(predict.attributes or {})["tabserve.call.rows"] == 2
        # It waited while the held call ran, and its own call began after that one ended.
        assert queue.start_time < first["tabserve.predict"].end_time <= queue.end_time  # type: ignore[operator]
        assert queue.end_time == predict.start_time
    assert dict(first["tabserve.predict"].attributes or {})["tabserve.call.requests"] == 1


def test_probes_and_the_scrape_are_not_traced(
    settings: Settings, exporter: InMemorySpanExporter
) -> None:
    with serving(settings, exporter) as client:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert client.get(path).status_code == 200
        assert client.get("/v2/models/nope").status_code == 404
    [span] = server_spans(exporter)
    assert span.name == "GET /v2/models/{model}"  # 404 from the route: a client error
    assert span.status.status_code is StatusCode.UNSET


def test_the_access_log_line_carries_the_trace_id(
    settings: Settings, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(settings.model_copy(update={"log_format": "json"}), exporter) as client:
        capsys.readouterr()
        headers = {"traceparent": TRACEPARENT}
        assert client.post("/v2/models/iris/infer", json=INFER, headers=headers).status_code == 200
    [line] = [x for x in capsys.readouterr().err.splitlines() if "tabserve.access" in x]
    [span] = server_spans(exporter)
    entry = json.loads(line)
    assert (entry["trace_id"], entry["span_id"]) == hex_ids(span)
    assert entry["trace_id"] == TRACE_ID


def test_a_websocket_is_one_span_per_connection(
    settings: Settings, exporter: InMemorySpanExporter
) -> None:
    with (
        serving(settings, exporter) as client,
        client.websocket_connect("/models/iris/stream", headers={"traceparent": TRACEPARENT}) as ws,
    ):
        for _ in range(3):
            ws.send_json([RECORD])
            ws.receive_json()
    [span] = server_spans(exporter)
    assert span.name == "WS /models/{model}/stream"
    assert hex_ids(span)[0] == TRACE_ID
    assert dict(span.attributes or {})["http.response.status_code"] == 101
    assert children(exporter, span) == {}  # messages get no spans of their own


def _infer_request(model: str) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW)
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def test_a_grpc_call_is_a_server_span_in_the_callers_trace(
    settings: Settings, exporter: InMemorySpanExporter
) -> None:
    port = free_port()
    metadata: Sequence[tuple[str, str]] = [("traceparent", TRACEPARENT)]
    with (
        serving(settings.model_copy(update={"grpc_port": port}), exporter) as client,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        stub.ModelInfer(_infer_request("iris"), metadata=metadata)
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelInfer(_infer_request("nope"))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        serve_with(client.app.state.tabserve, "iris", FailingRuntime)  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as broken:
            stub.ModelInfer(_infer_request("iris"))
        assert broken.value.code() is grpc.StatusCode.INTERNAL
    found, not_found, failed = sorted(server_spans(exporter), key=lambda s: s.start_time or 0)
    assert found.name == "inference.GRPCInferenceService/ModelInfer"
    assert hex_ids(found)[0] == TRACE_ID
    assert parent_id(found) == CALLER_SPAN
    attributes = dict(found.attributes or {})
    assert {k: attributes[k] for k in ("rpc.system", "rpc.service", "rpc.method")} == {
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
    }
    assert (attributes["rpc.grpc.status_code"], attributes["tabserve.model.name"]) == (0, "iris")
    assert set(children(exporter, found)) == {"tabserve.queue", "tabserve.predict"}
    assert dict(not_found.attributes or {})["rpc.grpc.status_code"] == 5
    assert not_found.status.status_code is StatusCode.UNSET  # NOT_FOUND is the caller's error
    assert dict(failed.attributes or {})["error.type"] == "INTERNAL"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description


def test_the_sampler_and_the_service_name_come_from_opentelemetry_variables(
    settings: Settings, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scoring")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    with serving(settings, exporter) as client:
        client.post("/v2/models/iris/infer", json=INFER)
    [span] = server_spans(exporter)
    resource = dict(span.resource.attributes)
    assert (resource["service.name"], resource["deployment.environment"]) == ("scoring", "staging")
    assert resource["service.version"]
    exporter.clear()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with serving(settings, exporter) as client:
        assert client.post("/v2/models/iris/infer", json=INFER).status_code == 200
    assert exporter.get_finished_spans() == ()


class RefusedExporter(InMemorySpanExporter):
    """An exporter whose collector refuses every batch (after its retries)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        super().export(spans)
        return SpanExportResult.FAILURE


def test_spans_a_collector_refused_are_counted_as_failed(settings: Settings) -> None:
    exporter = RefusedExporter()
    app = create_app(settings, span_exporter=exporter)
    with TestClient(app) as client:
        client.post("/v2/models/iris/infer", json=INFER)
    registry = app.state.tabserve.metrics.registry
    failed = {"result": "failure"}
    assert registry.get_sample_value("tabserve_tracing_spans_exported_total", failed) == 3
    succeeded = {"result": "success"}
    assert registry.get_sample_value("tabserve_tracing_spans_exported_total", succeeded) == 0


def test_an_otlp_protocol_other_than_http_is_refused_at_start_naming_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    app = create_app(settings)
    refused = r"OTEL_EXPORTER_OTLP_PROTOCOL='grpc'.*'http/protobuf'"
    with pytest.raises(ValueError, match=refused), TestClient(app):
        pass


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", ("127.0.0.1", 5555)),
        ("ipv6:[::1]:443", ("::1", 443)),
        ("ipv4:127.0.0.1:²", None),  # str.isdigit() says yes; int() raises
        ("ipv4:127.0.0.1:١٢", None),  # Arabic-Indic digits: int() would read 12
        ("ipv4:127.0.0.1:123456", None),
        ("unix:/tmp/socket", None),
    ],
)
def test_a_grpc_peer_gives_its_port_only_in_ascii_digits(
    peer: str, expected: tuple[str, int] | None
) -> None:
    assert _peer(peer) == expected
