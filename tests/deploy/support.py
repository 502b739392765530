"""Helpers shared by the deployment tests: paths, processes and the requests they send."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
OUT_OF_RANGE_ROW = [50.0, 3.0, 5.2, 2.3]  # sepal length far above the training maximum (7.9)
WORKERS = 2


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it dies first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise RuntimeError(f"{process.args} exited {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {seconds} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def exercise(client: httpx.Client | TestClient) -> None:
    """One request of each kind that makes a series appear: served, refused, out of range."""
    predict = "/v1/models/iris:predict"
    assert client.post(predict, json={"instances": [IRIS_ROW]}).status_code == 200
    assert client.post(predict, json={"instances": [OUT_OF_RANGE_ROW]}).status_code == 200
    assert client.post(predict, json={"instances": [[1.0, "x", 2.0, 3.0]]}).status_code == 400
    assert client.post("/v1/models/broken:predict", json={"instances": [IRIS_ROW]}).status_code == (
        503
    )


def wait_until_every_worker_loaded(url: str, seconds: float = 60) -> None:
    """The supervisor loads the models once before forking the workers: wait for that."""
    expected = 'tabserve_model_load_failures_total{model="broken"} 1.0'
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if expected in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
            return
        time.sleep(0.1)
    raise RuntimeError(f"not every worker loaded its models within {seconds} s")


@dataclass
class Served:
    """A running `tabserve serve` process on loopback."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path
    grpc_port: int


# --- PromQL in the dashboard and the rules ---------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "tabserve.json"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.rules.yml"))
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
# Series Prometheus makes itself rather than scrapes from the service.
PROMETHEUS_OWN = frozenset({"up"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, grouping
    clauses and function names are not metric names)."""
    if "__name__" in expr:
        raise ValueError(f"select metrics by name, not with __name__: {expr}")
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """Panels that draw something (rows hold no queries)."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: panel targets, then variable queries."""
    queries = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
        assert found, variable["query"]
        queries.append(found.group(1))
    return queries


def rules() -> list[dict[str, Any]]:
    """Every rule of every rule file, alerts and recording rules."""
    groups = [g for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    """Series the recording rules make (queried by alerts and the dashboard)."""
    return {rule["record"] for rule in rules() if "record" in rule}


def sanitized(name: str) -> str:
    """A Kubernetes label or annotation name as a Prometheus meta label suffix."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_meta_labels(namespace: str, port: int) -> dict[str, str]:
    """What Kubernetes pod discovery attaches to a pod of the base Deployment.

    Labels and annotations come from the manifests (the pod template plus the labels
    kustomize adds); only the port annotation is changed, to where the test server listens.
    """
    base = DEPLOY / "kubernetes" / "base"
    deployment = yaml.safe_load((base / "deployment.yaml").read_text())
    template = deployment["spec"]["template"]["metadata"]
    labels = dict(template["labels"])
    for entry in yaml.safe_load((base / "kustomization.yaml").read_text()).get("labels", []):
        labels.update(entry["pairs"])
    annotations = {**template["annotations"], "prometheus.io/port": str(port)}
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": "tabserve-0"}
    meta |= {f"__meta_kubernetes_pod_label_{sanitized(k)}": v for k, v in labels.items()}
    meta |= {f"__meta_kubernetes_pod_annotation_{sanitized(k)}": v for k, v in annotations.items()}
    return meta


def local_prometheus_config(
    targets: list[tuple[str, dict[str, str]]], interval: str = "15s"
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with Kubernetes pod discovery (which Debian's
    Prometheus lacks and which needs an API server) replaced by static targets that carry
    the same meta labels; its relabelling rules and rule files are kept as they are."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(PROMETHEUS_YML.parent / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert list(job["kubernetes_sd_configs"]) == [{"role": "pod"}]
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [
        {"targets": [address], "labels": labels} for address, labels in targets
    ]
    return config
