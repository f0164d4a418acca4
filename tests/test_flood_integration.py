"""A flooding producer and a payload at the broker's maximum message size.

One customer sends ``FLOOD`` logins within one minute of event time (published as a backlog
in batches, as a runaway producer would); ``OTHERS`` customers of the same partition send one
login after every ``FLOOD // (OTHERS * OTHER_LOGINS)`` of the flood's. While the worker works
the backlog off, its resident memory is sampled; afterwards every event was applied once, the
others' logins were applied while the flood was still being processed (they are not starved
behind it), and the flooding customer's stored state is bounded: the last
``CHURNGUARD_RECENT_EVENT_IDS`` (512) event ids and one daily bucket, not 100,000 of anything.
Then one login padded to Apache Kafka's default maximum message size (``message.max.bytes``
1,048,588, less the record's overhead; Tansu itself takes 60 MB) is dead-lettered as
``too_large`` with the worker still running, and the next small login is processed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import rocksdict
from aiokafka import AIOKafkaProducer

from streams.partitioning import partition_for
from streams.storage import decode_stored
from tests.conftest import Broker, Outputs, Producer, Worker, private_topics
from tests.proc_stats import metric_sum, rss_bytes

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

FLOOD = 100_000
OTHERS = 10
OTHER_LOGINS = 10
KAFKA_MAX_MESSAGE = 1_048_588  # Apache Kafka's default message.max.bytes
BIG = KAFKA_MAX_MESSAGE - 1024  # the value, leaving room for the record's own overhead


def _login(cid: str, event_id: str, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "customer_id": cid,
            "occurred_at": at.isoformat(),
            "user_id": "u1",
            "channel": "web",
        }
    )


def _same_partition(prefix: str, partition: int, count: int) -> list[str]:
    names = (f"{prefix}-{i}" for i in range(10_000))
    return [n for n in names if partition_for(n, 2) == partition][:count]


async def _publish(bootstrap: str, topic: str, flooder: str, others: list[str]) -> None:
    """The flood in batches, the others' logins interleaved, all within one minute."""
    start = datetime.now(UTC) - timedelta(hours=2)
    step = timedelta(seconds=60) / FLOOD
    every = FLOOD // (len(others) * OTHER_LOGINS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        sent_others = 0
        for i in range(FLOOD):
            at = start + i * step
            pending.append(
                await producer.send(topic, _login(flooder, f"f{i}", at), flooder.encode())
            )
            if (i + 1) % every == 0:
                cid = others[sent_others % len(others)]
                eid = f"{cid}-{sent_others // len(others)}"
                pending.append(await producer.send(topic, _login(cid, eid, at), cid.encode()))
                sent_others += 1
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _stored(data_dir: Path, partition: int, customer_id: str) -> bytes:
    """A customer's value in the stopped worker's RocksDB."""
    (db,) = data_dir.rglob(f"customer-state-{partition}.db")
    options = rocksdict.Options(raw_mode=True)
    store = rocksdict.Rdict(str(db), options=options, access_type=rocksdict.AccessType.read_only())
    try:
        value = store.get(customer_id.encode())
    finally:
        store.close()
    assert value is not None, customer_id
    return bytes(value)


async def test_a_flooding_customer_and_a_maximum_size_payload(
    broker: Broker, tmp_path: Path
) -> None:
    topics = await private_topics(broker, "f")
    partition = 0
    flooder, *others = _same_partition(f"flood-{topics.prefix}", partition, OTHERS + 1)
    worker = Worker(
        broker, topics, tmp_path / "data", tmp_path / "worker.log", app_id=f"cg-{topics.prefix}"
    ).start()
    outputs = Outputs(broker.bootstrap, [topics.name("deadletter")])
    await outputs.start()
    samples: list[int] = []
    try:
        await worker.wait_ready()
        assert worker.proc is not None
        pid = worker.proc.pid
        rss_before = rss_bytes(pid)
        await _publish(broker.bootstrap, topics.name("logins"), flooder, others)
        total_others = OTHERS * OTHER_LOGINS
        others_meanwhile = 0  # others' logins seen applied while the flood was in progress
        deadline = time.monotonic() + 180
        while True:
            assert time.monotonic() < deadline, "the flood was not worked off in 180 s"
            assert worker.proc.poll() is None, worker.log()[-3000:]
            samples.append(rss_bytes(pid))
            snaps = await asyncio.gather(*(worker.customer(c) for c in [flooder, *others]))
            counts = [s["features"]["logins_7d"] if s else 0 for s in snaps]
            if counts[0] < FLOOD:
                others_meanwhile = max(others_meanwhile, sum(counts[1:]))
            if counts[0] == FLOOD and sum(counts[1:]) == total_others:
                break
            await asyncio.sleep(0.25)
        metrics = await worker.metrics()
        applied = metric_sum(metrics, "churnguard_events_total", outcome="applied")
        duplicates = metric_sum(metrics, "churnguard_events_total", outcome="duplicate")

        # one login at the broker's maximum message size, then a small one behind it
        big_cid, small_cid = others[0], others[1]
        padded = orjson.loads(_login(big_cid, "big-1", datetime.now(UTC)))
        padded["padding"] = ""
        padded["padding"] = "p" * (BIG - len(orjson.dumps(padded)))
        big = orjson.dumps(padded)
        assert len(big) == BIG
        producer = Producer(broker.bootstrap)
        await producer.start()
        try:
            await producer.send(topics.name("logins"), big, big_cid)
            await producer.send(
                topics.name("logins"), _login(small_cid, "after-big", datetime.now(UTC)), small_cid
            )
        finally:
            await producer.stop()
        (letter,) = await outputs.wait_for(lambda t, v: v.get("reason") == "too_large")
        await worker.wait_customer(
            small_cid, lambda s: s["features"]["logins_7d"] == OTHER_LOGINS + 1
        )
        samples.append(rss_bytes(pid))
    finally:
        await outputs.stop()
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]
    flood_state = _stored(tmp_path / "data", partition, flooder)
    other_state = _stored(tmp_path / "data", partition, others[2])
    state = decode_stored(flood_state)
    peak = max(samples)
    print(
        f"\nflood: {FLOOD} logins of one customer in one minute of event time and "
        f"{total_others} of {OTHERS} others on its partition; applied {applied:.0f}, "
        f"duplicates {duplicates:.0f}; others' logins applied while the flood was in "
        f"progress: {others_meanwhile} of {total_others}; worker RSS {rss_before / 2**20:.0f} MB "
        f"before, peak {peak / 2**20:.0f} MB ({len(samples)} samples); stored state "
        f"{len(flood_state)} B for the flooder ({len(state.recent_ids)} event ids kept), "
        f"{len(other_state)} B for a customer with {OTHER_LOGINS} logins; "
        f"{BIG}-byte login dead-lettered as {letter['reason']}"
    )
    assert applied == FLOOD + total_others and duplicates == 0
    assert others_meanwhile > 0, "the others waited for the whole flood"
    assert len(state.recent_ids) == 512  # CHURNGUARD_RECENT_EVENT_IDS
    assert len(flood_state) < 64 * 1024, len(flood_state)
    assert letter["source_topic"] == topics.name("logins")
    assert peak - rss_before < 256 * 2**20, f"RSS grew by {(peak - rss_before) / 2**20:.0f} MB"
