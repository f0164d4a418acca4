"""churnguard's Prometheus metrics, in a registry owned by one app (no global state)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Register all metrics in ``registry`` (a new one by default)."""
        reg = registry or CollectorRegistry()
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
        )
