"""Split rollouts: who answers a request naming no version, on every transport."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from tabserve.service.app import create_app
from tabserve.service.core.rollout.metrics import RolloutMetrics
from tabserve.service.core.rollout.plan import Mode, Rollout
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tests.service.conftest import free_port
from tests.service.rollout_support import IRIS, TOKEN, infer_version, put_rollout, value

RECORD = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


@pytest.fixture(params=[True, False], ids=["express", "general"])
def admin(models_dir: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """iris v2 (the default) and v1; express lanes on, and off (every request through FastAPI)."""
    settings = Settings(
        models_dir=models_dir, admin_token=TOKEN, inference_threads=2, fast_path=request.param
    )
    with TestClient(create_app(settings)) as client:
        yield client


def record_version(client: TestClient, path: str = "/models/iris/predict", **headers: str) -> int:
    answer = client.post(path, json=RECORD, headers=headers)
    assert answer.status_code == 200, answer.text
    version: int = answer.json()["version"]
    return version


def test_share_one_sends_every_unversioned_request_to_the_challenger(admin: TestClient) -> None:
    assert put_rollout(admin, "iris", challenger=1, mode="split", share=1.0).status_code == 200
    assert infer_version(admin, "iris", IRIS) == "1"
    assert record_version(admin) == 1
    assert admin.post("/v1/models/iris:predict", json={"instances": IRIS}).status_code == 200
    with admin.websocket_connect("/models/iris/stream") as ws:
        ws.send_json({"request_id": "s1", "records": [RECORD]})
        assert ws.receive_json()["version"] == 1
    # V2 infer, records, V1 and the stream message: four requests, all to the challenger
    assert (
        value(admin, "tabserve_rollout_requests_total", model="iris", version="1", arm="challenger")
        == 4
    )
    assert (
        value(admin, "tabserve_rollout_requests_total", model="iris", version="2", arm="champion")
        == 0
    )


def test_named_versions_metadata_and_share_zero_stay_with_their_version(admin: TestClient) -> None:
    put_rollout(admin, "iris", challenger=1, mode="split", share=1.0)
    assert infer_version_named(admin, "2") == "2"
    assert record_version(admin, "/models/iris/versions/2/predict") == 2
    assert admin.get("/v2/models/iris").json()["parameters"]["version"] == "2"  # the champion
    put_rollout(admin, "iris", challenger=1, mode="split", share=0.0)
    assert {infer_version(admin, "iris", IRIS) for _ in range(20)} == {"2"}
    assert (
        value(admin, "tabserve_rollout_requests_total", model="iris", version="2", arm="champion")
        == 20
    )


def infer_version_named(client: TestClient, version: str) -> str:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": IRIS[0]}]}
    answer = client.post(f"/v2/models/iris/versions/{version}/infer", json=body)
    assert answer.status_code == 200
    named: str = answer.json()["model_version"]
    return named


def test_a_sticky_key_always_gets_the_same_version_and_the_share_holds(
    admin: TestClient,
) -> None:
    put_rollout(admin, "iris", challenger=1, mode="split", share=0.3)
    keys = [f"user-{i}" for i in range(300)]
    first = {key: record_version(admin, **{"X-Rollout-Key": key}) for key in keys}
    challenged = sum(version == 1 for version in first.values())
    assert 60 <= challenged <= 120  # 30% of 300 keys: 90 expected, the hash is fixed
    for key in keys[:40]:  # the same key, on another transport, gets the same version
        assert infer_version(admin, "iris", IRIS[:1], **{"X-Rollout-Key": key}) == str(first[key])
    # raising the share only moves more keys to the challenger
    put_rollout(admin, "iris", challenger=1, mode="split", share=0.6)
    after = {key: record_version(admin, **{"X-Rollout-Key": key}) for key in keys}
    assert all(after[key] == 1 for key in keys if first[key] == 1)
    assert sum(version == 1 for version in after.values()) > challenged


def test_a_seeded_coin_splits_by_the_share() -> None:
    registry = CollectorRegistry()
    arms = RolloutMetrics(registry).arms("iris", 2, 1)
    coin = random.Random(7).random
    rollout = Rollout("iris", 2, 1, Mode.SPLIT, 0.2, 0.0, None, arms, coin)
    picked = [rollout.version_for(None) for _ in range(5000)]
    assert 900 <= picked.count(1) <= 1100  # 1000 expected
    counted = {"model": "iris", "version": "1", "arm": "challenger"}
    assert registry.get_sample_value("tabserve_rollout_requests_total", counted) == picked.count(1)
    shadow = Rollout("iris", 2, 1, Mode.SHADOW, 0.0, 0.0, None, arms, coin)
    assert {shadow.version_for(str, "key") for _ in range(50)} == {2}


def test_grpc_model_infer_follows_the_split_and_its_sticky_key(models_dir: Path) -> None:
    port = free_port()
    settings = Settings(models_dir=models_dir, admin_token=TOKEN, grpc_port=port)
    with (
        TestClient(create_app(settings)) as http,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
        tensor.contents.fp64_contents.extend(IRIS[0])
        put_rollout(http, "iris", challenger=1, mode="split", share=1.0)
        assert stub.ModelInfer(request).model_version == "1"
        put_rollout(http, "iris", challenger=1, mode="split", share=0.5)
        keyed = {
            key: stub.ModelInfer(request, metadata=[("x-rollout-key", key)]).model_version
            for key in ("a", "b", "c", "d", "e", "f")
        }
        for key, version in keyed.items():  # the same key over HTTP gets the same version
            assert infer_version(http, "iris", IRIS[:1], **{"X-Rollout-Key": key}) == version
        assert set(keyed.values()) == {"1", "2"}


def test_the_prediction_log_measures_each_arm_on_its_own_labels(
    models_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        models_dir=models_dir,
        admin_token=TOKEN,
        predlog_mode="all",
        data_dir=tmp_path / "data",
        predlog_flush_seconds=0.05,
    )
    with TestClient(create_app(settings)) as client:
        put_rollout(client, "iris", challenger=1, mode="split", share=0.5)
        served = {}
        for i in range(30):
            headers = {"X-Rollout-Key": f"user-{i}", "X-Request-ID": f"r-{i}"}
            served[f"r-{i}"] = record_version(client, **headers)
        items = [{"request_id": rid, "truth": "setosa"} for rid in served]
        feedback = client.post("/models/iris/feedback", json=items).json()
        assert [r["version"] for r in feedback["results"]] == list(served.values())
        quality = client.get("/models/iris/quality").json()["versions"]
        rows = {q["version"]: q["rows"] for q in quality}
        assert rows == {v: list(served.values()).count(v) for v in (1, 2)}
        assert set(rows) == {1, 2}
