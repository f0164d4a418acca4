"""Two workers in one consumer group: they split the partitions, and one takes over the other's.

The same five months of synthetic history (60 customers, 17,490 events, published as a
backlog) go to a one-worker run (the reference) and to a pair of workers with the same app id,
each with its own data directory, standby replicas on (the default). The pair splits the two
partitions; once a third of the events are processed, one of the pair is stopped — with
SIGTERM in one test, SIGKILL in the other — and the survivor must take over the other's
partition and its table: ``/readyz`` answers 503 with the reason while it rebalances and
recovers, then 200 with both partitions; afterwards every customer's state equals the
reference's, and the distinct alert and task ids (with their rule, status and times) equal the
reference's: none lost, none duplicated under another id. Records emitted again under the
same id are the at-least-once repeats of work flushed but not committed (counted, not wrong).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.broker import ensure_topics
from streams.partitioning import partition_for
from streams.synthetic import SyntheticRecord, generate, plan_customers
from tests.conftest import Broker, Outputs, Producer, Topics, Worker
from tests.test_backlog_integration import (
    START,
    _alerts,
    _processed,
    _publish_backlog,
    _settle,
    _tasks,
    _wait_processed,
)
from tests.test_kill_integration import _env, _views

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(600)]

CUSTOMERS = 60
PARTITIONS = 2


@dataclass
class Run:
    """One run of the history: its topics, output reader, and what it ended with."""

    topics: Topics
    outputs: Outputs
    views: dict[str, Any]

    @property
    def app_id(self) -> str:
        return f"cg-{self.topics.prefix}"


def _history() -> list[SyntheticRecord]:
    return list(generate(plan_customers(CUSTOMERS, seed=5), start=START, days=150, seed=5))


def _closing_customers() -> list[str]:
    return [
        next(f"closing-{i}" for i in range(100) if partition_for(f"closing-{i}", PARTITIONS) == p)
        for p in range(PARTITIONS)
    ]


async def _close(broker: Broker, run: Run, history: list[SyntheticRecord], worker: Worker) -> None:
    """One login a day after the history on every partition, for a customer of its own.

    A partition's event-time watermark is not kept across a takeover: its new owner starts
    from the events it reads (the uncommitted tail), so its sweeps wait for the next newer
    event — late, never early. These logins are that event, in both runs alike.
    """
    last = max(r.occurred_at for r in history)
    producer = Producer(broker.bootstrap)
    await producer.start()
    try:
        for cid in _closing_customers():
            login = {
                "event_id": f"{cid}-login", "customer_id": cid,
                "occurred_at": (last + timedelta(days=1)).isoformat(),
                "user_id": "u1", "channel": "web",
            }  # fmt: skip
            await producer.send(run.topics.name("logins"), login, cid)
    finally:
        await producer.stop()
    # the latest events of their partitions: the event-time merge takes them only after
    # every older record of the partition, so once they show, the rest is processed
    for cid in _closing_customers():
        await worker.wait_customer(cid, lambda s: True, timeout=240)


async def _new_run(broker: Broker, name: str, history: list[SyntheticRecord]) -> Run:
    topics = Topics(f"{name}{uuid.uuid4().hex[:6]}")
    await ensure_topics(broker.bootstrap, topics.all(), PARTITIONS)
    await _publish_backlog(broker.bootstrap, topics, history)
    outputs = Outputs(broker.bootstrap, [topics.name("alerts"), topics.name("tasks")])
    await outputs.start()
    return Run(topics, outputs, {})


def _worker(broker: Broker, run: Run, base: Path, name: str) -> Worker:
    return Worker(
        broker,
        run.topics,
        base / name / "data",
        base / f"{name}.log",
        app_id=run.app_id,
        extra_env=_env(),
    )


@pytest.fixture(scope="module")
async def reference(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[list[SyntheticRecord], Run]]:
    """The history processed by one worker alone: its views, alerts and tasks."""
    history = _history()
    run = await _new_run(broker, "one", history)
    worker = _worker(broker, run, tmp_path_factory.mktemp("reference"), "one").start()
    try:
        await _wait_processed(worker, len(history), timeout=240)
        await _close(broker, run, history, worker)
        await _settle(run.outputs)
        run.views = await _views(worker, sorted({r.key for r in history}))
    finally:
        worker.stop()
    try:
        yield history, run
    finally:
        await run.outputs.stop()


def _one_each(partitions: list[int]) -> bool:
    return len(partitions) == 1


def _both(partitions: list[int]) -> bool:
    return partitions == list(range(PARTITIONS))


async def _takeover(
    broker: Broker,
    reference: tuple[list[SyntheticRecord], Run],
    tmp_path: Path,
    sig: int,
) -> dict[str, Any]:
    """Run the pair, stop one with ``sig`` mid-stream; what the test needs to judge it."""
    history, ref = reference
    run = await _new_run(broker, "pair", history)
    survivor = _worker(broker, run, tmp_path, "survivor").start()
    leaver = _worker(broker, run, tmp_path, "leaver").start()
    try:
        # the group splits the partitions: one each (the first to join may hold both briefly)
        await asyncio.gather(survivor.wait_ready(_one_each), leaver.wait_ready(_one_each))
        split = [
            (await w.readiness() or (0, {"partitions": []}))[1]["partitions"]
            for w in (survivor, leaver)
        ]
        # standby replicas: the survivor keeps the leaver's table partition warm on its disk
        standby_dirs = sorted(p.name for p in (tmp_path / "survivor").rglob("*.db") if p.is_dir())
        stopped_at = 0
        deadline = time.monotonic() + 120
        while stopped_at == 0 and time.monotonic() < deadline:
            try:
                done = await _processed(survivor) + await _processed(leaver)
                leaver_done = await _processed(leaver)
            except OSError:
                done = leaver_done = 0
            if done >= len(history) // 3:
                stopped_at = leaver_done
                leaver_code = leaver.stop(sig)
            await asyncio.sleep(0.05)
        assert stopped_at > 0, "the pair processed too little in 120 s"
        answers = await survivor.wait_ready(_both, timeout=120)
        await _close(broker, run, history, survivor)
        await _settle(run.outputs)
        views = await _views(survivor, sorted(ref.views))
        log = survivor.log()
    finally:
        await run.outputs.stop()
        survivor.stop()
        leaver.stop()
    return {
        "split": split,
        "standby_dirs": standby_dirs,
        "leaver_code": leaver_code,
        "leaver_processed": stopped_at,
        "answers": answers,
        "views": views,
        "alerts": _alerts(run.outputs),
        "tasks": _tasks(run.outputs),
        "survivor_log": log,
    }


def _judge(result: dict[str, Any], reference: tuple[list[SyntheticRecord], Run]) -> None:
    history, ref = reference
    owned = {partition_for(r.key, PARTITIONS) for r in history}
    assert sorted(p for ps in result["split"] for p in ps) == sorted(owned)  # split, disjoint
    # the survivor said "not ready" with a reason while it took the partition over
    not_ready = [body for status, body in result["answers"] if status == 503]
    assert not_ready, result["answers"]
    assert all(body.get("reason") for body in not_ready)
    assert result["answers"][-1][0] == 200
    expected_alerts, expected_tasks = set(_alerts(ref.outputs)), set(_tasks(ref.outputs))
    assert expected_alerts, "the history fires alerts"
    got_alerts, got_tasks = set(result["alerts"]), set(result["tasks"])
    # nothing duplicated under another id, nothing the one-worker run did not emit
    assert got_alerts <= expected_alerts, sorted(got_alerts - expected_alerts)
    assert got_tasks <= expected_tasks, sorted(got_tasks - expected_tasks)
    assert result["views"] == ref.views  # every customer's state, taken over with its table
    assert got_alerts == expected_alerts  # none lost
    assert len({a[0] for a in got_alerts}) == len({a[0] for a in expected_alerts})
    assert got_tasks == expected_tasks


async def test_sigterm_the_survivor_takes_over_partition_and_table(
    broker: Broker, reference: tuple[list[SyntheticRecord], Run], tmp_path: Path
) -> None:
    result = await _takeover(broker, reference, tmp_path, signal.SIGTERM)
    assert result["leaver_code"] == 0
    _judge(result, reference)
    assert len(result["standby_dirs"]) == PARTITIONS, result["standby_dirs"]


async def test_sigkill_the_survivor_takes_over_partition_and_table(
    broker: Broker, reference: tuple[list[SyntheticRecord], Run], tmp_path: Path
) -> None:
    result = await _takeover(broker, reference, tmp_path, signal.SIGKILL)
    assert result["leaver_code"] == -signal.SIGKILL
    _judge(result, reference)
