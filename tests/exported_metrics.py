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


PROMQL_KEYWORDS = frozenset(
    {
        "by", "without", "on", "ignoring", "group_left", "group_right",
        "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
    }
)  # fmt: skip
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_NUMBER_LIKE = re.compile(r"^(0x[0-9a-f]+|\d.*|[0-9.]+e[0-9]+)$", re.IGNORECASE)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out).

    Grafana variables (``$__rate_interval``, ``${instance}``) are dropped first.
    """
    text = _VARIABLES.sub(" ", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS or _NUMBER_LIKE.match(name):
            continue
        names.add(name)
    return names
