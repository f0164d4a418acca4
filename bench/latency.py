"""Stage (e) of bench.throughput: event → alert latency of a live worker at a steady input rate.

A churnguard worker in live mode (wall clock, default settings, its own ``lat.*`` topics)
receives synthetic events at a fixed rate (half the rate the worker reached on the backlog
in stage (c)), each stamped ``occurred_at`` = the moment it is sent. A consumer reads
``cs.alerts`` as they come; an alert's latency is the time it was read minus its ``fired_at``,
for the alerts whose ``fired_at`` is the ``occurred_at`` of one of its customer's events (the
alerts an event fired; alerts of deadlines have no event to measure from). Printed: p50 and
p99 in ms, the number of alerts measured and the rate actually sent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import EmbeddedBroker, ensure_topics, free_port
from streams.synthetic import generate_events

PREFIX = "lat"
MEASURE_S = 20.0  # seconds of steady input
TICK_S = 0.01
READY_TIMEOUT_S = 120.0
DRAIN_S = 5.0  # alerts still read after the last event


def _topics(names: list[str]) -> dict[str, str]:
    return {name: f"{PREFIX}.{name}" for name in names}


def _env_topics(mapping: dict[str, str]) -> dict[str, str]:
    keys = {
        "crm.logins": "LOGINS",
        "crm.orders": "ORDERS",
        "crm.tickets": "TICKETS",
        "crm.contacts": "CONTACTS",
        "crm.accounts": "ACCOUNTS",
        "cs.task-updates": "TASK_UPDATES",
        "cs.alerts": "ALERTS",
        "cs.tasks": "TASKS",
        "cs.customer-health": "HEALTH",
        "churnguard.deadletter": "DEADLETTER",
        "churnguard.rekeyed": "REKEYED",
        "churnguard.ticks": "TICKS",
    }
    return {f"CHURNGUARD_TOPIC_{keys[k]}": v for k, v in mapping.items() if k in keys}


async def _send_steady(
    bootstrap: str, records: list[tuple[str, str, dict[str, Any]]], rate: float
) -> tuple[float, dict[str, list[float]]]:
    """Send ``records`` at ``rate`` per second, each stamped now; returns the rate achieved and
    each customer's event times."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    stamps: dict[str, list[float]] = {}
    try:
        started = time.monotonic()
        sent = 0
        while sent < len(records):
            due = min(len(records), int((time.monotonic() - started) * rate) + 1)
            for topic, key, value in records[sent:due]:
                now = datetime.now(UTC)
                value = {**value, "occurred_at": now.isoformat(), "event_id": f"lat-{sent}"}
                stamps.setdefault(key, []).append(now.timestamp())
                await producer.send(topic, orjson.dumps(value), key=key.encode())
                sent += 1
            await asyncio.sleep(TICK_S)
        await producer.flush()
        achieved = sent / (time.monotonic() - started)
    finally:
        await producer.stop()
    return achieved, stamps


async def _read_alerts(
    bootstrap: str, topic: str, stop: asyncio.Event, into: list[tuple[float, dict[str, Any]]]
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=10,  # Tansu holds a fetch this long even when records arrive
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for messages in batch.values():
                into.extend((now, orjson.loads(m.value or b"{}")) for m in messages)
    finally:
        await consumer.stop()


def _processed(url: str) -> int:
    from bench.throughput import churnguard_metrics

    snap = churnguard_metrics(url)
    return int(snap["done"]) if snap else -1


async def _measure(
    bootstrap: str,
    topics: dict[str, str],
    records: list[tuple[str, str, dict[str, Any]]],
    rate: float,
    url: str,
) -> dict[str, Any]:
    # one event first: the worker has joined its group and reads once it is processed
    warm_topic, warm_key, warm_value = records[0]
    await _send_steady(bootstrap, [(warm_topic, warm_key, warm_value)], rate)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while _processed(url) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the latency worker processed nothing")
        await asyncio.sleep(0.2)
    alerts: list[tuple[float, dict[str, Any]]] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(_read_alerts(bootstrap, topics["cs.alerts"], stop, alerts))
    achieved, stamps = await _send_steady(bootstrap, records[1:], rate)
    await asyncio.sleep(DRAIN_S)
    stop.set()
    await reader
    latencies = sorted(
        (read - datetime.fromisoformat(a["fired_at"]).timestamp()) * 1000
        for read, a in alerts
        if a.get("status") == "firing" and _fired_by_event(a, stamps)
    )
    out: dict[str, Any] = {"sent_rate": round(achieved), "alerts": len(latencies)}
    if len(latencies) >= 2:
        cuts = quantiles(latencies, n=100, method="inclusive")
        out.update(p50_ms=round(cuts[49], 1), p99_ms=round(cuts[98], 1))
    return out


def _fired_by_event(alert: dict[str, Any], stamps: dict[str, list[float]]) -> bool:
    fired = datetime.fromisoformat(alert["fired_at"]).timestamp()
    return any(abs(fired - t) < 1e-3 for t in stamps.get(alert["customer_id"], ()))


def run_latency(
    broker: EmbeddedBroker, args: argparse.Namespace, workdir: Path, rate: float
) -> Any:
    """Stage (e): p50/p99 event → alert latency of a live worker fed at ``rate`` events/s."""
    from bench.throughput import INPUT_TOPICS, OTHER_TOPICS, TOPIC_BY_KIND, Stage, child, child_env

    stage = Stage("latency")
    names = INPUT_TOPICS + OTHER_TOPICS
    topics = _topics(names)
    asyncio.run(ensure_topics(broker.bootstrap, list(topics.values()), args.partitions))
    events = max(1000, min(args.events, int(rate * MEASURE_S)))
    customers = max(1, min(args.customers, events // 6))
    records = [
        (topics[TOPIC_BY_KIND[r.topic_kind]], r.key, r.value)
        for r in generate_events(customers, events, start=datetime(2025, 3, 3, tzinfo=UTC))
    ]
    port = free_port()
    log_path = workdir / "latency-worker.log"
    env = child_env(
        {
            **_env_topics(topics),
            "CHURNGUARD_BROKER": broker.url,
            "CHURNGUARD_DATA_DIR": str(workdir / "latency-data"),
            "CHURNGUARD_WEB_PORT": str(port),
            "CHURNGUARD_WEB_HOST": "127.0.0.1",
            "CHURNGUARD_PARTITIONS": str(args.partitions),
            "CHURNGUARD_BROKER_SESSION_TIMEOUT_S": "6",
            "CHURNGUARD_BROKER_HEARTBEAT_INTERVAL_S": "1",
            "CHURNGUARD_APP_ID": "bench-latency",
        }
    )
    argv = [sys.executable, "-m", "agents", "worker", "-l", "warn"]
    url = f"http://127.0.0.1:{port}/metrics"
    with child(argv, env, log_path):
        found = asyncio.run(_measure(broker.bootstrap, topics, records, rate, url))
    stage.events = events
    stage.seconds = events / found["sent_rate"] if found["sent_rate"] else None
    stage.details.update(found, target_rate=round(rate))
    return stage
