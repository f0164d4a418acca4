"""The provisioned Grafana dashboards: valid JSON for the current schema, wired to the
provisioned data source, and querying only metrics that churnguard exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.exported_metrics import exported_metric_names, promql_metric_names

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SCHEMA_VERSION = 39  # Grafana 11's dashboard schema (the image pinned in docker-compose.yml)
LABEL_VALUES = re.compile(r"label_values\(\s*([^,)]+?)\s*,\s*\w+\s*\)")


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            definition = variable.get("definition", "")
            match = LABEL_VALUES.fullmatch(definition.strip())
            yield f"variable {variable['name']!r}", match.group(1) if match else definition


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _datasource_uid() -> str:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_there_is_an_sre_and_a_customer_success_dashboard() -> None:
    titles = {_load(path)["title"] for path in DASHBOARDS}
    assert titles == {"churnguard — pipeline health", "churnguard — customer success"}
    uids = [_load(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_current_and_uses_the_provisioned_datasource(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns ids
    uid = _datasource_uid()
    panels = [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_only_metrics_churnguard_exports(path: Path) -> None:
    exported = exported_metric_names()
    queries = list(_queries(_load(path)))
    assert queries
    for where, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{path.name} {where}: no metric in {expr!r}"
        assert names <= exported, f"{path.name} {where}: not exported: {names - exported}"


def test_the_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/churnguard.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
