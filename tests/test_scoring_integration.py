"""Tiers, health and snapshots end to end on a real broker and a real worker (replay clock).

The worker runs the built-in rules with a scoring file in which `key` also needs a health of
50: one customer's orders grow and it crosses into `key`; another, already `key`, gets
complaints while its logins stop, falls in health, drops out of `key` and the built-in
tier-downgrade rule fires. Snapshots on cs.customer-health carry per-factor contributions,
and the RFM cut points merged through the global table reach them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.settings import BUILTIN_PACKS
from tests.conftest import Broker, _pipeline
from tests.test_lifecycle_integration import Pipeline, Scenario

pytestmark = pytest.mark.integration

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
KEY_NEEDS_HEALTH = 'when: "revenue_365d >= 1000000.0 && health_score >= 50"'


@pytest.fixture(scope="module")
async def scored(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    text = (BUILTIN_PACKS / "scoring.yaml").read_text(encoding="utf-8")
    assert 'when: "revenue_365d >= 1000000.0"' in text
    scoring = tmp_path_factory.mktemp("scoring") / "scoring.yaml"
    scoring.write_text(text.replace('when: "revenue_365d >= 1000000.0"', KEY_NEEDS_HEALTH))
    packs = [str(BUILTIN_PACKS / "core.yaml"), str(scoring)]
    env = {
        "CHURNGUARD_CLOCK": "event",
        "CHURNGUARD_RULE_PACKS": orjson.dumps(packs).decode(),
        "CHURNGUARD_SNAPSHOT_INTERVAL_S": "0",
        "CHURNGUARD_RFM_REFRESH_S": "2",
    }
    async for parts in _pipeline(broker, tmp_path_factory, env):
        yield parts


class Customer(Scenario):
    async def setup(self, name: str) -> None:
        await self.send("accounts", self.start, name=name, owner="am-1", csm="csm-1")

    async def login(self, when: datetime) -> None:
        await self.send("logins", when, user_id="u-1", channel="web")

    async def order(self, when: datetime, amount: str) -> None:
        await self.send(
            "orders", when, order_id=f"o-{self.seq}", amount=amount, currency="EUR", status="paid"
        )

    async def complaint(self, when: datetime, severity: str = "high") -> None:
        await self.send(
            "tickets",
            when,
            ticket_id=f"t-{self.seq}",
            kind="complaint",
            severity=severity,
            status="opened",
        )

    def snapshots(self) -> list[dict[str, Any]]:
        return self.outputs.matching(
            lambda t, v: t.endswith(".health") and v["customer_id"] == self.cid
        )

    async def wait_snapshot(self, test: Any) -> dict[str, Any]:
        found = await self.outputs.wait_for(
            lambda t, v: t.endswith(".health") and v["customer_id"] == self.cid and test(v),
            count=1,
        )
        return found[0]


async def test_growing_orders_cross_into_key(scored: Pipeline, unique: str) -> None:
    c = Customer(scored, f"grower-{unique}", BASE)
    await c.setup("Grower GmbH")
    for day, amount in enumerate(("300000", "400000", "500000")):
        await c.login(c.at(days=day, hours=1))
        await c.order(c.at(days=day, hours=2), amount)
    changed = await c.wait_snapshot(lambda v: v["event"] == "tier_changed" and v["tier"] == "key")
    # on the way it may pass through growth (frequent buyer, rising revenue) once cut points exist
    assert changed["previous_tier"] in ("normal", "growth")
    assert changed["features"]["revenue_365d"] == 1_200_000.0
    assert datetime.fromisoformat(changed["tier_changed_at"]) == c.at(days=2, hours=2)
    notices = await c.wait_alerts("tier_changed", 1)
    notice = next(n for n in notices if n["tier"] == "key")
    assert (notice["status"], notice["severity"]) == ("notice", "info")
    assert notice["evidence"] == {**notice["evidence"], "to": "key"}
    assert notice["evidence"]["from"] == changed["previous_tier"]
    await c.settle()
    assert c.alerts("tier-downgrade") == []


async def test_complaints_and_fading_logins_drop_health_and_fire_tier_downgrade(
    scored: Pipeline, unique: str
) -> None:
    c = Customer(scored, f"fader-{unique}", BASE + timedelta(days=60))
    await c.setup("Fader AG")
    for day in range(10):
        await c.login(c.at(days=day, hours=1))
    await c.order(c.at(days=9, hours=2), "1500000")
    healthy = await c.wait_snapshot(lambda v: v["tier"] == "key")
    assert healthy["health"]["score"] >= 90
    assert healthy["event"] == "tier_changed"  # normal (no revenue yet) -> key

    for day in (11, 12, 13):  # complaints rise; no more logins
        await c.complaint(c.at(days=day, hours=3), severity="critical" if day == 13 else "high")
    await c.complaint(c.at(days=18, hours=3))  # 8 days after the last login
    dropped = await c.wait_snapshot(lambda v: v["event"] == "tier_changed" and v["tier"] != "key")
    assert (dropped["previous_tier"], dropped["tier"]) == ("key", "normal")
    health = dropped["health"]
    assert health["score"] < 50
    factors = health["factors"]
    assert {"login_activity", "complaints", "critical_tickets", "key_contacts"} <= set(factors)
    assert factors["login_activity"]["points"] < 100 and factors["complaints"]["points"] <= 30
    assert factors["critical_tickets"]["contribution"] < factors["key_contacts"]["contribution"]
    total = sum(f["contribution"] for f in factors.values())
    assert abs(total - health["score"]) <= 1  # the contributions add up to the score

    [fired] = await c.wait_alerts("tier-downgrade", 1)
    assert fired["status"] == "firing" and fired["severity"] == "high"
    assert "from key to normal" in fired["summary"]
    task = (await c.wait_tasks("tier-downgrade", 1))[0]
    assert (task["assignee"], task["playbook"]) == ("am-1", "tier-downgrade-review")
    view = await c.worker.customer(c.cid)  # the worker's /customers/{id}/ read view
    assert view is not None
    assert view["scores"]["tier"] == "normal" and view["scores"]["health_score"] < 50
    assert set(view["scores"]["contrib"]) == set(factors)


async def test_rfm_cut_points_from_the_global_table_reach_the_snapshots(
    scored: Pipeline, unique: str
) -> None:
    c = Customer(scored, f"rfm-{unique}", BASE + timedelta(days=120))
    await c.setup("Rfm Ltd")
    await c.order(c.at(hours=1), "100")
    await c.order(c.at(days=3), "200")
    worker = scored[0]
    metrics = ""
    for _ in range(60):  # summaries are published every 2 s; the first needs a flush first
        metrics = await worker.metrics()
        if "churnguard_rfm_population_customers" in metrics and any(
            line.startswith("churnguard_rfm_population_customers ") and float(line.split()[-1]) > 0
            for line in metrics.splitlines()
        ):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"no RFM cut points were published:\n{metrics[-2000:]}")
    await c.order(c.at(days=5), "300")  # evaluated with the cut points now in use
    snap = await c.wait_snapshot(
        lambda v: v["rfm"]["cut_points"] is not None and v["rfm"]["frequency"] >= 1
    )
    rfm = snap["rfm"]
    assert rfm["frequency"] in (1, 2) and rfm["monetary"] > 0
    assert rfm["cut_points"]["customers"] >= 1
    assert 1 <= rfm["f_score"] <= 5 and 1 <= rfm["m_score"] <= 5
