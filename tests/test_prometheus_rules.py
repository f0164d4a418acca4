"""The SRE alert rules: valid for promtool, unit-tested firing and not, documented, and built
only on metrics that churnguard exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.exported_metrics import exported_metric_names, promql_metric_names

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules" / "churnguard.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "churnguard_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool: install Debian's `prometheus` package (.ci/run does)")
    return subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_waits_has_a_severity_and_says_what_to_do() -> None:
    alerts = _alerts()
    assert len(alerts) >= 6
    headings = {
        _anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for:` (a single bad scrape would page)"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower() and anchor in headings, f"{name}: no runbook heading"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for rule in _alerts():
        assert cases.get(rule["alert"]) == {True, False}, rule["alert"]


def test_the_rules_query_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for rule in _alerts():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: not exported: {names - exported}"


def test_the_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        'sum by (topic, le) (rate(churnguard_x_bucket{topic=~"crm.*"}[$__rate_interval])) '
        "/ ignoring (le) group_left (topic) churnguard_y or vector(0) and on () up == 1e3"
    )
    assert promql_metric_names(expr) == {"churnguard_x_bucket", "churnguard_y", "up"}
