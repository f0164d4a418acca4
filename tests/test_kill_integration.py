"""A worker killed with SIGKILL in the middle of a backlog, then restarted on the same data.

Against a run of the same input without the kill: the same final state of every customer and
every alert and task of that run; a repeat only with the same ids (at-least-once: what was
flushed but not committed is read again, and ``event_id`` deduplication keeps it harmless).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from streams.synthetic import generate, plan_customers
from tests.conftest import Broker, Outputs, Worker, private_topics
from tests.test_backlog_integration import (
    START,
    _alerts,
    _processed,
    _publish_backlog,
    _settle,
    _tasks,
    _wait_processed,
)

pytestmark = pytest.mark.integration

CUSTOMERS = 60
SHOWN = ("account", "as_of", "features", "scores", "open_alerts")


def _env() -> dict[str, str]:
    return {
        "CHURNGUARD_CLOCK": "event",
        # small fetches and batches: the backlog takes many flushes, so the kill lands
        # between a flush and its commit or in the middle of a buffer
        "CHURNGUARD_FETCH_PARTITION_MAX_BYTES": "16384",
        "CHURNGUARD_BATCH_MAX_RECORDS": "200",
        "CHURNGUARD_FLUSH_MAX_DIRTY": "20",
    }


def _shown(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: snap[k] for k in SHOWN}


async def _views(worker: Worker, customers: list[str]) -> dict[str, Any]:
    return {
        cid: _shown(await worker.wait_customer(cid, lambda s: True, timeout=30))
        for cid in customers
    }


async def _settled_views(worker: Worker, customers: list[str]) -> dict[str, Any]:
    """The worker's views once two reads 2 s apart agree (its last flush may still be on its
    way when its outputs have settled, on a loaded machine; at most 60 s)."""
    views = await _views(worker, customers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        again = await _views(worker, customers)
        if again == views:
            break
        views = again
    return views


async def _views_like(worker: Worker, expected: dict[str, Any]) -> dict[str, Any]:
    """The worker's views once each matches ``expected`` (or the last one seen, after 60 s)."""
    views = {}
    for cid, view in expected.items():
        try:
            snap = await worker.wait_customer(cid, lambda s, v=view: _shown(s) == v, timeout=60)
        except AssertionError:
            snap = await worker.wait_customer(cid, lambda s: True, timeout=10)
        views[cid] = _shown(snap)
    return views


async def test_sigkill_mid_stream_and_restart_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    history = list(generate(plan_customers(CUSTOMERS, seed=5), start=START, days=150, seed=5))
    customers = sorted({r.key for r in history})
    runs = {}
    for name in ("killed", "whole"):
        topics = await private_topics(broker, name[0])
        await _publish_backlog(broker.bootstrap, topics, history)
        out = Outputs(broker.bootstrap, [topics.name("alerts"), topics.name("tasks")])
        await out.start()
        runs[name] = (topics, out)

    def worker(name: str, n: int) -> Worker:
        topics = runs[name][0]
        return Worker(
            broker,
            topics,
            tmp_path / name / "data",
            tmp_path / f"{name}{n}.log",
            app_id=f"cg-{topics.prefix}",
            extra_env=_env(),
        )

    whole = worker("whole", 1).start()
    first = worker("killed", 1).start()
    second: Worker | None = None
    try:
        killed_at = 0
        deadline = time.monotonic() + 120
        while killed_at == 0 and time.monotonic() < deadline:
            try:
                done = await _processed(first)
            except OSError:
                done = 0
            if done >= len(history) // 4:
                first.stop(signal.SIGKILL)
                killed_at = done
            await asyncio.sleep(0.05)
        assert 0 < killed_at < len(history), f"killed after {killed_at} of {len(history)}"
        second = worker("killed", 2).start()
        await asyncio.gather(
            _wait_processed(second, len(history) - killed_at, timeout=240),
            _wait_processed(whole, len(history)),
        )
        await asyncio.gather(_settle(runs["killed"][1]), _settle(runs["whole"][1]))
        whole_views = await _settled_views(whole, customers)
        killed_views = await _views_like(second, whole_views)
        # it resumed from committed offsets: not from the start, and not past unflushed work
        reread = await _processed(second)
    finally:
        for _, out in runs.values():
            await out.stop()
        whole.stop()
        first.stop()
        if second is not None:
            second.stop()

    assert len(history) - killed_at <= reread < len(history)
    assert killed_views == whole_views
    killed_out, whole_out = runs["killed"][1], runs["whole"][1]
    expected = _alerts(whole_out)
    assert expected, "the history fires alerts"
    got = _alerts(killed_out)
    assert sorted(set(got)) == expected  # every alert, with the same ids and times
    assert sorted(set(_tasks(killed_out))) == _tasks(whole_out)
