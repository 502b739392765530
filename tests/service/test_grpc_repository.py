"""The model repository RPCs: the HTTP admin routes' index, load and unload over gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from tabserve.service.app import create_app
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tests.service.conftest import free_port

TOKEN = "s3cret-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def _serve(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    port = free_port()
    with TestClient(create_app(settings.model_copy(update={"grpc_port": port}))) as http:
        yield http, f"127.0.0.1:{port}"


@pytest.fixture
def admin(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    yield from _serve(settings.model_copy(update={"admin_token": SecretStr(TOKEN)}))


def _code(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_no_admin_token_configured_refuses_everyone(settings: Settings) -> None:
    for http, target in _serve(settings):
        with grpc.insecure_channel(target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            error = _code(
                stub.RepositoryIndex, pb.RepositoryIndexRequest(), metadata=tuple(ADMIN.items())
            )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        http_answer = http.post("/v2/repository/index", headers=ADMIN)
        assert http_answer.status_code == 409
        assert error.details() == http_answer.json()["error"]


def test_the_token_is_required_and_checked(admin: tuple[TestClient, str]) -> None:
    _, target = admin
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        missing = _code(stub.RepositoryIndex, pb.RepositoryIndexRequest())
        wrong = _code(
            stub.RepositoryIndex,
            pb.RepositoryIndexRequest(),
            metadata=(("authorization", "Bearer nope"),),
        )
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.code() == grpc.StatusCode.PERMISSION_DENIED


def test_index_unload_and_load_as_http_does(admin: tuple[TestClient, str]) -> None:
    http, target = admin
    client = triton.InferenceServerClient(target)
    index = client.get_model_repository_index(headers=ADMIN, as_json=True)["models"]
    http_index = http.post("/v2/repository/index", headers=ADMIN).json()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        (m["name"], m["version"], m["state"]) for m in http_index
    ]

    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        metadata = tuple(ADMIN.items())
        no_version = _code(
            stub.RepositoryModelUnload,
            pb.RepositoryModelUnloadRequest(model_name="iris"),
            metadata=metadata,
        )
        assert no_version.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "parameters.version" in no_version.details()
        unload = pb.RepositoryModelUnloadRequest(model_name="iris")
        unload.parameters["version"].int64_param = 2
        stub.RepositoryModelUnload(unload, metadata=metadata)
        states = {
            (m["name"], m["version"]): m["state"]
            for m in http.post("/v2/repository/index", headers=ADMIN).json()
        }
        assert states["iris", "2"] == "unloaded"
        assert http.get("/v2/models/iris/versions/2/ready").status_code == 404
        ready_only = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=metadata)
        assert ("iris", "2") not in {(m.name, m.version) for m in ready_only.models}

    client.load_model("iris", headers=ADMIN)  # every version on disk not loaded yet
    assert client.is_model_ready("iris", "2")
    assert http.get("/v2/models/iris/versions/2/ready").status_code == 200
    assert http.post("/models/iris/versions/2/predict", json={}).status_code != 404
    load = pb.RepositoryModelLoadRequest(model_name="iris")
    load.parameters["version"].int64_param = 9
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        error = _code(stub.RepositoryModelLoad, load, metadata=tuple(ADMIN.items()))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "model 'iris' has no version 9 on disk; versions on disk: 1, 2"


def test_health_watch_streams_a_models_status_as_it_changes(
    admin: tuple[TestClient, str],
) -> None:
    """`Watch` hears of an unload and a load without being asked again (the
    background refresh), as a Kubernetes gRPC probe or a client-side balancer would."""
    http, target = admin
    status = health_pb2.HealthCheckResponse
    with grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="iris"), timeout=60
        )
        try:
            assert next(watch).status == status.SERVING
            stub = GRPCInferenceServiceStub(channel)
            for version in (2, 1):  # version 1 still serves once 2 is gone: no change
                unload = pb.RepositoryModelUnloadRequest(model_name="iris")
                unload.parameters["version"].int64_param = version
                stub.RepositoryModelUnload(unload, metadata=tuple(ADMIN.items()))
            assert next(watch).status == status.SERVICE_UNKNOWN
            assert http.get("/v2/models/iris/ready").status_code == 404
            stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name="iris"), metadata=tuple(ADMIN.items())
            )
            assert next(watch).status == status.SERVING
        finally:
            watch.cancel()
