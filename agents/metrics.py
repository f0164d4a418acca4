"""churnguard's Prometheus metrics, in a registry owned by one app (no global state)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from schemas import AlertEvent

log = logging.getLogger("churnguard.metrics")

# From a live worker's sub-second latency up to a replay's days-old event times.
ALERT_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
SWEEP_BUCKETS = (1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class WorkerState(Protocol):
    """What the worker-state collector asks the running worker at each scrape."""

    def ready(self) -> bool:
        """True when partitions are assigned, the table recovered and input is read."""
        ...

    def owned(self) -> list[int]:
        """Partition numbers this worker processes now."""
        ...

    def recovering(self) -> bool:
        """True while Faust recovers the state table from its changelog."""
        ...

    def recovery_remaining(self) -> dict[int, int]:
        """Changelog records still to be read, per partition under recovery."""
        ...

    def table_customers(self) -> dict[int, int]:
        """Customers in the local state table, per partition."""
        ...


class WorkerStateCollector(Collector):
    """Readiness, assignment, recovery progress and table size, read at scrape time.

    Read at scrape time rather than kept up to date, because these values live in Faust and
    the table store; until a worker is attached the families are exported without samples.
    """

    def __init__(self) -> None:
        self.source: WorkerState | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        """The families, without samples (their names and help texts)."""
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families with the worker's current values."""
        ready, assigned, recovering, remaining, customers = self._families()
        source = self.source
        if source is not None:
            try:
                ready.add_metric([], 1.0 if source.ready() else 0.0)
                assigned.add_metric([], float(len(source.owned())))
                recovering.add_metric([], 1.0 if source.recovering() else 0.0)
                for partition, records in sorted(source.recovery_remaining().items()):
                    remaining.add_metric([str(partition)], float(records))
                for partition, count in sorted(source.table_customers().items()):
                    customers.add_metric([str(partition)], float(count))
            except Exception as exc:  # a scrape must still answer with the other metrics
                log.warning("worker_state_unreadable error=%r", exc)
        yield from (ready, assigned, recovering, remaining, customers)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "churnguard_ready",
                "1 when the worker is ready: partitions assigned, the state table recovered and "
                "the input reader running (the same check as /readyz), else 0",
            ),
            GaugeMetricFamily(
                "churnguard_partitions_assigned",
                "Partitions this worker processes now (0 while it rebalances or recovers)",
            ),
            GaugeMetricFamily(
                "churnguard_recovering",
                "1 while the worker recovers its state table from the changelog, else 0",
            ),
            GaugeMetricFamily(
                "churnguard_recovery_remaining_records",
                "Changelog records still to be read before the partition's state is recovered",
                labels=["partition"],
            ),
            GaugeMetricFamily(
                "churnguard_table_customers",
                "Customers in the local state table, per partition (RocksDB's key estimate)",
                labels=["partition"],
            ),
        )


@dataclass(frozen=True)
class Metrics:
    """Every churnguard metric; Faust's own sensors live in the same registry."""

    registry: CollectorRegistry
    events: Counter
    deadletter: Counter
    late_events: Counter
    alignment_timeouts: Counter
    alerts: Counter
    tasks: Counter
    rule_eval_seconds: Histogram
    engine_seconds: Counter
    rule_errors: Counter
    flush_seconds: Histogram
    flushed_states: Counter
    sweep_due: Counter
    scheduled_customers: Gauge
    snapshots: Counter
    tiers_changed: Counter
    rfm_customers: Gauge
    rfm_cut_points_age: Gauge
    consumer_lag: Gauge
    alert_latency: Histogram
    alerts_firing: Gauge
    sweep_seconds: Histogram
    worker_state: WorkerStateCollector

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Register all metrics in ``registry`` (a new one by default)."""
        reg = registry or CollectorRegistry()
        worker_state = WorkerStateCollector()
        reg.register(worker_state)
        return cls(
            registry=reg,
            events=Counter(
                "churnguard_events_total",
                "Input events by topic and outcome (applied, duplicate, rekeyed, deadletter)",
                ["topic", "outcome"],
                registry=reg,
            ),
            deadletter=Counter(
                "churnguard_deadletter_total",
                "Events sent to the dead-letter topic, by reason",
                ["reason"],
                registry=reg,
            ),
            late_events=Counter(
                "churnguard_late_events_total",
                "Events older than their partition's watermark (max event time seen minus the "
                "allowed lateness): state is updated, but they are evaluated at the watermark",
                ["topic"],
                registry=reg,
            ),
            alignment_timeouts=Counter(
                "churnguard_alignment_timeouts_total",
                "Times an input topic with unread data on the broker but nothing fetched stopped "
                "holding its partition back after CHURNGUARD_MAX_IDLE_MS (its older data, when "
                "it comes, is late)",
                ["topic"],
                registry=reg,
            ),
            alerts=Counter(
                "churnguard_alerts_total",
                "Alert lifecycle events emitted",
                ["rule", "severity", "status"],
                registry=reg,
            ),
            tasks=Counter(
                "churnguard_tasks_total",
                "Task events emitted, by assignee role and status",
                ["role", "status"],
                registry=reg,
            ),
            rule_eval_seconds=Histogram(
                "churnguard_rule_evaluation_seconds",
                "Time to evaluate all rules for one customer at one point in time",
                buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025),
                registry=reg,
            ),
            engine_seconds=Counter(
                "churnguard_engine_seconds_total",
                "Time spent in the pure engine: state update, rule evaluation and lifecycle, "
                "next deadlines (compare with process CPU time to see the engine's share)",
                registry=reg,
            ),
            rule_errors=Counter(
                "churnguard_rule_errors_total",
                "Rule evaluations that raised (type errors in CEL at run time)",
                ["rule"],
                registry=reg,
            ),
            flush_seconds=Histogram(
                "churnguard_flush_seconds",
                "Time to write a partition's dirty states and hand them, their changelog records "
                "and the outputs to the producer (the wait for acknowledgements runs beside it)",
                registry=reg,
            ),
            flushed_states=Counter(
                "churnguard_flushed_states_total",
                "Customer states written to the table (once per customer per flush)",
                registry=reg,
            ),
            sweep_due=Counter(
                "churnguard_sweep_due_total",
                "Customers touched by sweeps because a deadline fell due",
                registry=reg,
            ),
            scheduled_customers=Gauge(
                "churnguard_scheduled_customers",
                "Customers with a pending deadline, per partition",
                ["partition"],
                registry=reg,
            ),
            snapshots=Counter(
                "churnguard_health_snapshots_total",
                "Customer-health snapshots published, by event (snapshot, tier_changed)",
                ["event"],
                registry=reg,
            ),
            tiers_changed=Counter(
                "churnguard_tier_changes_total",
                "Tier changes, by old and new tier",
                ["from_tier", "to_tier"],
                registry=reg,
            ),
            rfm_customers=Gauge(
                "churnguard_rfm_population_customers",
                "Customers with orders in the merged RFM sketch behind the cut points in use",
                registry=reg,
            ),
            rfm_cut_points_age=Gauge(
                "churnguard_rfm_cut_points_as_of_seconds",
                "Event time (epoch seconds) of the newest partition summary in the cut points",
                registry=reg,
            ),
            consumer_lag=Gauge(
                "churnguard_consumer_lag_records",
                "Input records on the broker not yet fetched: high-water mark minus the "
                "reader's position, per input topic partition",
                ["topic", "partition"],
                registry=reg,
            ),
            alert_latency=Histogram(
                "churnguard_alert_latency_seconds",
                "Wall time at emit minus the alert's event time (fired_at for firing, "
                "resolved_at for resolved): how long after the event an alert leaves",
                ["status"],
                buckets=ALERT_LATENCY_BUCKETS,
                registry=reg,
            ),
            alerts_firing=Gauge(
                "churnguard_alerts_firing",
                "Alerts firing, kept from this process's outputs (+1 firing, -1 resolved since "
                "it started): sum over all workers; a worker's own value can go below 0 when "
                "it resolves alerts another worker (or an earlier run) fired",
                ["rule", "severity"],
                registry=reg,
            ),
            sweep_seconds=Histogram(
                "churnguard_sweep_seconds",
                "Time to advance one partition's due customers in a sweep",
                buckets=SWEEP_BUCKETS,
                registry=reg,
            ),
            worker_state=worker_state,
        )

    def observe_alert(self, alert: AlertEvent) -> None:
        """Count an emitted alert event in the latency histogram and the firing gauge.

        The latency is the alert's emission wall time minus the event time it fired or
        resolved at, so the figure does not depend on when this method runs.
        """
        if alert.status == "firing":
            event_time = alert.fired_at
            self.alerts_firing.labels(alert.rule_id, alert.severity).inc()
        elif alert.status == "resolved" and alert.resolved_at is not None:
            event_time = alert.resolved_at
            self.alerts_firing.labels(alert.rule_id, alert.severity).dec()
        else:  # a notice has no lifecycle
            return
        self.alert_latency.labels(alert.status).observe(
            max(0.0, (alert.emitted_at - event_time).total_seconds())
        )
