"""End to end on a real broker: a real worker process, events in, alerts/tasks/dead letters out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.partitioning import partition_for
from tests.conftest import Outputs, Producer, Worker

pytestmark = pytest.mark.integration

Pipeline = tuple[Worker, Producer, Outputs]


def _ev(event_id: str, customer_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "occurred_at": at.isoformat(),
        **fields,
    }


def _login(eid: str, cid: str, at: datetime) -> dict[str, Any]:
    return _ev(eid, cid, at, user_id="u1", channel="web")


def _complaint(eid: str, cid: str, at: datetime) -> dict[str, Any]:
    return _ev(eid, cid, at, ticket_id=eid, kind="complaint", severity="high", status="opened")


def _now() -> datetime:
    return datetime.now(UTC)


def _for(customer_id: str, topic_suffix: str, rule: str | None = None):  # type: ignore[no-untyped-def]
    def match(topic: str, v: dict[str, Any]) -> bool:
        return (
            topic.endswith(topic_suffix)
            and v.get("customer_id") == customer_id
            and (rule is None or v.get("rule_id") == rule)
        )

    return match


async def test_inactivity_fires_from_the_sweep_without_new_input(
    pipeline: Pipeline, unique: str
) -> None:
    worker, producer, outputs = pipeline
    cid = f"quiet-{unique}"
    topics = worker.topics
    # the last login is 14 days minus 6 s ago: not inactive yet when it is processed
    last_login = _now() - timedelta(days=14) + timedelta(seconds=6)
    await producer.send(topics.name("logins"), _login(f"{cid}-1", cid, last_login), cid)
    await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] == 1)
    assert not outputs.matching(_for(cid, "alerts", "inactivity"))

    fired = await outputs.wait_for(_for(cid, "alerts", "inactivity"), timeout=60)
    alert = fired[0]
    assert alert["status"] == "firing"
    assert alert["evidence"] == {"days_since_last_login": 14}
    assert datetime.fromisoformat(alert["fired_at"]) == last_login + timedelta(days=14)
    tasks = await outputs.wait_for(_for(cid, "tasks", "inactivity"))
    assert tasks[0]["alert_id"] == alert["alert_id"]


def _same_partition(customer_id: str, partitions: int = 2) -> str:
    """Another customer id on the same partition (to move that partition's watermark)."""
    target = partition_for(customer_id, partitions)
    return next(
        f"{customer_id}-clock{i}"
        for i in range(1000)
        if partition_for(f"{customer_id}-clock{i}", partitions) == target
    )


async def test_complaint_spike_fires_then_resolves_when_the_watermark_moves(
    replay_pipeline: Pipeline, unique: str
) -> None:
    worker, producer, outputs = replay_pipeline
    cid = f"angry-{unique}"
    tickets = worker.topics.name("tickets")
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    for i in range(4):
        await producer.send(tickets, _complaint(f"{cid}-{i}", cid, start + timedelta(hours=i)), cid)
    alerts = await outputs.wait_for(_for(cid, "alerts", "complaint-spike"))
    assert alerts[0]["status"] == "firing"
    assert alerts[0]["evidence"]["complaints_7d"] == 3
    assert datetime.fromisoformat(alerts[0]["fired_at"]) == start + timedelta(hours=2)

    # No new input for this customer: another customer's event on the same partition moves
    # the watermark 10 days on, and the sweep ages the complaints out of the 7-day window.
    other = _same_partition(cid)
    later = start + timedelta(days=10)
    await producer.send(worker.topics.name("logins"), _login(f"{other}-1", other, later), other)
    alerts = await outputs.wait_for(_for(cid, "alerts", "complaint-spike"), count=2)
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    resolved_at = datetime.fromisoformat(alerts[1]["resolved_at"])
    assert start + timedelta(days=6) < resolved_at <= later
    tasks = await outputs.wait_for(_for(cid, "tasks", "complaint-spike"), count=2)
    assert [t["status"] for t in tasks] == ["open", "cancelled"]


async def test_key_contact_departure_creates_alert_and_task_for_owner(
    pipeline: Pipeline, unique: str
) -> None:
    worker, producer, outputs = pipeline
    cid = f"champ-{unique}"
    t0 = _now() - timedelta(hours=2)
    account = _ev(f"{cid}-a", cid, t0, name="Acme Ltd", owner="am-7", csm="csm-3")
    await producer.send(worker.topics.name("accounts"), account, cid)
    await worker.wait_customer(cid, lambda s: s["account"].get("owner") == "am-7")
    departed = _ev(
        f"{cid}-c", cid, t0 + timedelta(hours=1),
        contact_id="k1", name="Kim Park", is_key_contact=True, change="departed",
    )  # fmt: skip
    await producer.send(worker.topics.name("contacts"), departed, cid)

    alert = (await outputs.wait_for(_for(cid, "alerts", "key-contact-departed")))[0]
    assert alert["severity"] == "high"
    assert alert["summary"] == "Acme Ltd: key contact Kim Park left"
    task = (await outputs.wait_for(_for(cid, "tasks", "key-contact-departed")))[0]
    assert task["assignee"] == "am-7"
    assert task["assignee_role"] == "owner"
    assert task["cc"] == ["csm-3", "sales_director"]
    assert task["playbook"] == "relationship-rescue"
    due = datetime.fromisoformat(task["due_at"]) - datetime.fromisoformat(alert["fired_at"])
    assert due == timedelta(hours=24)
    headers = outputs.headers_of(_for(cid, "alerts", "key-contact-departed"))[0]
    assert headers["ce_type"] == b"churnguard.alert.firing"
    assert headers["ce_subject"] == cid.encode()


async def test_wrongly_keyed_event_is_rekeyed_and_counted_once(
    pipeline: Pipeline, unique: str
) -> None:
    worker, producer, _ = pipeline
    cid = f"rekey-{unique}"
    at = _now() - timedelta(hours=1)
    await producer.send(worker.topics.name("logins"), _login(f"{cid}-1", cid, at), "not-the-id")
    await producer.send(worker.topics.name("logins"), _login(f"{cid}-2", cid, at), None)
    snap = await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] == 2)
    assert snap["customer_id"] == cid
    metrics = await worker.metrics()
    assert 'outcome="rekeyed"' in metrics


async def test_duplicate_event_id_counts_once(pipeline: Pipeline, unique: str) -> None:
    worker, producer, _ = pipeline
    cid = f"dup-{unique}"
    at = _now() - timedelta(hours=1)
    for _ in range(3):
        await producer.send(worker.topics.name("logins"), _login(f"{cid}-same", cid, at), cid)
    await producer.send(worker.topics.name("logins"), _login(f"{cid}-other", cid, at), cid)
    snap = await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] >= 2)
    assert snap["features"]["logins_7d"] == 2


async def test_bad_input_goes_to_deadletter_and_valid_input_continues(
    pipeline: Pipeline, unique: str
) -> None:
    worker, producer, outputs = pipeline
    cid = f"bad-{unique}"
    logins = worker.topics.name("logins")
    at = _now() - timedelta(hours=1)
    await producer.send(logins, b"{not json", cid)
    await producer.send(logins, {**_login(f"{cid}-x", cid, at), "channel": "fax"}, cid)
    missing = _login(f"{cid}-y", cid, at)
    del missing["occurred_at"]
    await producer.send(logins, missing, cid)
    await producer.send(logins, _login(f"{cid}-z", cid, at + timedelta(days=400)), cid)
    await producer.send(logins, _login(f"{cid}-ok", cid, at), cid)

    letters = await outputs.wait_for(
        lambda t, v: t.endswith("deadletter") and v.get("key") == cid, count=4
    )
    reasons = sorted(v["reason"] for v in letters)
    assert reasons == ["missing_field", "not_json", "schema", "timestamp_out_of_range"]
    for letter in letters:
        assert letter["source_topic"] == logins
        assert letter["partition"] == partition_for(cid, 2)
        assert letter["error"]
    assert any(v["raw_value"] == "{not json" for v in letters)
    await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] == 1)
    assert worker.proc is not None and worker.proc.poll() is None
