"""Catching up on a backlog: the same alerts and tasks as when the events arrive in time order.

Run A publishes five months of synthetic history topic after topic (accounts, then all logins,
then all orders, then tickets and contacts) and starts the worker afterwards, the situation of
every first deployment and every restart after downtime. Run B starts its worker first and
publishes the same events interleaved in time order, one by one. Without event-time alignment
across topics, run A read each topic's backlog independently and fired alerts such as
"no login for 195 days" for customers whose logins were simply not read yet, then resolved
them and cancelled their tasks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.engine_config import engine_config
from schemas import decode_input
from streams.broker import ensure_topics
from streams.features import FEATURES, compute
from streams.settings import Settings
from streams.state import CustomerState
from streams.synthetic import SyntheticRecord, generate, plan_customers
from tests.conftest import Broker, Outputs, Producer, Topics, Worker
from tests.factories import fold_each
from tests.proc_stats import metric_sum

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 6, tzinfo=UTC)
TOPIC_OF_KIND = {
    "account": "accounts",
    "login": "logins",
    "order": "orders",
    "ticket": "tickets",
    "contact": "contacts",
}
BACKLOG_ORDER = ("account", "login", "order", "ticket", "contact")
SETTLED_S = 12.0  # no new output for this long (beyond the watermark's 10 s idle rule)


def _history() -> list[SyntheticRecord]:
    return list(generate(plan_customers(30, seed=11), start=START, days=150, seed=11))


def _worker(broker: Broker, tmp_path: Path, name: str) -> tuple[Worker, Topics]:
    topics = Topics(f"{name}{uuid.uuid4().hex[:6]}")
    worker = Worker(
        broker,
        topics,
        tmp_path / name / "data",
        tmp_path / f"{name}.log",
        app_id=f"cg-{topics.prefix}",
        extra_env={
            "CHURNGUARD_CLOCK": "event",  # historical data: sweeps in event time
            # small fetches, so that the backlog takes many and one topic gets ahead
            "CHURNGUARD_FETCH_PARTITION_MAX_BYTES": "8192",
        },
    )
    return worker, topics


async def _publish_backlog(bootstrap: str, topics: Topics, records: list[SyntheticRecord]) -> None:
    """Every record of one kind before any record of the next, in bulk."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for kind in BACKLOG_ORDER:
            sends = [
                await producer.send(
                    topics.name(TOPIC_OF_KIND[kind]), orjson.dumps(r.value), key=r.key.encode()
                )
                for r in records
                if r.topic_kind == kind
            ]
            await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _processed(worker: Worker) -> int:
    text = await worker.metrics()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("churnguard_events_total{") and 'outcome="rekeyed"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def _wait_processed(worker: Worker, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await _processed(worker) >= count:
                return
        except OSError:
            pass
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.log()[-3000:]}")
        await asyncio.sleep(0.5)
    raise AssertionError(f"worker processed {await _processed(worker)} of {count}")


async def _settle(outputs: Outputs) -> None:
    """Read outputs until none has come for SETTLED_S seconds."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < SETTLED_S:
        await outputs.poll()
        if len(outputs.records) != last:
            last, since = len(outputs.records), time.monotonic()


def _alerts(outputs: Outputs) -> list[tuple[Any, ...]]:
    return sorted(
        (v["alert_id"], v["rule_id"], v["status"], v["fired_at"], v["resolved_at"])
        for t, v, _ in outputs.records
        if t.endswith(".alerts") and v.get("status") in ("firing", "resolved")
    )


def _tasks(outputs: Outputs) -> list[tuple[Any, ...]]:
    return sorted(
        (v["task_id"], v["rule_id"], v["status"], v["assignee"], v["due_at"])
        for t, v, _ in outputs.records
        if t.endswith(".tasks")
    )


async def test_a_backlog_read_topic_after_topic_alerts_as_if_read_in_time_order(
    broker: Broker, tmp_path: Path
) -> None:
    history = _history()
    backlog, backlog_topics = _worker(broker, tmp_path, "backlog")
    live, live_topics = _worker(broker, tmp_path, "inorder")
    for topics in (backlog_topics, live_topics):
        await ensure_topics(broker.bootstrap, topics.all(), 2)
    out_names = ("alerts", "tasks")
    backlog_out = Outputs(broker.bootstrap, [backlog_topics.name(k) for k in out_names])
    live_out = Outputs(broker.bootstrap, [live_topics.name(k) for k in out_names])
    producer = Producer(broker.bootstrap)
    await asyncio.gather(backlog_out.start(), live_out.start(), producer.start())
    try:
        await _publish_backlog(broker.bootstrap, backlog_topics, history)
        live.start()
        backlog.start()
        for r in history:  # run B: one by one, in time order, across the topics
            await producer.send(live_topics.name(TOPIC_OF_KIND[r.topic_kind]), r.value, r.key)
        await asyncio.gather(
            _wait_processed(backlog, len(history)), _wait_processed(live, len(history))
        )
        await asyncio.gather(_settle(backlog_out), _settle(live_out))
    finally:
        await asyncio.gather(backlog_out.stop(), live_out.stop(), producer.stop())
        backlog.stop()
        live.stop()

    expected_alerts, expected_tasks = _alerts(live_out), _tasks(live_out)
    assert len({a[1] for a in expected_alerts}) >= 3, expected_alerts  # the history fires
    assert any(t[2] == "open" for t in expected_tasks)
    assert _alerts(backlog_out) == expected_alerts
    assert _tasks(backlog_out) == expected_tasks
    assert "inputs_assigned" in backlog.log()


async def test_a_backlog_is_flushed_within_its_bounds_while_it_is_read(
    broker: Broker, tmp_path: Path
) -> None:
    """Batch after batch of a backlog, a partition still flushes at CHURNGUARD_FLUSH_MAX_DIRTY
    dirty customers: the states it holds stay bounded and its offsets are committed as it goes
    (it used to read all it had buffered, up to the whole backlog, before the first flush).

    With no state cache, every batch reads its customers back from the table right after the
    flush before it: each customer's state must still hold every event (compared with all
    its events folded in order), or a flush persisted less than it covered.
    """
    history = _history()
    batch = 50
    worker, topics = _worker(broker, tmp_path, "bounded")
    worker.extra_env.update(
        {
            "CHURNGUARD_FETCH_PARTITION_MAX_BYTES": "1048576",  # each topic in one fetch
            "CHURNGUARD_BATCH_MAX_RECORDS": str(batch),
            "CHURNGUARD_FLUSH_MAX_DIRTY": "1",  # every batch dirties one: a flush after each
            "CHURNGUARD_FLUSH_INTERVAL_S": "600",
            "CHURNGUARD_TICK_INTERVAL_S": "600",  # no sweeps, so no flushes after them
            "CHURNGUARD_STATE_CACHE_CUSTOMERS": "0",  # every batch loads its customers again
        }
    )
    await ensure_topics(broker.bootstrap, topics.all(), 2)
    await _publish_backlog(broker.bootstrap, topics, history)
    worker.start()
    try:
        await _wait_processed(worker, len(history))
        flushes = metric_sum(await worker.metrics(), "churnguard_flush_seconds_count")
        views = {cid: await worker.customer(cid) for cid in {r.key for r in history}}
    finally:
        worker.stop()
    assert flushes >= len(history) // batch, (flushes, worker.log()[-3000:])
    folded = _folded(history)
    for cid, view in views.items():
        assert view is not None, cid
        expected = compute(folded[cid], view["as_of"], EVENT_FEATURES)
        assert {n: view["features"][n] for n in EVENT_FEATURES} == expected, cid


EVENT_FEATURES = frozenset(
    n for n, f in FEATURES.items() if not f.depends_on & {"alerts", "scores"}
)
"""The features that only the input events (and time) move."""


def _folded(history: list[SyntheticRecord]) -> dict[str, CustomerState]:
    """Every customer's state with all its events folded in, in time order (no rules)."""
    events = [decode_input(r.topic_kind, orjson.dumps(r.value)) for r in history]
    return fold_each(events, engine_config(Settings()).state)  # the worker's state config
