"""End to end: output events on the real broker → the sink inside `churnguard serve` → Redis →
the API's answers.

`churnguard serve` runs with its read-model sink on private output topics; the test produces
customer-health snapshots, alerts and a task as the worker would, and reads them back only
through the HTTP API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.codec import encode
from schemas.outputs import AlertEvent, CustomerHealth, TaskEvent
from streams.broker import ensure_topics
from tests.conftest import Broker, Producer
from tests.serve_support import RedisServer, ServeProcess

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def snapshot(cid: str, tier: str, score: int, day: int, open_alerts: list[str]) -> CustomerHealth:
    factor = {"value": 2.0, "points": score, "weight": 100.0, "contribution": float(score)}
    return CustomerHealth.model_validate(
        {
            "customer_id": cid,
            "name": f"Customer {cid}",
            "tier": tier,
            "lifecycle_stage": "active",
            "at_risk": score < 40,
            "health": {
                "score": score,
                "trend_7d": -3,
                "profile": "",
                "factors": {"logins": {**factor, "missing": False}},
            },
            "features": {"logins_7d": 2},
            "open_alerts": open_alerts,
            "as_of": T0 + timedelta(days=day),
        }
    )


def alert(aid: str, cid: str, status: str, day: int) -> AlertEvent:
    fired = T0 + timedelta(days=day)
    return AlertEvent.model_validate(
        {
            "alert_id": aid,
            "customer_id": cid,
            "rule_id": "inactivity",
            "severity": "medium",
            "status": status,
            "summary": f"{cid} went quiet",
            "evidence": {"days_since_last_login": 15},
            "tier": "key",
            "fired_at": fired,
            "resolved_at": fired + timedelta(days=1) if status == "resolved" else None,
            "resolution": "cleared" if status == "resolved" else None,
            "emitted_at": fired,
        }
    )


def task(aid: str, cid: str, day: int) -> TaskEvent:
    created = T0 + timedelta(days=day)
    return TaskEvent.model_validate(
        {
            "task_id": f"{aid}:t",
            "alert_id": aid,
            "customer_id": cid,
            "rule_id": "inactivity",
            "assignee": "ann",
            "assignee_role": "csm",
            "title": f"Call {cid}",
            "priority": "medium",
            "due_at": created + timedelta(days=1),
            "status": "open",
            "created_at": created,
        }
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


async def poll(url: str, check: Callable[[int, Any], bool], timeout: float = 90.0) -> Any:
    """GET ``url`` until ``check(status, body)`` holds; the last answer otherwise fails."""
    deadline = time.monotonic() + timeout
    last: tuple[int, Any] = (0, None)
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                last = (response.status, await response.json())
            if check(*last):
                return last[1]
            await asyncio.sleep(0.3)
    raise AssertionError(f"{url} never matched; last answer {last}")


async def test_events_on_the_output_topics_reach_the_api(
    broker: Broker, redis_server: RedisServer, unique: str, tmp_path: Path
) -> None:
    topics = {kind: f"e2e{unique}.{kind}" for kind in ("health", "alerts", "tasks")}
    await ensure_topics(broker.bootstrap, list(topics.values()), 2)
    serve = ServeProcess(
        {
            "CHURNGUARD_BROKER": broker.url,
            "CHURNGUARD_APP_ID": f"e2e{unique}",
            "CHURNGUARD_REDIS_URL": redis_server.url,
            "CHURNGUARD_BROKER_SESSION_TIMEOUT_S": "6",
            "CHURNGUARD_BROKER_HEARTBEAT_INTERVAL_S": "1",
            **{f"CHURNGUARD_TOPIC_{kind.upper()}": name for kind, name in topics.items()},
        },
        tmp_path / "serve.log",
        args=(),  # with the sink
    )
    producer = Producer(broker.bootstrap)
    await producer.start()
    try:
        await asyncio.to_thread(serve.start)
        events: list[tuple[str, Any, str]] = [
            *(("health", snapshot("k1", "key", s, d, []), "k1") for d, s in enumerate([70, 50])),
            ("alerts", alert("a-k1", "k1", "firing", 2), "k1"),
            ("tasks", task("a-k1", "k1", 2), "k1"),
            ("health", snapshot("k1", "key", 30, 3, ["a-k1"]), "k1"),
            ("health", snapshot("s1", "strategic", 60, 3, []), "s1"),
            ("alerts", alert("a-s1", "s1", "firing", 1), "s1"),
            ("alerts", alert("a-s1", "s1", "resolved", 1), "s1"),
        ]
        for kind, event, key in events:
            await producer.send(topics[kind], encode(event), key=key)

        url = serve.url
        k1 = await poll(
            f"{url}/customers/k1",
            lambda status, body: status == 200 and body["health"] == 30 and body["tasks"],
        )
        assert [p["score"] for p in k1["health_history"]] == [70, 50, 30]
        assert k1["open_alerts"] == ["a-k1"]
        assert [a["alert_id"] for a in k1["alerts"]] == ["a-k1"]
        assert k1["tasks"][0]["task_id"] == "a-k1:t"

        ranking = await poll(
            f"{url}/at-risk", lambda status, body: status == 200 and len(body["items"]) == 2
        )
        assert [i["customer_id"] for i in ranking["items"]] == ["k1", "s1"]
        assert ranking["items"][0]["open_alerts"] == [
            {"alert_id": "a-k1", "rule_id": "inactivity", "severity": "medium"}
        ]
        firing = await poll(f"{url}/alerts", lambda status, body: status == 200)
        assert [a["alert_id"] for a in firing["items"]] == ["a-k1"]  # a-s1 resolved
        resolved = await poll(
            f"{url}/alerts?status=resolved", lambda status, body: bool(body["items"])
        )
        assert [a["alert_id"] for a in resolved["items"]] == ["a-s1"]
        ready = await poll(f"{url}/readyz", lambda status, body: status == 200)
        assert ready["checks"] == {"redis": True, "sink": True}
        async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        assert "churnguard_sink_events_total" in metrics  # the sink's metrics, same registry
        assert "churnguard_api_requests_total" in metrics
    finally:
        await producer.stop()
        code = serve.stop()
    assert code == 0, serve.log()
    assert "Traceback" not in serve.log(), serve.log()
