"""A rule pack changed between restarts, and a pack that fails to load.

Restarted without a rule, the worker keeps the customer's state (every login) and forgets the
removed rule's open alert; restarted with a broken pack, it stops at start-up (exit 2, the
file and the reason) before it reads or writes anything, so the stored state stays as it was.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.settings import BUILTIN_PACKS
from tests.conftest import Broker, Outputs, Producer, Worker, private_topics
from tests.test_restart_integration import _login

pytestmark = [pytest.mark.integration, pytest.mark.faults]

LOGINS = 6
EXTRA = """
- id: busy-customer
  description: Many logins this week.
  when: logins_7d >= 3
  severity: info
  summary: "busy: {{ logins_7d }} logins"
"""


async def test_rule_removed_between_restarts_keeps_state_and_forgets_its_alert(
    broker: Broker, tmp_path: Path
) -> None:
    topics = await private_topics(broker, "p")
    extra = tmp_path / "extra.yaml"
    extra.write_text(EXTRA)
    broken = tmp_path / "broken.yaml"
    broken.write_text("- id: broken\n  when: logins_7d >=\n  severity: info\n")

    def worker(n: int, *packs: Path) -> Worker:
        return Worker(
            broker,
            topics,
            tmp_path / "data",
            tmp_path / f"w{n}.log",
            app_id=f"cg-{topics.prefix}",
            extra_env={"CHURNGUARD_RULE_PACKS": json.dumps([str(p) for p in packs])},
        )

    cid = f"pack-{uuid.uuid4().hex[:6]}"
    at = datetime.now(UTC) - timedelta(hours=1)
    producer = Producer(broker.bootstrap)
    outputs = Outputs(broker.bootstrap, [topics.name("alerts")])
    await producer.start()
    await outputs.start()
    first = worker(1, BUILTIN_PACKS, extra).start()
    try:
        for i in range(LOGINS):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)
        await outputs.wait_for(lambda t, v: v.get("rule_id") == "busy-customer")
        snap = await first.wait_customer(cid, lambda s: s["features"]["logins_7d"] == LOGINS)
        assert "busy-customer" in snap["open_alerts"]
    finally:
        assert first.stop() == 0, first.log()[-3000:]

    bad = worker(2, BUILTIN_PACKS, broken).start()
    assert bad.proc is not None
    code = bad.proc.wait(120)
    log = bad.log()
    assert code == 2, log[-2000:]
    assert "invalid rule pack, nothing loaded" in log and str(broken) in log, log[-2000:]

    second = worker(3, BUILTIN_PACKS).start()
    try:
        snap = await second.wait_customer(cid, lambda s: s["features"]["logins_7d"] == LOGINS)
        snap = await second.wait_customer(cid, lambda s: "busy-customer" not in s["open_alerts"])
        assert snap["features"]["logins_7d"] == LOGINS  # the state is kept, whole
    finally:
        second.stop()
        await outputs.stop()
        await producer.stop()
