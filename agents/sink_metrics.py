"""Metrics of the Redis read-model sink, registered into a registry the caller owns."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

METRIC_NAMES = (
    "churnguard_sink_events_total",
    "churnguard_sink_errors_total",
    "churnguard_sink_lag_records",
    "churnguard_sink_redis_up",
)
"""The names exported (dashboards and alert rules are built on them)."""


@dataclass(frozen=True)
class SinkMetrics:
    """The read-model sink's counters and gauges."""

    events: Counter
    errors: Counter
    lag: Gauge
    redis_up: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SinkMetrics:
        """Register the sink's metrics in ``registry``."""
        return cls(
            events=Counter(
                "churnguard_sink_events_total",
                "Output events written to the Redis read model, by topic",
                ["topic"],
                registry=registry,
            ),
            errors=Counter(
                "churnguard_sink_errors_total",
                "Read-model sink errors by reason: redis (a write or connection failed and "
                "is retried), commit (an offset commit failed), and for skipped records the "
                "decode reason (not_json, not_object, missing_field, schema)",
                ["reason"],
                registry=registry,
            ),
            lag=Gauge(
                "churnguard_sink_lag_records",
                "Records on the broker not yet written to Redis (high-water mark - position)",
                ["topic", "partition"],
                registry=registry,
            ),
            redis_up=Gauge(
                "churnguard_sink_redis_up",
                "1 when the sink's last Redis write or ping succeeded, 0 during an outage",
                registry=registry,
            ),
        )
