"""Kubernetes manifests: kustomize builds them, the API schemas accept them strictly,
and they agree with the image and the service (ports, probes, user, settings)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.grpc.settings import GrpcSettings
from tabserve.service.settings import Settings
from tests.deploy.support import DEPLOY, REPO

KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
PRODUCTION = KUBERNETES / "overlays" / "production"
FOLDERS = [BASE, PRODUCTION]
# The oldest Kubernetes still commonly run, and the newest the validator knows.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Seconds the server may spend finishing in-flight requests after SIGTERM: requests are
# bounded by TABSERVE_MAX_ROWS and take well under a second on the default model.
DRAIN_SECONDS = 20

Resource = dict[str, Any]


def load(path: Path) -> list[Resource]:
    """The YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")


def build(folder: Path) -> list[Resource]:
    """`kubectl kustomize folder`, parsed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(resources: list[Resource], kind: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(deployment: Resource) -> Resource:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def validate(resource: Resource, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return build(BASE)


@pytest.fixture(scope="module")
def production() -> list[Resource]:
    return build(PRODUCTION)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_kustomization_lists_every_manifest_and_each_exists(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    for entry in listed:
        target = (folder / entry).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), entry
    files = {p.name for p in manifest_files(folder)}
    assert files == {e for e in listed if not e.startswith("..")}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "path", [p for f in FOLDERS for p in manifest_files(f)], ids=lambda p: p.name
)
def test_each_manifest_file_validates_strictly(path: Path, version: str) -> None:
    for resource in load(path):
        if (resource["apiVersion"], resource["kind"]) in CRDS:
            continue
        validate(resource, version)


def test_strict_validation_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one(load(BASE / "deployment.yaml"), "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0].pop("livenessProbe")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = probe
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        validate(deployment, VERSIONS[-1])


@pytest.mark.parametrize("version", VERSIONS)
def test_kustomize_output_validates_strictly(
    base: list[Resource], production: list[Resource], version: str
) -> None:
    kinds = {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert {r["kind"] for r in base} == kinds
    assert {r["kind"] for r in production} == kinds | {"Namespace", "ServiceMonitor"}
    for resource in [*base, *production]:
        if (resource["apiVersion"], resource["kind"]) not in CRDS:
            validate(resource, version)


def test_production_puts_everything_in_its_namespace(production: list[Resource]) -> None:
    namespace = one(production, "Namespace")["metadata"]["name"]
    assert namespace == "tabserve"
    for resource in production:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["kind"]


def test_servicemonitor_selects_the_service_and_scrapes_its_metrics_port(
    production: list[Resource],
) -> None:
    monitor = one(production, "ServiceMonitor")
    service = one(production, "Service")
    deployment = one(production, "Deployment")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # Prometheus Operator names the job after the Service: the alert rules expect "tabserve".
    assert service["metadata"]["name"] == "tabserve"
    assert "jobLabel" not in spec
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    target = ports[endpoint["port"]]["targetPort"]
    container_ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert target in container_ports
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    assert _seconds(endpoint["scrapeTimeout"]) < _seconds(endpoint["interval"])


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([sm])", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_selectors_all_pick_the_deployments_pods(base: list[Resource]) -> None:
    deployment = one(base, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert one(base, "Service")["spec"]["selector"].items() <= pod_labels
    assert one(base, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels
    hpa = one(base, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    # The autoscaler owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert one(base, "PodDisruptionBudget")["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(deployment)["resources"]["requests"]  # utilisation is of requests


def test_ports_agree_with_the_image_and_the_scrape_annotations(base: list[Resource]) -> None:
    deployment = one(base, "Deployment")
    main = container(deployment)
    # the image's ENTRYPOINT/CMD runs
    assert "args" not in main
    assert "command" not in main
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 8000 8081$", dockerfile, re.M)
    assert re.search(
        r'^CMD \["serve", "--host", "0\.0\.0\.0", "--port", "8000"\]$', dockerfile, re.M
    )
    assert main["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    settings = one(base, "ConfigMap")["data"]
    assert settings["TABSERVE_GRPC_PORT"] == str(GrpcSettings.model_fields["port"].default)
    service_ports = {p["name"]: p["targetPort"] for p in one(base, "Service")["spec"]["ports"]}
    assert service_ports == {"http": "http", "grpc": "grpc"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }


def test_probes_call_the_health_routes_and_they_answer(
    base: list[Resource], models_dir: Path
) -> None:
    main = container(one(base, "Deployment"))
    paths = {
        name: main[name]["httpGet"]["path"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/v2/health/live",
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    assert {main[name]["httpGet"]["port"] for name in paths} == {"http"}
    with TestClient(create_app(Settings(models_dir=models_dir))) as client:
        for path in set(paths.values()):
            assert client.get(path).status_code == 200, path
    # model loading happens before the server listens: the startup probe must allow for it
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_pod_runs_unprivileged_as_the_images_user_with_only_tmp_writable(
    base: list[Resource],
) -> None:
    deployment = one(base, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsGroup"] == int(user.group(2))
    assert pod["automountServiceAccountToken"] is False
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"}
    assert "emptyDir" in volumes["tmp"]
    resources = container(deployment)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def _environment(base: list[Resource]) -> dict[str, str]:
    deployment = one(base, "Deployment")
    (source,) = container(deployment)["envFrom"]
    config = one(base, "ConfigMap")
    assert source["configMapRef"]["name"] == config["metadata"]["name"]
    return dict(config["data"])


def test_configmap_holds_real_settings_with_valid_values(
    base: list[Resource], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = _environment(base)
    fields = set(Settings.environment_names())
    settings_keys = {k for k in environment if k.startswith("TABSERVE_")}
    assert settings_keys <= fields, settings_keys - fields
    assert set(environment) - settings_keys == {"PROMETHEUS_MULTIPROC_DIR"}
    for key in fields:
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # pydantic refuses a value of the wrong type or range
    assert settings.workers == 2
    assert str(settings.models_dir) == "/models"
    assert re.search(r"^\s+TABSERVE_MODELS_DIR=/models", (REPO / "Dockerfile").read_text(), re.M)
    assert settings.log_format == "json"


def test_multiprocess_metrics_dir_is_set_with_several_workers_and_is_writable(
    base: list[Resource],
) -> None:
    environment = _environment(base)
    several = int(environment["TABSERVE_WORKERS"]) > 1
    # With one worker the folder would never be cleaned (stale counters of an earlier
    # container would be summed in); with several, each worker must write there.
    assert ("PROMETHEUS_MULTIPROC_DIR" in environment) is several
    mounts = [m["mountPath"] for m in container(one(base, "Deployment"))["volumeMounts"]]
    folder = Path(environment["PROMETHEUS_MULTIPROC_DIR"])
    assert any(folder.is_relative_to(mount) for mount in mounts)


def test_grace_period_covers_the_prestop_pause_and_the_drain(base: list[Resource]) -> None:
    deployment = one(base, "Deployment")
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = int(pre_stop[1])
    assert 0 < pause <= 10
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= (
        pause + DRAIN_SECONDS
    )


def test_image_tag_is_the_projects_version(
    base: list[Resource], production: list[Resource]
) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for built in (base, production):
        assert container(one(built, "Deployment"))["image"] == f"tabserve:{version}"
