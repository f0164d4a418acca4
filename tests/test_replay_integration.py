"""`churnguard replay` on the real broker: progress, Ctrl-C and resume without duplicates, and
the same alert ids and fired_at as `churnguard backtest` for the same history."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.broker import ensure_topics
from streams.partitioning import partition_for
from streams.settings import BUILTIN_PACKS
from tests.conftest import Broker, Outputs, Producer, Topics, Worker

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, 9, tzinfo=UTC)


def _ev(eid: str, cid: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": eid, "customer_id": cid, "occurred_at": at.isoformat(), **fields}


def write_history(path: Path, customers: int, days: int) -> list[dict[str, Any]]:
    """Logins (and a few complaints) of ``customers`` over ``days``; some stop logging in."""
    events: list[dict[str, Any]] = []
    for c in range(customers):
        cid = f"r{c:03d}"
        last_day = days if c % 3 else days // 3  # every third goes quiet: inactivity
        for d in range(last_day):
            at = START + timedelta(days=d, minutes=c)
            events.append(_ev(f"{cid}-l{d}", cid, at, user_id="u1", channel="web"))
        if c % 4 == 0:  # a complaint spike
            for k in range(3):
                at = START + timedelta(days=5, hours=k, minutes=c)
                events.append(
                    _ev(f"{cid}-t{k}", cid, at, ticket_id=f"{cid}-t{k}", kind="complaint",
                        severity="high", status="opened")
                )  # fmt: skip
    events.sort(key=lambda e: str(e["occurred_at"]))
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return events


def churnguard(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agents", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


async def read_inputs(bootstrap: str, topics: list[str], expect: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        idle = 0
        while time.monotonic() < deadline and (len(records) < expect or idle < 3):
            batch = await consumer.getmany(timeout_ms=300)
            got = [m for msgs in batch.values() for m in msgs]
            records.extend(got)
            idle = 0 if got else idle + 1
    finally:
        await consumer.stop()
    return records


async def test_replay_survives_ctrl_c_and_resumes_without_duplicates(
    broker: Broker, tmp_path: Path
) -> None:
    topics = Topics(f"rp{uuid.uuid4().hex[:6]}")
    kinds = ("logins", "tickets")
    await ensure_topics(broker.bootstrap, [topics.name(k) for k in kinds], 2)
    history = tmp_path / "history.jsonl"
    events = write_history(history, customers=20, days=30)
    progress = tmp_path / "progress.json"
    env = {**topics.env(), "CHURNGUARD_BROKER": broker.url, "CHURNGUARD_PARTITIONS": "2"}
    # 30 days of history at 400,000x: about 6.5 s unless interrupted
    args = ["replay", str(history), "--speed", "400000x", "--progress-file", str(progress)]
    first = churnguard(args, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some, not all, events are acknowledged
        if progress.exists() and orjson.loads(progress.read_bytes())["sent"] > 0:
            break
        assert first.poll() is None, first.communicate()
        await asyncio.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130, err.decode()
    assert b"interrupted" in err and b"events/s" not in err.split(b"interrupted")[1]
    assert b"/s  ETA" in err  # the progress bar: rate and ETA
    stopped_at = orjson.loads(progress.read_bytes())["sent"]
    assert 0 < stopped_at < len(events)

    second = churnguard([*args[:3], "max", *args[4:]], env)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()
    assert f"resuming after {stopped_at:,}".encode() in err
    assert f"sent {len(events) - stopped_at:,} events".encode() in out
    again = churnguard(args, env)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0 and b"already replayed" in err

    records = await read_inputs(broker.bootstrap, [topics.name(k) for k in kinds], len(events))
    ids = [orjson.loads(r.value)["event_id"] for r in records]
    assert sorted(ids) == sorted(e["event_id"] for e in events)  # each exactly once
    per_customer: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        value = orjson.loads(r.value)
        assert r.key == value["customer_id"].encode()
        assert r.partition == partition_for(value["customer_id"], 2)
        per_customer[(r.topic, value["customer_id"])].append(value["occurred_at"])
    assert all(times == sorted(times) for times in per_customer.values())


async def test_backtest_and_a_live_replay_give_the_same_alert_ids(
    replay_pipeline: tuple[Worker, Producer, Outputs], tmp_path: Path
) -> None:
    worker, _, outputs = replay_pipeline
    history = tmp_path / "history.jsonl"
    events = write_history(history, customers=12, days=40)
    last = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
    # one late event per partition moves both watermarks well past every alert's time
    clocks = {partition_for(f"clock{i}", 2): f"clock{i}" for i in range(50)}
    with history.open("ab") as out:
        for cid in clocks.values():
            at = last + timedelta(days=20)
            out.write(orjson.dumps(_ev(f"{cid}-1", cid, at, user_id="u", channel="web")) + b"\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,churned_at\nr000,2025-05-01\n")
    report = tmp_path / "report"
    backtest = churnguard(
        ["backtest", "--events", str(history), "--labels", str(labels),
         "--rules", str(BUILTIN_PACKS), "--out", str(report)],
        {},
    )  # fmt: skip
    _, err = backtest.communicate(timeout=120)
    assert backtest.returncode == 0, err.decode()
    cutoff = last + timedelta(days=10)  # the worker's sweeps reach this (watermark − lateness)
    expected = {
        (a["alert_id"], a["fired_at"])
        for line in (report / "alerts.jsonl").read_bytes().splitlines()
        if (a := orjson.loads(line))["rule_id"] != "health-score"
        and datetime.fromisoformat(a["fired_at"]) <= cutoff
    }
    assert len({a for a, _ in expected}) >= 8  # inactivity and complaint spikes

    env = {**worker.topics.env(), "CHURNGUARD_BROKER": worker.broker.url,
           "CHURNGUARD_PARTITIONS": "2"}  # fmt: skip
    replay = churnguard(["replay", str(history), "--progress-file", str(tmp_path / "p.json")], env)
    _, err = replay.communicate(timeout=60)
    assert replay.returncode == 0, err.decode()

    def firing(topic: str, v: dict[str, Any]) -> bool:
        return topic.endswith("alerts") and v.get("status") == "firing"

    def seen() -> set[tuple[str, str]]:
        return {
            (v["alert_id"], v["fired_at"].replace("+00:00", "Z"))
            for v in outputs.matching(firing)
            if datetime.fromisoformat(v["fired_at"]) <= cutoff
        }

    deadline = time.monotonic() + 60
    while not expected <= seen() and time.monotonic() < deadline:
        await outputs.poll()
    assert seen() == expected
