"""Access control over the other transports, with the real clients: gRPC (tritonclient.grpc,
grpcio's stubs, the health service) and HTTP from `tritonclient.http` to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tabserve.service.app import create_app
from tabserve.service.auth.keys_file import entry_for, new_key, write_keys
from tabserve.service.auth.scopes import Scope
from tabserve.service.grpc.access import INFERENCE, METHOD_SCOPES, scope_of
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tests.service.conftest import ServerProcess, free_port, start_server

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    made = {"predictor": new_key(), "reader": new_key(), "ops": new_key()}
    scopes = {"predictor": Scope.PREDICT, "reader": Scope.READ, "ops": Scope.ADMIN}
    write_keys(path, [entry_for(n, k, frozenset({scopes[n]})) for n, k in made.items()])
    return path, made


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_every_rpc_of_the_inference_service_has_a_scope() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {m.name for m in service.methods} == set(METHOD_SCOPES)
    assert scope_of("/grpc.health.v1.Health/Check") is None
    assert scope_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    assert scope_of(INFERENCE + "SomethingNew") is Scope.ADMIN
    assert scope_of("/other.Service/Call") is Scope.ADMIN


@pytest.fixture
def grpc_target(models_dir: Path, keys: tuple[Path, dict[str, str]]) -> Iterator[str]:
    port = free_port()
    settings = Settings(models_dir=models_dir, auth_keys_file=keys[0], grpc_port=port)
    with TestClient(create_app(settings)):
        yield f"127.0.0.1:{port}"


def test_grpc_calls_need_a_key_with_their_scope(
    grpc_target: str, keys: tuple[Path, dict[str, str]]
) -> None:
    made = keys[1]
    client = triton_grpc.InferenceServerClient(grpc_target)
    tensor = triton_grpc.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    assert client.is_server_live()  # open, as HTTP's probes
    assert client.is_server_ready()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("iris", [tensor])
    assert missing.value.status() == "StatusCode.UNAUTHENTICATED"
    assert "no API key given" in missing.value.message()
    with pytest.raises(InferenceServerException) as forbidden:
        client.infer("iris", [tensor], headers=bearer(made["reader"]))
    assert forbidden.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "key 'reader' lacks the 'predict' scope" in forbidden.value.message()
    result = client.infer("iris", [tensor], model_version="1", headers=bearer(made["predictor"]))
    assert [v.decode() for v in result.as_numpy("predict")] == ["setosa", "virginica"]
    assert client.is_model_ready("iris", headers=bearer(made["reader"]))
    with grpc.insecure_channel(grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=[("authorization", "x")])
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        trailing = dict(refused.value.trailing_metadata() or ())
        assert trailing["tabserve-error-code"] == "unauthenticated"
        index = stub.RepositoryIndex(
            pb.RepositoryIndexRequest(), metadata=list(bearer(made["ops"]).items())
        )
        assert {m.name for m in index.models} >= {"iris"}


@pytest.fixture(scope="module")
def server(models_dir: Path, keys: tuple[Path, dict[str, str]]) -> Iterator[ServerProcess]:
    running = start_server(models_dir, env={"TABSERVE_AUTH_KEYS_FILE": str(keys[0])})
    yield running
    running.stop()


def test_tritonclient_http_sends_the_key_as_a_header(
    server: ServerProcess, keys: tuple[Path, dict[str, str]]
) -> None:
    made = keys[1]
    client = triton_http.InferenceServerClient(url=server.url.removeprefix("http://"))
    tensor = triton_http.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=True)
    assert client.is_server_ready()
    with pytest.raises(InferenceServerException) as refused:
        client.infer("iris", [tensor])
    assert "no API key given" in refused.value.message()
    result = client.infer("iris", [tensor], model_version="1", headers=bearer(made["predictor"]))
    assert [v.decode() for v in result.as_numpy("predict")] == ["setosa", "virginica"]
    meta = client.get_model_metadata("iris", headers=bearer(made["reader"]))
    assert meta["name"] == "iris"


def test_tabserve_predict_sends_the_key_from_a_file(
    server: ServerProcess,
    keys: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tabserve.service.cli import main

    rows = tmp_path / "rows.csv"
    rows.write_text(
        "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n5.1,3.5,1.4,0.2\n"
    )
    key_file = tmp_path / "key"
    key_file.write_text(keys[1]["predictor"] + "\n")
    reader_file = tmp_path / "reader-key"
    reader_file.write_text(keys[1]["reader"])
    base = ["predict", str(rows), "--model", "iris", "--url", server.url]
    assert main(base) == 1
    assert "401 from /models/iris" in capsys.readouterr().err
    # Reading the model's features needs `read`, predicting `predict`: one key has one.
    assert main([*base, "--api-key-file", str(reader_file)]) == 1
    assert "403 from /models/iris/predict" in capsys.readouterr().err
    assert main([*base, "--stream", "--api-key-file", str(key_file)]) == 0
    assert '"prediction": "setosa"' in capsys.readouterr().out
