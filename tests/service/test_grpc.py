"""The Open Inference Protocol over gRPC, through the real lifespan, server and clients.

Each test runs the app's lifespan (`with TestClient(app)`), which starts the gRPC server
on a free port as a component; clients are `tritonclient.grpc`, unmodified, and grpcio's
own stubs. The same request over HTTP and gRPC must give the same outputs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from tabserve.service.app import create_app
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tests.service.conftest import HeldRuntime, free_port
from tests.service.support import serve_with

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@dataclass
class Served:
    """One app serving HTTP (test client) and gRPC (a real port)."""

    http: TestClient
    target: str
    channel: grpc.Channel

    @property
    def stub(self) -> GRPCInferenceServiceStub:
        return GRPCInferenceServiceStub(self.channel)


def _serve(settings: Settings) -> Iterator[Served]:
    port = free_port()
    app = create_app(settings.model_copy(update={"grpc_port": port}))
    with TestClient(app) as http, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Served(http, f"127.0.0.1:{port}", channel)


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    yield from _serve(settings)


@pytest.fixture
def triton_client(served: Served) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(served.target)


def _http_outputs(http: TestClient, model: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    response = http.post(f"/v2/models/{model}/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def test_tritonclient_reads_health_and_metadata(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("iris")
    assert triton_client.is_model_ready("iris", "1")
    server = triton_client.get_server_metadata(as_json=True)
    assert server["name"] == "tabserve"
    grpc_meta = triton_client.get_model_metadata("iris", "1", as_json=True)
    http_meta = served.http.get("/v2/models/iris/versions/1").json()
    assert grpc_meta["name"] == http_meta["name"] == "iris"
    assert grpc_meta["versions"] == http_meta["versions"]
    assert grpc_meta["platform"] == http_meta["platform"]
    for kind in ("inputs", "outputs"):
        assert [
            (t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in grpc_meta[kind]
        ] == [(t["name"], t["datatype"], t["shape"]) for t in http_meta[kind]]


def test_tritonclient_infer_equals_http(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    tensor = triton.InferInput("input-0", list(IRIS_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(IRIS_ROWS)
    result = triton_client.infer("iris", [tensor], model_version="1", request_id="r-7")
    answer = result.get_response(as_json=True)
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "1", "r-7")
    http = _http_outputs(
        served.http,
        "iris/versions/1",
        [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": IRIS_ROWS.ravel().tolist()}],
    )
    labels = result.as_numpy("predict")
    assert [label.decode() for label in labels] == http["predict"]["data"]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (3, 3)
    np.testing.assert_array_equal(proba.ravel(), http["predict_proba"]["data"])


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_typed_contents_answer_typed_contents_equal_to_http(served: Served, datatype: str) -> None:
    request = pb.ModelInferRequest(model_name="iris", model_version="1", id="typed")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[3, 4])
    field = "fp64_contents" if datatype == "FP64" else "fp32_contents"
    getattr(tensor.contents, field).extend(IRIS_ROWS.ravel().tolist())
    response = served.stub.ModelInfer(request)
    assert not response.raw_output_contents
    by_name = {o.name: o for o in response.outputs}
    http = _http_outputs(
        served.http,
        "iris/versions/1",
        [{"name": "x", "shape": [3, 4], "datatype": datatype, "data": IRIS_ROWS.ravel().tolist()}],
    )
    assert [b.decode() for b in by_name["predict"].contents.bytes_contents] == http["predict"][
        "data"
    ]
    assert list(by_name["predict_proba"].shape) == [3, 3]
    assert list(by_name["predict_proba"].contents.fp64_contents) == http["predict_proba"]["data"]
    assert response.id == "typed"


def test_per_feature_tensors_with_int_and_bytes_equal_http(served: Served) -> None:
    request = pb.ModelInferRequest(model_name="churn")
    age = request.inputs.add(name="age", datatype="INT64", shape=[2])
    age.contents.int64_contents.extend([30, 70])
    city = request.inputs.add(name="city", datatype="BYTES", shape=[2])
    city.contents.bytes_contents.extend([b"paris", b"berlin"])
    income = request.inputs.add(name="income", datatype="INT32", shape=[2, 1])
    income.contents.int_contents.extend([2500, 1800])
    response = served.stub.ModelInfer(request)
    http = _http_outputs(
        served.http,
        "churn",
        [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 70]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["paris", "berlin"]},
            {"name": "income", "shape": [2, 1], "datatype": "INT32", "data": [2500, 1800]},
        ],
    )
    grpc_outputs = {o.name: o for o in response.outputs}
    assert [b.decode() for b in grpc_outputs["predict"].contents.bytes_contents] == (
        http["predict"]["data"]
    )
    assert (
        list(grpc_outputs["predict_proba"].contents.fp64_contents)
        == (http["predict_proba"]["data"])
    )


def test_raw_inputs_and_binary_requests_answer_raw_outputs(served: Served) -> None:
    raw = pb.ModelInferRequest(model_name="diabetes")
    rows = np.linspace(-0.05, 0.05, 20).reshape(2, 10)
    raw.inputs.add(name="x", datatype="FP64", shape=[2, 10])
    raw.raw_input_contents.append(rows.astype("<f8").tobytes())
    answer = served.stub.ModelInfer(raw)
    [predict] = answer.outputs
    assert (predict.name, predict.datatype, list(predict.shape)) == ("predict", "FP64", [2])
    values = np.frombuffer(answer.raw_output_contents[0], dtype="<f8")
    http = _http_outputs(
        served.http,
        "diabetes",
        [{"name": "x", "shape": [2, 10], "datatype": "FP64", "data": rows.ravel().tolist()}],
    )
    assert values.tolist() == http["predict"]["data"]

    typed = pb.ModelInferRequest(model_name="diabetes")
    typed.inputs.add(name="x", datatype="FP64", shape=[2, 10]).contents.fp64_contents.extend(
        rows.ravel().tolist()
    )
    typed.outputs.add(name="predict").parameters["binary_data"].bool_param = True
    assert served.stub.ModelInfer(typed).raw_output_contents == answer.raw_output_contents


def _error(served: Served, request: pb.ModelInferRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.ModelInfer(request)
    return caught.value


def test_bad_input_is_invalid_argument_worded_as_http(served: Served) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[1, 3]).contents.fp64_contents.extend(
        [6.7, 3.0, 5.2]
    )
    error = _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    http = served.http.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [6.7, 3, 5.2]}]
        },
    )
    assert http.status_code == 400
    assert error.details() == http.json()["error"]
    assert ("tabserve-error-code", "invalid_input") in error.trailing_metadata()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda r: r.inputs.add(
                name="x", datatype="FP64", shape=[1, 4]
            ).contents.fp64_contents.extend([1.0]),
            "input 'x': contents.fp64_contents has 1 values but shape [1, 4] needs 4",
        ),
        (
            lambda r: r.inputs.add(
                name="x", datatype="FP64", shape=[1, 4]
            ).contents.int64_contents.extend([1, 2, 3, 4]),
            "a FP64 tensor carries its values in contents.fp64_contents, "
            "got contents.int64_contents",
        ),
        (
            lambda r: r.inputs.add(name="x", datatype="FP63", shape=[1, 4]),
            "input 'x' has unknown datatype \"FP63\"",
        ),
        (
            lambda r: r.inputs.add(
                name="x", datatype="INT8", shape=[1, 4]
            ).contents.int_contents.extend([1, 2, 300, 4]),
            "input 'x': element 2 is 300, outside INT8's range [-128, 127]",
        ),
        (
            lambda r: (
                r.inputs.add(name="x", datatype="FP64", shape=[1, 4]),
                r.raw_input_contents.append(b"\0" * 31),
            ),
            "its raw_input_contents entry is 31 bytes but shape [1, 4] of FP64 needs 32 bytes",
        ),
    ],
)
def test_malformed_tensors_name_the_input_and_what_was_expected(
    served: Served, build: Any, expected: str
) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    build(request)
    error = _error(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()


def test_unknown_model_or_version_is_not_found(served: Served) -> None:
    request = pb.ModelInferRequest(model_name="nope")
    request.inputs.add(name="x", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend(
        [1.0] * 4
    )
    assert _error(served, request).code() == grpc.StatusCode.NOT_FOUND
    request.model_name, request.model_version = "iris", "9"
    error = _error(served, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "model 'iris' has no version 9; versions: 1, 2"
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.ModelMetadata(pb.ModelMetadataRequest(name="iris", version="latest"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_message_over_the_limit_is_resource_exhausted(settings: Settings) -> None:
    small = settings.model_copy(update={"grpc_max_message_bytes": 1024})
    for served in _serve(small):
        request = pb.ModelInferRequest(model_name="iris")
        request.inputs.add(name="x", datatype="FP64", shape=[64, 4]).contents.fp64_contents.extend(
            [1.0] * 256
        )
        assert _error(served, request).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_follows_readiness(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", "inference.GRPCInferenceService", "iris", "churn"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(served: Served) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    [listing] = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in listing.list_services_response.service}
    assert {
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    [described] = reflection.ServerReflectionInfo(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="inference.GRPCInferenceService"
                )
            ]
        )
    )
    assert described.file_descriptor_response.file_descriptor_proto


def test_metrics_count_rpcs_and_predictions_as_http_ones(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    tensor = triton.InferInput("x", [3, 4], "FP64")
    tensor.set_data_from_numpy(IRIS_ROWS)
    triton_client.infer("iris", [tensor], model_version="1")
    with pytest.raises(InferenceServerException):
        triton_client.infer("nope", [tensor])
    text = served.http.get("/metrics").text
    assert 'tabserve_grpc_requests_total{route="ModelInfer",status="OK"} 1.0' in text
    assert 'tabserve_grpc_requests_total{route="ModelInfer",status="NOT_FOUND"} 1.0' in text
    assert 'tabserve_inference_rows_total{model="iris",version="1"} 3.0' in text


def test_stopping_finishes_calls_in_flight_and_refuses_new_ones(settings: Settings) -> None:
    port = free_port()
    http = TestClient(create_app(settings.model_copy(update={"grpc_port": port})))
    http.__enter__()
    held = serve_with(http.app.state.tabserve, "iris", HeldRuntime)  # type: ignore[attr-defined]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="iris")
        request.inputs.add(name="x", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend(
            IRIS_ROWS[0].tolist()
        )
        in_flight = stub.ModelInfer.future(request)
        assert held.entered.wait(timeout=30)
        stopping = threading.Thread(target=http.__exit__, args=(None, None, None))
        stopping.start()
        try:
            refused = None
            for _ in range(3000):  # until the server has begun to stop (it waits for the call)
                try:
                    stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
                except grpc.RpcError as exc:
                    refused = exc
                    break
                threading.Event().wait(0.01)
            assert refused is not None
            assert refused.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.details() == (
                "the server is shutting down; send the call to another replica"
            )
            assert not in_flight.done()
        finally:
            held.release.set()
            stopping.join(timeout=60)
        answer = in_flight.result(timeout=30)
        assert [o.name for o in answer.outputs] == ["predict", "predict_proba"]


def test_too_many_rows_is_resource_exhausted(served: Served) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[101, 4]).contents.fp64_contents.extend(
        [5.0] * 404
    )
    error = _error(served, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "request has 101 rows; at most 100 are allowed per request"


def test_tritonclient_sends_raw_bytes_and_int_tensors(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    tensors = [
        triton.InferInput("age", [2], "INT64"),
        triton.InferInput("city", [2], "BYTES"),
        triton.InferInput("income", [2], "FP64"),
    ]
    tensors[0].set_data_from_numpy(np.array([30, 70], dtype=np.int64))
    tensors[1].set_data_from_numpy(np.array([b"paris", b"berlin"], dtype=np.object_))
    tensors[2].set_data_from_numpy(np.array([2500.5, 1800.0]))
    result = triton_client.infer("churn", tensors)
    http = _http_outputs(
        served.http,
        "churn",
        [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 70]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["paris", "berlin"]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [2500.5, 1800.0]},
        ],
    )
    assert [b.decode() for b in result.as_numpy("predict")] == http["predict"]["data"]
    assert result.as_numpy("predict_proba").ravel().tolist() == http["predict_proba"]["data"]


def test_a_too_long_bytes_element_is_refused_as_http_refuses_it(served: Served) -> None:
    cities = ["paris", "x" * 5000]
    request = pb.ModelInferRequest(model_name="churn")
    request.inputs.add(name="age", datatype="INT64", shape=[2]).contents.int64_contents.extend(
        [30, 70]
    )
    request.inputs.add(name="city", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
        [c.encode() for c in cities]
    )
    request.inputs.add(name="income", datatype="FP64", shape=[2]).contents.fp64_contents.extend(
        [2500.5, 1800.0]
    )
    error = _error(served, request)
    http = served.http.post(
        "/v2/models/churn/infer",
        json={
            "inputs": [
                {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 70]},
                {"name": "city", "shape": [2], "datatype": "BYTES", "data": cities},
                {"name": "income", "shape": [2], "datatype": "FP64", "data": [2500.5, 1800.0]},
            ]
        },
    )
    assert http.status_code == 413
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == http.json()["error"]


def test_a_full_queue_is_unavailable_as_http_answers_503(settings: Settings) -> None:
    for served in _serve(settings.model_copy(update={"queue_max_rows": 2})):
        state = served.http.app.state.tabserve  # type: ignore[attr-defined]
        held = serve_with(state, "iris", HeldRuntime)
        model = state.registry.ready("iris")

        def request(rows: int) -> pb.ModelInferRequest:
            message = pb.ModelInferRequest(model_name="iris")
            tensor = message.inputs.add(name="x", datatype="FP64", shape=[rows, 4])
            tensor.contents.fp64_contents.extend(IRIS_ROWS[:1].ravel().tolist() * rows)
            return message

        taken = served.stub.ModelInfer.future(request(1))
        try:
            assert held.entered.wait(timeout=30)
            queued = served.stub.ModelInfer.future(request(2))
            for _ in range(3000):  # until the second call waits in the queue
                if model.batcher.queued_rows == 2:
                    break
                threading.Event().wait(0.01)
            assert model.batcher.queued_rows == 2
            error = _error(served, request(1))
        finally:
            held.release.set()
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert ("tabserve-error-code", "overloaded") in error.trailing_metadata()
        assert len(taken.result(timeout=30).outputs) == len(queued.result(timeout=30).outputs) == 2


def test_the_prediction_log_records_grpc_predictions_as_http_ones(
    settings: Settings, tmp_path: Any
) -> None:
    from tabserve.service.predlog import PredictionStore

    logged = settings.model_copy(
        update={"predlog_mode": "all", "data_dir": tmp_path / "data", "predlog_flush_seconds": 0.05}
    )
    rows = IRIS_ROWS[:2]
    for served in _serve(logged):
        request = pb.ModelInferRequest(model_name="iris", model_version="1")
        request.inputs.add(name="x", datatype="FP64", shape=[2, 4]).contents.fp64_contents.extend(
            rows.ravel().tolist()
        )
        served.stub.ModelInfer(request, metadata=(("x-request-id", "grpc-42"),))
        served.http.post(
            "/v2/models/iris/versions/1/infer",
            json={
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2, 4],
                        "datatype": "FP64",
                        "data": rows.ravel().tolist(),
                    }
                ]
            },
            headers={"x-request-id": "http-42"},
        )
    store = PredictionStore(logged.predlog_database_url)
    try:
        found = store.find("iris", [(r, i) for r in ("grpc-42", "http-42") for i in range(2)])
    finally:
        store.dispose()
    assert len(found) == 4
    for row in range(2):
        by_grpc, by_http = found["grpc-42", row].row, found["http-42", row].row
        assert (by_grpc.version, by_grpc.inputs, by_grpc.prediction, by_grpc.probabilities) == (
            by_http.version,
            by_http.inputs,
            by_http.prediction,
            by_http.probabilities,
        )


def test_sigterm_stops_grpc_beside_the_http_drain(served: Served) -> None:
    state = served.http.app.state.tabserve  # type: ignore[attr-defined]
    held = serve_with(state, "iris", HeldRuntime)
    health = health_pb2_grpc.HealthStub(served.channel)
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend(
        IRIS_ROWS[0].tolist()
    )
    in_flight = served.stub.ModelInfer.future(request)
    try:
        assert held.entered.wait(timeout=30)
        state.draining = True  # what SIGTERM does first (components.SigtermDrain)
        refused = None
        for _ in range(3000):  # until gRPC has begun to stop (the held call keeps it open)
            try:
                served.stub.ServerReady(pb.ServerReadyRequest(), timeout=5)
            except grpc.RpcError as exc:
                refused = exc
                break
            threading.Event().wait(0.01)
        assert refused is not None
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        answer = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert served.http.get("/v2/health/ready").status_code == 400  # HTTP still answers
        assert not in_flight.done()
    finally:
        held.release.set()
    assert [o.name for o in in_flight.result(timeout=30).outputs] == ["predict", "predict_proba"]


def test_a_taken_port_fails_the_start_naming_the_setting(settings: Settings) -> None:
    """Even one taken with SO_REUSEPORT (another tabserve): one worker does not share it."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(settings.model_copy(update={"grpc_port": port}))
        with (
            pytest.raises(RuntimeError, match=f"127.0.0.1:{port}.*TABSERVE_GRPC_PORT"),
            TestClient(app),
        ):
            pass
