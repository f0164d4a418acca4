"""The alert lifecycle end to end on a real broker and a real worker (replay clock).

One worker runs a small test pack; each scenario is a customer whose account `segment`
selects the rule under test (`applies_to`). Scenarios use increasing event times and wait for
each event to be applied before sending the next, because events on different topics have no
order between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.partitioning import partition_for
from tests.conftest import Broker, Outputs, Producer, Worker, _pipeline

pytestmark = pytest.mark.integration

Pipeline = tuple[Worker, Producer, Outputs]
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

PACK = """\
- id: piling
  applies_to: segment == 'pending'
  when: open_tickets >= 2
  for: 2h
  severity: medium
  summary: "{{ name }}: {{ open_tickets }} open tickets"
  task: {assignee: csm, due: 4h}

- id: critical
  applies_to: segment == 'cooldown'
  when: open_critical_tickets > 0
  cooldown: 1d
  severity: high
  summary: "{{ name }}: critical ticket open"

- id: needs-care
  applies_to: segment in ['snooze', 'escalate', 'inhibit']
  when: open_tickets >= 1
  severity: medium
  summary: "{{ name }} needs care"
  task: {assignee: csm, cc: [owner], due: 1h, escalate_after: 3h}

- id: on-fire
  applies_to: segment == 'inhibit'
  when: open_critical_tickets > 0
  inhibits: [needs-care]
  severity: critical
  summary: "{{ name }} is on fire"
"""


@pytest.fixture(scope="module")
async def lifecycle(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    pack = tmp_path_factory.mktemp("pack") / "lifecycle.yaml"
    pack.write_text(PACK, encoding="utf-8")
    env = {"CHURNGUARD_CLOCK": "event", "CHURNGUARD_RULE_PACKS": orjson.dumps([str(pack)]).decode()}
    async for parts in _pipeline(broker, tmp_path_factory, env):
        yield parts


class Scenario:
    """One customer driven step by step: each event is applied before the next is sent."""

    def __init__(self, parts: Pipeline, cid: str, start: datetime) -> None:
        self.worker, self.producer, self.outputs = parts
        self.cid = cid
        self.start = start
        self.seq = 0

    def at(self, **delta: float) -> datetime:
        return self.start + timedelta(**delta)

    async def send(self, topic: str, when: datetime, **fields: Any) -> None:
        self.seq += 1
        event = {
            "event_id": f"{self.cid}-{self.seq}",
            "customer_id": self.cid,
            "occurred_at": when.isoformat(),
            **fields,
        }
        await self.producer.send(self.worker.topics.name(topic), event, self.cid)
        stamp = when.timestamp()
        await self.worker.wait_customer(self.cid, lambda s: s["as_of"] >= stamp)

    async def account(self, segment: str) -> None:
        await self.send(
            "accounts",
            self.start,
            name=f"Acme {segment}",
            owner="am-7",
            csm="csm-3",
            segment=segment,
        )

    async def ticket(
        self, when: datetime, ticket_id: str, status: str, severity: str = "low"
    ) -> None:
        await self.send(
            "tickets", when, ticket_id=ticket_id, kind="incident", severity=severity, status=status
        )

    async def tick(self, when: datetime) -> None:
        """An event that changes nothing but the customer's time (closing an unknown ticket)."""
        await self.ticket(when, f"noop-{self.seq}", "closed")

    async def task_update(self, when: datetime, task_id: str, status: str, **fields: Any) -> None:
        await self.send("task_updates", when, task_id=task_id, status=status, **fields)

    def _of(self, topic: str, rule: str) -> Callable[[str, dict[str, Any]], bool]:
        def match(t: str, v: dict[str, Any]) -> bool:
            return t.endswith(topic) and v["customer_id"] == self.cid and v["rule_id"] == rule

        return match

    def alerts(self, rule: str) -> list[dict[str, Any]]:
        return self.outputs.matching(self._of(".alerts", rule))

    def tasks(self, rule: str) -> list[dict[str, Any]]:
        return self.outputs.matching(self._of(".tasks", rule))

    async def wait_alerts(self, rule: str, count: int) -> list[dict[str, Any]]:
        return await self.outputs.wait_for(self._of(".alerts", rule), count=count)

    async def wait_tasks(self, rule: str, count: int) -> list[dict[str, Any]]:
        return await self.outputs.wait_for(self._of(".tasks", rule), count=count)

    async def settle(self) -> None:
        """Read every output produced so far (outputs are sent before events are acked)."""
        for _ in range(5):
            await self.outputs.poll()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_pending_then_firing_then_resolved_cancels_the_task(
    lifecycle: Pipeline, unique: str
) -> None:
    s = Scenario(lifecycle, f"pending-{unique}", BASE)
    await s.account("pending")
    await s.ticket(s.at(minutes=1), "t1", "opened")
    await s.ticket(s.at(minutes=2), "t2", "opened")  # `when` holds from here: pending
    await s.tick(s.at(hours=1))
    await s.settle()
    assert s.alerts("piling") == []  # pending for 1 h of the 2 h `for`

    await s.tick(s.at(hours=3))
    [firing] = await s.wait_alerts("piling", 1)
    assert firing["status"] == "firing"
    assert _time(firing["fired_at"]) == s.at(minutes=2, hours=2)  # exactly when `for` elapsed
    [task] = await s.wait_tasks("piling", 1)
    assert (task["status"], task["assignee"]) == ("open", "csm-3")

    await s.ticket(s.at(hours=4), "t1", "resolved")
    alerts = await s.wait_alerts("piling", 2)
    resolved = alerts[1]
    assert (resolved["status"], resolved["resolution"]) == ("resolved", "cleared")
    assert resolved["alert_id"] == firing["alert_id"]
    assert _time(resolved["resolved_at"]) == s.at(hours=4)
    tasks = await s.wait_tasks("piling", 2)
    assert (tasks[1]["task_id"], tasks[1]["status"]) == (task["task_id"], "cancelled")


async def test_cooldown_holds_back_a_refire_until_it_ends(lifecycle: Pipeline, unique: str) -> None:
    s = Scenario(lifecycle, f"cooldown-{unique}", BASE + timedelta(days=10))
    await s.account("cooldown")
    await s.ticket(s.at(minutes=1), "c1", "opened", severity="critical")
    await s.ticket(s.at(hours=1), "c1", "resolved")
    await s.ticket(s.at(hours=2), "c2", "opened", severity="critical")  # within the 1 d cooldown
    await s.settle()
    assert [a["status"] for a in s.alerts("critical")] == ["firing", "resolved"]

    await s.tick(s.at(days=1, hours=6))
    alerts = await s.wait_alerts("critical", 3)
    assert alerts[2]["status"] == "firing"
    assert _time(alerts[2]["fired_at"]) == s.at(days=1, minutes=1)  # the cooldown's end
    assert alerts[2]["alert_id"] != alerts[0]["alert_id"]


async def test_dismissed_with_snooze_suppresses_the_alert_until_then(
    lifecycle: Pipeline, unique: str
) -> None:
    s = Scenario(lifecycle, f"snooze-{unique}", BASE + timedelta(days=20))
    await s.account("snooze")
    await s.ticket(s.at(minutes=1), "s1", "opened")
    [task] = await s.wait_tasks("needs-care", 1)
    until = s.at(days=2)
    await s.task_update(s.at(hours=1), task["task_id"], "dismissed", snooze_until=until.isoformat())
    alerts = await s.wait_alerts("needs-care", 2)
    assert (alerts[1]["status"], alerts[1]["resolution"]) == ("resolved", "snoozed")
    assert _time(alerts[1]["resolved_at"]) == s.at(hours=1)

    await s.tick(s.at(days=1))  # the ticket is still open, but the alert is snoozed
    await s.settle()
    assert len(s.alerts("needs-care")) == 2
    assert len(s.tasks("needs-care")) == 1  # a dismissed task is not cancelled again

    await s.tick(s.at(days=2, hours=1))
    alerts = await s.wait_alerts("needs-care", 3)
    assert alerts[2]["status"] == "firing"
    assert _time(alerts[2]["fired_at"]) == until


async def test_unacknowledged_task_escalates_to_the_cc_role(
    lifecycle: Pipeline, unique: str
) -> None:
    s = Scenario(lifecycle, f"escalate-{unique}", BASE + timedelta(days=30))
    await s.account("escalate")
    await s.ticket(s.at(minutes=1), "e1", "opened")
    [task] = await s.wait_tasks("needs-care", 1)
    await s.tick(s.at(hours=4))
    tasks = await s.wait_tasks("needs-care", 2)
    escalation = tasks[1]
    assert escalation["status"] == "escalated"
    assert escalation["escalation_of"] == task["task_id"]
    assert (escalation["assignee"], escalation["assignee_role"]) == ("am-7", "owner")
    assert escalation["cc"] == ["csm-3"]
    assert _time(escalation["due_at"]) == s.at(minutes=1, hours=4)  # escalated at +3 h, due 1 h

    # done closes the escalation; resolving the alert then cancels only the original task
    await s.task_update(s.at(hours=5), escalation["task_id"], "done")
    await s.ticket(s.at(hours=6), "e1", "resolved")
    tasks = await s.wait_tasks("needs-care", 3)
    assert [(t["task_id"], t["status"]) for t in tasks[2:]] == [(task["task_id"], "cancelled")]


async def test_acknowledged_task_does_not_escalate(lifecycle: Pipeline, unique: str) -> None:
    s = Scenario(lifecycle, f"ack-{unique}", BASE + timedelta(days=40))
    await s.account("escalate")
    await s.ticket(s.at(minutes=1), "a1", "opened")
    [task] = await s.wait_tasks("needs-care", 1)
    await s.task_update(s.at(hours=1), task["task_id"], "acknowledged")
    await s.tick(s.at(hours=5))
    await s.settle()
    assert [t["status"] for t in s.tasks("needs-care")] == ["open"]


async def test_inhibiting_alert_resolves_and_holds_back_the_inhibited_one(
    lifecycle: Pipeline, unique: str
) -> None:
    s = Scenario(lifecycle, f"inhibit-{unique}", BASE + timedelta(days=50))
    await s.account("inhibit")
    await s.ticket(s.at(minutes=1), "i1", "opened")
    [care] = await s.wait_alerts("needs-care", 1)
    await s.ticket(s.at(hours=1), "i2", "opened", severity="critical")
    [fire] = await s.wait_alerts("on-fire", 1)
    alerts = await s.wait_alerts("needs-care", 2)
    assert (alerts[1]["status"], alerts[1]["resolution"]) == ("resolved", "inhibited")
    tasks = await s.wait_tasks("needs-care", 2)
    assert tasks[1]["status"] == "cancelled"

    await s.tick(s.at(hours=2))  # still inhibited: no new needs-care alert
    await s.settle()
    assert len(s.alerts("needs-care")) == 2

    await s.ticket(s.at(hours=3), "i2", "resolved")  # on-fire clears; needs-care may fire again
    alerts = await s.wait_alerts("needs-care", 3)
    assert alerts[2]["status"] == "firing"
    assert _time(alerts[2]["fired_at"]) == s.at(hours=3)
    assert fire["status"] == "firing" and care["status"] == "firing"


async def test_late_event_updates_state_but_fires_at_the_watermark(
    lifecycle: Pipeline, unique: str
) -> None:
    worker = lifecycle[0]
    leader = f"leader-{unique}"
    late_id = next(
        f"late-{unique}-{i}"
        for i in range(100)
        if partition_for(f"late-{unique}-{i}", 2) == partition_for(leader, 2)
    )
    start = BASE + timedelta(days=60)
    s = Scenario(lifecycle, late_id, start - timedelta(days=1, hours=1))
    await s.account("cooldown")
    ahead = Scenario(lifecycle, leader, start)
    await ahead.ticket(start, "x1", "opened")  # the partition's newest event time
    await asyncio.sleep(11)  # other topics go idle: only tickets hold the watermark now
    watermark = start - timedelta(seconds=300)  # CHURNGUARD_ALLOWED_LATENESS_S default

    await s.ticket(start - timedelta(days=1), "c1", "opened", severity="critical")
    [alert] = await s.wait_alerts("critical", 1)
    assert _time(alert["fired_at"]) == watermark  # never in the past
    snapshot = await worker.customer(late_id)
    assert snapshot is not None and snapshot["features"]["open_critical_tickets"] == 1
    metrics = await worker.metrics()
    late = [
        line
        for line in metrics.splitlines()
        if line.startswith("churnguard_late_events_total{") and ".tickets" in line
    ]
    assert late and float(late[0].split()[-1]) >= 1
