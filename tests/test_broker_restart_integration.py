"""The broker restarted mid-stream: the worker waits it out, says so, and resumes.

The test broker keeps everything in memory, so a restart is an outage followed by an empty
broker: the test stops its own Tansu, watches the worker for ``OUTAGE_S`` seconds, starts a new
Tansu on the same port and re-creates the topics (as an operator would after losing a
cluster). Meanwhile the worker must stay up, not spin (CPU time used during the outage well
below one core) nor flood its log (aiokafka logs every failed retry of every client: about 150
lines a second before the repeat limiter), and answer ``/readyz`` 503 with the reason. Once
the broker is back it rejoins its group and processes the new events: each customer's state
holds the logins from before the outage (kept in its local RocksDB) and those after, and
the re-created changelog gets the states from before the outage written back (Faust would
have stopped with ``ConsistencyError``: the local store is ahead of the changelog).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.app import TABLE_NAME
from streams.broker import EmbeddedBroker, ensure_topics
from tests.conftest import Broker, Producer, Topics, Worker
from tests.proc_stats import cpu_seconds, metric_sum
from tests.test_restart_integration import _login

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        bool(os.environ.get("CHURNGUARD_TEST_BROKER")),
        reason="restarts its own embedded broker; an external broker is not ours to restart",
    ),
]

CUSTOMERS = 8  # over both partitions
BEFORE = 5  # logins per customer before the outage
AFTER = 5  # logins per customer, and per new customer, after it
OUTAGE_S = 8.0
UNREACHABLE_S = 2.0  # CHURNGUARD_BROKER_UNREACHABLE_S for this worker


async def _send_logins(
    bootstrap: str, topics: Topics, customers: list[str], first: int, count: int
) -> None:
    at = datetime.now(UTC) - timedelta(hours=2)
    producer = Producer(bootstrap)
    await producer.start()
    try:
        for cid in customers:
            for i in range(first, first + count):
                await producer.send(topics.name("logins"), _login(cid, i, at), cid)
    finally:
        await producer.stop()


async def _logins(worker: Worker, customers: list[str], expected: int) -> None:
    for cid in customers:
        await worker.wait_customer(cid, lambda s: s["features"]["logins_7d"] == expected)


async def _applied(worker: Worker) -> float:
    return metric_sum(await worker.metrics(), "churnguard_events_total", outcome="applied")


async def _outage(worker: Worker) -> tuple[list[tuple[int, dict[str, Any]] | None], float]:
    """``/readyz`` answers seen during the outage, and the CPU seconds the worker used."""
    assert worker.proc is not None
    cpu = cpu_seconds(worker.proc.pid)
    answers: list[tuple[int, dict[str, Any]] | None] = []
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-3000:]}"
        answers.append(await worker.readiness())
        await asyncio.sleep(0.25)
    return answers, cpu_seconds(worker.proc.pid) - cpu


async def _changelog_keys(bootstrap: str, topic: str, want: set[bytes]) -> set[bytes]:
    """Keys on the changelog topic, read from the start until ``want`` are all there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    keys: set[bytes] = set()
    try:
        deadline = time.monotonic() + 30
        while not want <= keys and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                keys.update(m.key for m in messages if m.key is not None)
    finally:
        await consumer.stop()
    return keys


async def test_broker_restart_mid_stream(tmp_path: Path) -> None:
    embedded = EmbeddedBroker(log_path=tmp_path / "tansu-1.log").start()
    broker = Broker(embedded.bootstrap, is_tansu=True)
    topics = Topics(f"b{uuid.uuid4().hex[:6]}")
    app_id = f"cg-{topics.prefix}"
    worker = Worker(
        broker,
        topics,
        tmp_path / "data",
        tmp_path / "worker.log",
        app_id=app_id,
        extra_env={"CHURNGUARD_BROKER_UNREACHABLE_S": str(UNREACHABLE_S)},
    )
    try:
        await ensure_topics(broker.bootstrap, topics.all(), 2)
        worker.start()
        await worker.wait_ready()
        old = [f"before-{i}-{topics.prefix}" for i in range(CUSTOMERS)]
        await _send_logins(broker.bootstrap, topics, old, 0, BEFORE)
        await _logins(worker, old, BEFORE)
        applied_before = await _applied(worker)
        lines_before = len(worker.log().splitlines())
        assigned_before = worker.log().count("inputs_assigned")

        embedded.stop()  # every topic, offset and group is gone with it
        started = time.monotonic()
        answers, cpu = await _outage(worker)
        outage_s = time.monotonic() - started
        outage_lines = len(worker.log().splitlines()) - lines_before

        embedded = EmbeddedBroker(port=embedded.port, log_path=tmp_path / "tansu-2.log").start()
        await ensure_topics(
            broker.bootstrap, [*topics.all(), f"{app_id}-{TABLE_NAME}-changelog"], 2
        )
        await ensure_topics(broker.bootstrap, [f"{app_id}-__assignor-__leader"], 1)
        # the new broker knows no group: the worker rejoins, then reads the new topics
        deadline = time.monotonic() + 90
        while worker.log().count("inputs_assigned") <= assigned_before:
            assert time.monotonic() < deadline, worker.log()[-3000:]
            assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
            await asyncio.sleep(0.2)
        await worker.wait_ready()
        new = [f"after-{i}-{topics.prefix}" for i in range(CUSTOMERS)]
        await _send_logins(broker.bootstrap, topics, old, BEFORE, AFTER)
        await _send_logins(broker.bootstrap, topics, new, 0, AFTER)
        await _logins(worker, old, BEFORE + AFTER)
        await _logins(worker, new, AFTER)
        applied_after = await _applied(worker) - applied_before
        # the new changelog lost the states written before the outage; they are written back
        everyone = {cid.encode() for cid in old + new}
        changelog = await _changelog_keys(
            broker.bootstrap, f"{app_id}-{TABLE_NAME}-changelog", everyone
        )
    finally:
        code = worker.stop()
        embedded.stop()
    log = worker.log()
    unready = [a for a in answers if a is not None and a[0] == 503]
    print(
        f"\nbroker restart: outage {outage_s:.1f} s, worker CPU {cpu:.2f} s during it, "
        f"{outage_lines} log lines, /readyz 503 in {len(unready)} of {len(answers)} polls "
        f"({unready[-1][1]['reason'] if unready else '-'}); events before {applied_before:.0f}, "
        f"after the restart {applied_after:.0f}; "
        f"changelog holds {len(changelog & everyone)} of {len(everyone)} customers; exit {code}"
    )
    assert code == 0, log[-3000:]
    assert unready and all("broker unreachable" in a[1]["reason"] for a in unready), answers
    assert cpu < 0.5 * outage_s, f"{cpu:.2f} CPU seconds in a {outage_s:.1f} s outage"
    assert outage_lines < 150, f"{outage_lines} log lines in a {outage_s:.1f} s outage"
    assert "broker_unreachable " in log and "broker_reachable_again " in log
    assert applied_before == CUSTOMERS * BEFORE
    assert applied_after == 2 * CUSTOMERS * AFTER  # every new event, each once
    assert "changelog_behind_local_store" in log
    assert changelog >= everyone, f"missing from the changelog: {everyone - changelog}"
