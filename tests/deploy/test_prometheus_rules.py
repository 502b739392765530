"""Alert rules and the scrape config, checked and unit-tested by promtool.

`deploy/prometheus/tests/*.yml` are promtool's rule unit tests; here they run, and
every alert must have a case where it fires and one where it stays quiet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    DEPLOY,
    REPO,
    RULE_FILES,
    alert_rules,
    local_prometheus_config,
    pod_meta_labels,
    rules,
)

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
UNIT_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_rules_pass_promtool_check(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(path.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_scrape_config_passes_promtool_check_and_finds_the_rules(tmp_path: Path) -> None:
    config = local_prometheus_config([("10.0.0.7:8000", pod_meta_labels("ml", 8000))])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    assert UNIT_TESTS
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_every_alert_is_tested_firing_and_quiet(alert: str) -> None:
    cases = [case for case in _alert_cases() if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"no test where {alert} fires"
    assert any(not case["exp_alerts"] for case in cases), f"no test where {alert} is quiet"


def test_every_alert_has_severity_summary_and_description() -> None:
    alerts = alert_rules()
    assert len(alerts) == len({rule["alert"] for rule in alerts}) == 12
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_recording_rules_are_named_level_metric_operations() -> None:
    recorded = [rule["record"] for rule in rules() if "record" in rule]
    assert recorded
    assert len(recorded) == len(set(recorded))
    for name in recorded:
        assert re.fullmatch(r"tabserve:[a-z_]+:[a-z0-9_]+", name), name


def test_readme_explains_every_alert() -> None:
    readme = (REPO / "README.md").read_text().split("\n## Operate it\n", 1)[1]
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in readme, rule["alert"]
