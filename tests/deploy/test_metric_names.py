"""Every metric the dashboard and the alert rules query is one the service really exports.

The names are compared with the sample names of a real app's exposition after a few
requests (`tabserve_http_requests_total`, `..._bucket`, ...), exactly as Prometheus
stores them: a query for `tabserve_http_requests` (no `_total`) would find nothing.
"""

from __future__ import annotations

import pytest

from tests.deploy.support import (
    PROMETHEUS_OWN,
    dashboard_queries,
    metric_names,
    recorded_names,
    rules,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="tabserve"} == 0', {"up"}),
        (
            'sum by (namespace, job) (rate(a_total{status=~"5..", route!~"/v2/.*|/metrics"}[5m]))'
            " / sum by (namespace, job) (rate(a_total[5m])) > 0.05",
            {"a_total"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{x="a{b}"}[$__rate_interval])))',
            {"lat_bucket"},
        ),
        ("(sum(rate(e_total[1m])) or vector(0)) / sum(rate(r_total[1m]))", {"e_total", "r_total"}),
        (
            "sum(rate(s_sum[5m])) without (pod) / on (model) group_left sum(c_count)",
            {"s_sum", "c_count"},
        ),
        ("resets(m_total[15m]) > 2 and m_total offset 1h > 1e3", {"m_total"}),
        ('label_replace(info, "dst", "$1", "src", "(.*)")', {"info"}),
        ('count_values("version", build_info) unless on() absent(x)', {"build_info", "x"}),
        ("rate(rows_total[5m:30s]) * 60", {"rows_total"}),
        ("level:metric:rate5m > bool 0", {"level:metric:rate5m"}),
    ],
)
def test_metric_names_are_extracted_exactly(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_selecting_by_name_label_is_refused() -> None:
    with pytest.raises(ValueError, match="__name__"):
        metric_names('{__name__=~"tabserve_.*"}')


def test_exposition_has_the_suffixed_sample_names(exported_names: frozenset[str]) -> None:
    assert {
        "tabserve_http_requests_total",
        "tabserve_http_request_duration_seconds_bucket",
        "tabserve_model_load_failures_total",
        "tabserve_validation_errors_total",
    } <= exported_names
    assert "tabserve_http_requests" not in exported_names


def test_dashboard_queries_only_exported_metrics(exported_names: frozenset[str]) -> None:
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert used, "the dashboard queries nothing"
    assert used - exported_names - recorded_names() == set()


def test_dashboard_shows_every_series_an_operator_needs() -> None:
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert used >= {
        "tabserve_http_requests_total",
        "tabserve_http_request_duration_seconds_bucket",
        "tabserve_http_requests_in_flight",
        "tabserve_inference_duration_seconds_bucket",
        "tabserve_inference_rows_total",
        "tabserve_inference_batch_rows_sum",
        "tabserve_inference_batch_rows_count",
        "tabserve_inference_batch_rows_bucket",
        "tabserve_predictions_total",
        "tabserve_model_info",
        "tabserve_model_load_failures_total",
        "tabserve_out_of_range_values_total",
        "tabserve_validation_errors_total",
        "tabserve_grpc_requests_total",
        "tabserve_grpc_request_duration_seconds_bucket",
    }


def test_rules_query_only_exported_or_recorded_metrics(exported_names: frozenset[str]) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert used, "the rules query nothing"
    assert used - exported_names - PROMETHEUS_OWN - recorded_names() == set()
    assert used & PROMETHEUS_OWN == {"up"}
    # every recorded series is used by an alert or the dashboard, or feeds another rule
    dashboard = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert recorded_names() <= used | dashboard
