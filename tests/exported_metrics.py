"""The metric names churnguard exports: the worker's registry and the read-model sink's names.

Shared by the tests that check that dashboards and alert rules only query metrics that exist.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

from prometheus_client import CollectorRegistry

# The read-model sink (`churnguard serve`, agents/sink_metrics.py) exports these; used until
# that module exists, then the names it lists are read from it.
SINK_METRICS = frozenset(
    {
        "churnguard_sink_events_total",
        "churnguard_sink_errors_total",
        "churnguard_sink_lag_records",
        "churnguard_sink_redis_up",
    }
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def registry_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` exposes, also for families that have no sample yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@cache
def worker_metric_names() -> frozenset[str]:
    """Names exported by a worker built as `churnguard worker` builds it (Faust's sensors too)."""
    from agents.cli import build_app
    from streams.settings import Settings

    app = build_app(Settings())
    metrics = app.churnguard_metrics  # type: ignore[attr-defined]
    return frozenset(registry_names(metrics.registry))


@cache
def sink_metric_names() -> frozenset[str]:
    """Names the read-model sink exports: those its module lists, or the agreed ones."""
    spec = importlib.util.find_spec("agents.sink_metrics")
    if spec is None or spec.origin is None:
        return SINK_METRICS
    source = Path(spec.origin).read_text()
    found = set(re.findall(r"[\"'](churnguard_sink_[a-z0-9_]+)[\"']", source))
    names: set[str] = set()
    for name in found:
        names.add(name)
        if not name.endswith("_total"):
            names.add(name + "_total")
        names.update(name + s for s in ("_bucket", "_count", "_sum", "_created"))
    return frozenset(names or SINK_METRICS)


def exported_metric_names() -> frozenset[str]:
    """Everything a dashboard or rule may query: worker, sink, and Prometheus' own ``up``."""
    return worker_metric_names() | sink_metric_names() | {"up", "scrape_duration_seconds"}
