"""A real Prometheus scrapes a real `tabserve serve --workers 2`, found through the
deploy config's own relabelling; then the counts, the alert rules and every dashboard
query are checked against what Prometheus stored."""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector

from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tests.deploy.support import (
    IRIS_ROW,
    OUT_OF_RANGE_ROW,
    WORKERS,
    Served,
    dashboard,
    dashboard_panels,
    free_port,
    local_prometheus_config,
    pod_meta_labels,
    stop,
    wait_for,
)
from tests.deploy.support import rules as deploy_rules

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed"),
]
REQUESTS = 200
GRPC_CALLS = 20
NAMESPACE = "ml"
ROUTE = "/v1/models/{model}:predict"


@dataclass
class Prometheus:
    """A Prometheus server on loopback and its HTTP API."""

    url: str

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str) -> float:
        (sample,) = self.query(expr)
        return float(sample["value"][1])

    def wait_for_scrape_after(self, moment: float, seconds: float = 20) -> float:
        """Until the target's last scrape started after `moment` (a time.time()); its start."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            # Discovered targets are applied on a 5 s tick after start: the list may be empty.
            for target in self.api("targets", state="active")["activeTargets"]:
                started = datetime.fromisoformat(target["lastScrape"]).timestamp()
                if started > moment and target["health"] == "up":
                    return started
            time.sleep(0.2)
        raise AssertionError(f"no successful scrape after {moment} within {seconds} s")

    def wait_for_two_scrapes_after(self, moment: float) -> None:
        """Until two scrapes that started after `moment` are stored.

        `rate()` needs two samples of a series in its window. A series born during the
        traffic (the first 4xx, say) has its first sample in the first scrape after it
        appeared; if that scrape is the one after the traffic ended, one more is needed.
        """
        first = self.wait_for_scrape_after(moment)
        self.wait_for_scrape_after(first)


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus with deploy/prometheus's scrape job and rules, scraping every second.

    Two decoy pods are offered too: one not annotated for scraping, one of another app.
    """
    assert PROMETHEUS is not None
    folder = tmp_path_factory.mktemp("prometheus")
    pod = pod_meta_labels(NAMESPACE, served.port)
    unannotated = {**pod, "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"}
    other_app = {**pod, "__meta_kubernetes_pod_label_app_kubernetes_io_name": "other"}
    # Pod discovery gives address:containerPort; the relabelling swaps in the annotated port.
    config = local_prometheus_config(
        [("127.0.0.1:8000", pod), ("127.0.0.2:8000", unannotated), ("127.0.0.3:8000", other_app)],
        interval="1s",
    )
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready", process, log)
        running = Prometheus(url)
        running.wait_for_scrape_after(time.time())
        yield running
    finally:
        stop(process)


def _send(client: httpx.Client, index: int) -> int:
    """Request `index` of the run: mostly served, some refused, some out of range."""
    if index % 40 == 0:
        response = client.post(ROUTE.format(model="iris"), json={"instances": [[1.0, "x", 2, 3]]})
    elif index % 40 == 1:
        response = client.post(ROUTE.format(model="broken"), json={"instances": [IRIS_ROW]})
    elif index % 10 == 2:
        response = client.post(ROUTE.format(model="iris"), json={"instances": [OUT_OF_RANGE_ROW]})
    else:
        response = client.post(ROUTE.format(model="iris"), json={"instances": [IRIS_ROW, IRIS_ROW]})
    return response.status_code


def _send_grpc(target: str) -> None:
    """GRPC_CALLS served `ModelInfer` calls and one for a model that is not there."""
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1, len(IRIS_ROW)])
    tensor.contents.fp64_contents.extend(IRIS_ROW)
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for _ in range(GRPC_CALLS):
            stub.ModelInfer(request, timeout=30)
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelInfer(pb.ModelInferRequest(model_name="nope"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@dataclass
class Traffic:
    """What was sent, by status code."""

    statuses: dict[str, int]
    rows: int


@pytest.fixture(scope="module")
def traffic(served: Served, prometheus: Prometheus) -> Traffic:
    """REQUESTS requests on fresh connections from 8 threads (so both workers answer some),
    then wait for a scrape that started after the last one was answered."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=served.url, limits=limits, timeout=30) as client:

        def send(index: int) -> int:
            return _send(client, index)

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(send, range(REQUESTS)))
    _send_grpc(f"127.0.0.1:{served.grpc_port}")
    # The middleware counts a request after its response is sent: leave it a moment.
    prometheus.wait_for_two_scrapes_after(time.time() + 0.5)
    statuses = collections.Counter(str(code) for code in codes)
    assert statuses == {"200": REQUESTS - 10, "400": 5, "503": 5}
    rows = sum(_rows(index) for index in range(REQUESTS))
    return Traffic(dict(statuses), rows)


def _rows(index: int) -> int:
    """Rows iris predicted for request `index` of `_send`."""
    if index % 40 in (0, 1):
        return 0
    return 1 if index % 10 == 2 else 2


def test_the_deploy_relabelling_finds_the_annotated_pod_only(prometheus: Prometheus) -> None:
    targets = prometheus.api("targets")
    (active,) = targets["activeTargets"]
    assert active["labels"] == {
        "instance": active["scrapeUrl"].split("/")[2],
        "job": "tabserve",
        "namespace": NAMESPACE,
        "pod": "tabserve-0",
    }
    assert active["scrapeUrl"].endswith("/metrics")
    assert active["health"] == "up", active["lastError"]
    assert len(targets["droppedTargets"]) == 2


def test_request_count_is_exact_across_two_workers(
    prometheus: Prometheus, traffic: Traffic, served: Served
) -> None:
    total = prometheus.scalar(f'sum(tabserve_http_requests_total{{route="{ROUTE}"}})')
    assert total == REQUESTS
    by_status = {
        sample["metric"]["status"]: float(sample["value"][1])
        for sample in prometheus.query(
            f'sum by (status) (tabserve_http_requests_total{{route="{ROUTE}"}})'
        )
    }
    assert by_status == {status: float(n) for status, n in traffic.statuses.items()}
    rows = prometheus.scalar('sum(tabserve_inference_rows_total{model="iris"})')
    assert rows == traffic.rows + GRPC_CALLS
    grpc_calls = {
        sample["metric"]["status"]: float(sample["value"][1])
        for sample in prometheus.query(
            'sum by (status) (tabserve_grpc_requests_total{route="ModelInfer"})'
        )
    }
    assert grpc_calls == {"OK": GRPC_CALLS, "NOT_FOUND": 1}


def test_the_total_is_the_sum_of_both_workers_files(traffic: Traffic, served: Served) -> None:
    """Each worker writes its own file; the exact total above must be their sum."""
    folder = Path(served.log.parent / "metrics")
    per_worker = {}
    for path in sorted(folder.glob("counter_*.db")):
        counted = 0.0
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (
                    sample.name == "tabserve_http_requests_total"
                    and sample.labels["route"] == ROUTE
                ):
                    counted += sample.value
        per_worker[path.name] = counted
    # the supervisor has a file too (it loaded the models), but serves no requests
    serving = {name: count for name, count in per_worker.items() if count > 0}
    assert len(serving) == WORKERS, per_worker
    assert sum(per_worker.values()) == REQUESTS


def test_every_loaded_model_version_has_one_info_series(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    series = prometheus.query("tabserve_model_info")
    ready = sorted(
        (s["metric"]["model"], s["metric"]["version"]) for s in series if s["value"][1] == "1"
    )
    assert ready == [("churn", "1"), ("diabetes", "1"), ("iris", "1"), ("iris", "2")]
    failed = [s["metric"] for s in series if s["value"][1] == "0"]
    assert [(m["model"], m.get("sha256", "")) for m in failed] == [("broken", "")]
    for sample in series:
        assert sample["metric"]["namespace"] == NAMESPACE
        if sample["value"][1] == "1":
            assert len(sample["metric"]["sha256"]) == 64
    # the supervisor loaded the models once, before forking the workers
    assert prometheus.scalar("sum(tabserve_model_load_failures_total)") == 1


def _active_alerts(prometheus: Prometheus) -> dict[str, set[str]]:
    found: dict[str, set[str]] = collections.defaultdict(set)
    for alert in prometheus.api("alerts")["alerts"]:
        found[alert["labels"]["alertname"]].add(alert["labels"].get("model", ""))
    return found


def test_rules_evaluate_on_real_series_and_the_right_alerts_trip(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    """Pending or firing: the `for` durations are minutes, the expressions are what count."""
    expected = {"TabserveModelLoadFailed": {"broken"}, "TabserveInputsOutOfRange": {"iris"}}
    deadline = time.monotonic() + 20
    active = _active_alerts(prometheus)
    while not expected.items() <= active.items() and time.monotonic() < deadline:
        time.sleep(0.5)
        active = _active_alerts(prometheus)
    assert expected.items() <= active.items(), dict(active)
    # 5 of 200 answers were 503 (2.5%), nothing restarted, rows flow, the target is up.
    quiet = {"TabserveHighErrorRatio", "TabserveRestarting", "TabserveNoTraffic", "TabserveDown"}
    assert not quiet & set(active), dict(active)
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(
        rule.get("alert", rule.get("record")) for rule in deploy_rules()
    )
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def _grafana_to_promql(expr: str) -> str:
    """What Grafana sends: variables replaced (All is `.*`), the rate interval a minute."""
    return (
        expr.replace("$namespace", NAMESPACE)
        .replace("$model", ".*")
        .replace("$__rate_interval", "1m")
    )


@pytest.mark.parametrize(
    ("panel", "expr"),
    [(p["title"], t["expr"]) for p in dashboard_panels() for t in p["targets"]],
)
def test_every_dashboard_query_returns_data(
    prometheus: Prometheus, traffic: Traffic, panel: str, expr: str
) -> None:
    result = prometheus.query(_grafana_to_promql(expr))
    assert result, f"{panel!r}: no data for {expr}"


def test_dashboard_variables_list_the_namespace_and_models(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    variables = {v["name"]: v["query"]["query"] for v in dashboard()["templating"]["list"][1:]}
    assert variables["namespace"] == "label_values(tabserve_model_info, namespace)"
    namespaces = prometheus.api("label/namespace/values", **{"match[]": "tabserve_model_info"})
    assert namespaces == [NAMESPACE]
    selector = _grafana_to_promql(variables["model"].removeprefix("label_values(").split(", ")[0])
    models = prometheus.api("label/model/values", **{"match[]": selector})
    # `broken` is listed too: its version failed to load, and its info series (value 0)
    # is what lets a panel show it
    assert models == ["broken", "churn", "diabetes", "iris"]
