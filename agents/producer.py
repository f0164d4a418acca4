"""Records handed to the producer as whole batches, one per topic partition.

``AIOKafkaProducer.send`` costs a partitioner call, a future and an accumulator round per
record; a flush hands over hundreds of changelog records and a batch dozens of outputs. Here
the records are grouped by topic partition (keyed records without a partition get the
partition Kafka's default partitioner gives their key) and appended to aiokafka's own batch
builder, so there is one future per batch. The builder honours the producer's
``max_batch_size`` (``CHURNGUARD_PRODUCER_MAX_BATCH_SIZE``): a full batch is sent and a new
one started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.partitioning import partition_of_key


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce; ``partition`` None: by the key, as Kafka's partitioner does."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """A batch handed to the producer: done when the broker acknowledged all of it."""

    topic: str
    partition: int
    count: int
    future: asyncio.Future[Any]

    async def last_offset(self) -> int:
        """Offset of the batch's last record, once acknowledged."""
        meta = await self.future
        return int(meta.offset) + self.count - 1


async def send_batches(producer: Any, records: Sequence[OutRecord]) -> list[Sent]:
    """Hand ``records`` to the aiokafka ``producer`` in batches; per topic partition, in order."""
    groups: dict[tuple[str, int], list[OutRecord]] = {}
    partitions: dict[str, int] = {}
    for rec in records:
        partition = rec.partition
        if partition is None:
            count = partitions.get(rec.topic)
            if count is None:
                count = partitions[rec.topic] = await _partition_count(producer, rec.topic)
            partition = partition_of_key(rec.key or b"", count)
        groups.setdefault((rec.topic, partition), []).append(rec)
    sent: list[Sent] = []
    for (topic, partition), group in groups.items():
        sent += await send_to_partition(
            producer, topic, partition, [(rec.key, rec.value, rec.headers) for rec in group]
        )
    return sent


async def send_to_partition(
    producer: Any,
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]],
) -> list[Sent]:
    """Hand (key, value, headers) records to one topic partition in batches, in order."""
    sent: list[Sent] = []
    batch = producer.create_batch()
    count = 0
    for key, value, headers in records:
        if batch.append(key=key, value=value, timestamp=None, headers=headers):
            count += 1
            continue
        sent.append(await _send(producer, batch, topic, partition, count))
        batch = producer.create_batch()
        batch.append(key=key, value=value, timestamp=None, headers=headers)
        count = 1
    if count:
        sent.append(await _send(producer, batch, topic, partition, count))
    return sent


async def _send(producer: Any, batch: Any, topic: str, partition: int, count: int) -> Sent:
    batch.close()
    future = await producer.send_batch(batch, topic, partition=partition)
    return Sent(topic, partition, count, future)


async def _partition_count(producer: Any, topic: str) -> int:
    await producer.client._wait_on_metadata(topic)
    found = producer.client.cluster.partitions_for_topic(topic)
    if not found:
        raise RuntimeError(f"no partitions known for topic {topic}")
    return len(found)
