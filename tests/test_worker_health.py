"""Readiness decisions and the alert metrics kept from the outputs (pure parts, no worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest

from agents.health import Readiness, decide_readiness
from agents.metrics import Metrics
from schemas import AlertEvent

NOW = datetime.now(UTC)


def _alert(status: str, **fields: Any) -> AlertEvent:
    return AlertEvent(
        alert_id="a-1",
        customer_id="c-1",
        rule_id="inactivity",
        severity="medium",
        status=status,
        summary="quiet",
        evidence={},
        fired_at=NOW - timedelta(hours=2),
        emitted_at=NOW,
        **fields,
    )


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_ready_only_when_recovered_assigned_and_reading() -> None:
    ready = decide_readiness(
        recovering=False, remaining=0, assigned=True, reading=True, partitions=[0, 2]
    )
    assert ready.ready
    assert ready.as_json() == {"ready": True, "partitions": [0, 2]}


def test_not_ready_says_why_recovery_first() -> None:
    recovering = decide_readiness(
        recovering=True, remaining=1234, assigned=False, reading=True, partitions=[]
    )
    assert not recovering.ready
    assert "1234 records remaining" in recovering.as_json()["reason"]
    rebalancing = decide_readiness(
        recovering=False, remaining=0, assigned=False, reading=True, partitions=[]
    )
    assert "rebalancing" in rebalancing.reason
    not_reading = decide_readiness(
        recovering=False, remaining=0, assigned=True, reading=False, partitions=[1]
    )
    assert not_reading.as_json() == {
        "ready": False,
        "partitions": [1],
        "reason": "the input reader has not started yet",
    }


def test_firing_then_resolved_leaves_nothing_firing_and_two_latencies() -> None:
    metrics = Metrics.create()
    metrics.observe_alert(_alert("firing"))
    labels = {"rule": "inactivity", "severity": "medium"}
    assert _sample(metrics, "churnguard_alerts_firing", **labels) == 1
    metrics.observe_alert(_alert("resolved", resolved_at=NOW - timedelta(seconds=3)))
    assert _sample(metrics, "churnguard_alerts_firing", **labels) == 0
    fired = "churnguard_alert_latency_seconds_bucket"
    # fired two hours before it was emitted; resolved 3 s before
    assert _sample(metrics, fired, status="firing", le="3600.0") == 0
    assert _sample(metrics, fired, status="firing", le="86400.0") == 1
    assert _sample(metrics, fired, status="resolved", le="2.5") == 0
    assert _sample(metrics, fired, status="resolved", le="5.0") == 1


def test_a_notice_is_neither_firing_nor_timed() -> None:
    metrics = Metrics.create()
    metrics.observe_alert(_alert("notice"))
    text = generate_latest(metrics.registry).decode()
    assert "churnguard_alerts_firing{" not in text
    assert "churnguard_alert_latency_seconds_count{" not in text


def test_worker_state_families_are_exported_before_a_worker_is_attached() -> None:
    text = generate_latest(Metrics.create().registry).decode()
    for name in (
        "churnguard_ready",
        "churnguard_partitions_assigned",
        "churnguard_recovering",
        "churnguard_recovery_remaining_records",
        "churnguard_table_customers",
    ):
        assert f"# TYPE {name} gauge" in text


def test_not_ready_while_the_broker_answers_no_fetch() -> None:
    def silent_for(seconds: float) -> Readiness:
        return decide_readiness(
            recovering=False,
            remaining=0,
            assigned=True,
            reading=True,
            partitions=[0, 1],
            broker_silent_s=seconds,
            broker_unreachable_s=15.0,
        )

    silent = silent_for(20.0)
    assert not silent.ready
    assert silent.reason.startswith("broker unreachable: no fetch answered for 20 s")
    assert silent_for(14.0).ready
