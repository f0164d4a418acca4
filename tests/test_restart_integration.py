"""State survives a worker stopped mid-stream, and a lost data directory (changelog restore)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.partitioning import partition_for
from tests.conftest import Broker, Outputs, Producer, Worker, private_topics

pytestmark = pytest.mark.integration

EVENTS = 40


def _login(cid: str, i: int, at: datetime) -> dict[str, object]:
    return {
        "event_id": f"{cid}-login-{i}",
        "customer_id": cid,
        "occurred_at": (at + timedelta(seconds=i)).isoformat(),
        "user_id": f"u{i % 3}",
        "channel": "web",
    }


async def test_stop_mid_stream_restart_and_changelog_rebuild(
    broker: Broker, tmp_path: Path
) -> None:
    topics = await private_topics(broker, "r")
    app_id = f"cg-{topics.prefix}"

    def worker(data_dir: Path, n: int) -> Worker:
        return Worker(broker, topics, data_dir, tmp_path / f"worker{n}.log", app_id=app_id)

    producer = Producer(broker.bootstrap)
    await producer.start()
    outputs = Outputs(broker.bootstrap, [topics.name("alerts"), topics.name("tasks")])
    await outputs.start()
    cid = f"keep-{uuid.uuid4().hex[:6]}"
    at = datetime.now(UTC) - timedelta(hours=3)
    first = worker(tmp_path / "data", 1).start()
    try:
        account = {
            "event_id": f"{cid}-acct", "customer_id": cid, "occurred_at": at.isoformat(),
            "name": "Keepers", "owner": "am-1", "csm": "csm-1",
        }  # fmt: skip
        await producer.send(topics.name("accounts"), account, cid)
        await first.wait_customer(cid, lambda s: s["account"].get("owner") == "am-1")
        departed = {
            "event_id": f"{cid}-dep", "customer_id": cid,
            "occurred_at": (at + timedelta(minutes=1)).isoformat(),
            "contact_id": "k1", "name": "Kim", "is_key_contact": True, "change": "departed",
        }  # fmt: skip
        await producer.send(topics.name("contacts"), departed, cid)
        await outputs.wait_for(
            lambda t, v: t.endswith("alerts") and v["rule_id"] == "key-contact-departed"
        )

        # stop the worker with SIGTERM while logins are still flowing
        for i in range(EVENTS // 2):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)
        assert first.stop() == 0, first.log()[-3000:]
        for i in range(EVENTS // 2, EVENTS):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)

        second = worker(tmp_path / "data", 2).start()
        try:
            snap = await second.wait_customer(
                cid, lambda s: s["features"]["logins_7d"] >= EVENTS, timeout=120
            )
            assert snap["features"]["logins_7d"] == EVENTS  # nothing lost, nothing twice
            # the next alert is still right: complaints fire the spike rule once, and the
            # key-contact alert that fired before the restart is not fired again
            for i in range(3):
                complaint = {
                    "event_id": f"{cid}-cp{i}", "customer_id": cid,
                    "occurred_at": (at + timedelta(hours=1, minutes=i)).isoformat(),
                    "ticket_id": f"t{i}", "kind": "complaint", "severity": "high",
                    "status": "opened",
                }  # fmt: skip
                await producer.send(topics.name("tickets"), complaint, cid)
            spike = await outputs.wait_for(
                lambda t, v: t.endswith("alerts") and v["rule_id"] == "complaint-spike"
            )
            assert spike[0]["evidence"]["complaints_7d"] == 3
            await asyncio.sleep(2)  # let any wrongly repeated alert arrive
            await outputs.poll()
            key_alerts = outputs.matching(
                lambda t, v: t.endswith("alerts") and v["rule_id"] == "key-contact-departed"
            )
            assert len({a["alert_id"] for a in key_alerts}) == 1
        finally:
            assert second.stop() == 0, second.log()[-3000:]

        third = worker(tmp_path / "fresh-data", 3).start()
        try:
            snap = await third.wait_customer(
                cid, lambda s: s["features"]["logins_7d"] >= EVENTS, timeout=120
            )
            assert snap["features"]["logins_7d"] == EVENTS
            assert snap["features"]["complaints_7d"] == 3
            assert set(snap["open_alerts"]) == {"key-contact-departed", "complaint-spike"}
        finally:
            third.stop()
    finally:
        first.stop()
        await outputs.stop()
        await producer.stop()


async def test_upgraded_worker_resumes_from_input_offsets_of_the_app_group(
    broker: Broker, tmp_path: Path
) -> None:
    """Before the input reader, Faust's agents committed input offsets under the app id: a
    worker upgraded in place continues from there instead of reading the topics again."""
    topics = await private_topics(broker, "u")
    app_id = f"cg-{topics.prefix}"
    cid = f"upg-{uuid.uuid4().hex[:6]}"
    at = datetime.now(UTC) - timedelta(hours=1)
    producer = Producer(broker.bootstrap)
    await producer.start()
    try:
        for i in range(5):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)
    finally:
        await producer.stop()
    tp = TopicPartition(topics.name("logins"), partition_for(cid, 2))
    old = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=app_id)
    await old.start()
    try:
        old.assign([tp])
        await old.commit({tp: 3})  # the old agents had processed logins 0, 1 and 2
    finally:
        await old.stop()
    worker = Worker(broker, topics, tmp_path / "data", tmp_path / "w.log", app_id=app_id).start()
    try:
        snap = await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] >= 2)
        await asyncio.sleep(2)  # would have read logins 0-2 by now
        snap = await worker.wait_customer(cid, lambda s: True)
        assert snap["features"]["logins_7d"] == 2
        assert "input_resumed_from_app_group" in worker.log()
    finally:
        worker.stop()
