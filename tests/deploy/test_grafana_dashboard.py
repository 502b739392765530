"""The Grafana dashboard: a well-formed model that Grafana can import anywhere.

Which metrics it queries is checked in test_metric_names.py; that each query runs and
returns data from a real Prometheus scraping a real server, in test_prometheus_e2e.py.
"""

from __future__ import annotations

import itertools
import re

from tests.deploy.support import dashboard, dashboard_panels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}


def test_dashboard_identity_and_variables() -> None:
    model = dashboard()
    assert model["uid"] == "tabserve"
    assert model["title"] == "tabserve"
    assert model["schemaVersion"] >= 36
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "model"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "model"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] is True
        assert variables[name]["allValue"] == ".*"


def test_panels_have_unique_ids_and_the_datasource_variable() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["expr"].strip()


def test_panels_fit_the_grid_without_overlapping() -> None:
    boxes = []
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((panel["title"], grid))
    for (one, a), (other, b) in itertools.combinations(boxes, 2):
        overlap_x = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
        overlap_y = a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
        assert not (overlap_x and overlap_y), f"{one!r} overlaps {other!r}"


def test_queries_use_only_defined_variables() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | GRAFANA_VARIABLES
    for panel in dashboard_panels():
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= defined, (panel["title"], used - defined)


def test_legends_name_only_labels_the_query_keeps() -> None:
    for panel in dashboard_panels():
        for target in panel["targets"]:
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            kept = set()
            for clause in re.findall(r"\bby\s*\(([^)]*)\)", target["expr"]):
                kept |= {label.strip() for label in clause.split(",")}
            assert legend <= kept, (panel["title"], target["expr"], legend - kept)


def test_latency_panels_show_the_three_quantiles() -> None:
    by_title = {p["title"]: p for p in dashboard_panels()}
    for title in ("Request latency p50 / p95 / p99", "gRPC call latency p50 / p95 / p99"):
        targets = by_title[title]["targets"]
        quantiles = [re.match(r"histogram_quantile\(([\d.]+),", t["expr"]) for t in targets]
        assert [float(q.group(1)) for q in quantiles if q] == [0.5, 0.95, 0.99], title
    inference = by_title["Inference latency by model and version (p50 / p99)"]
    for target in inference["targets"]:
        assert "by (model, version, le)" in target["expr"]
