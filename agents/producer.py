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
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.partitioning import partition_of_key

log = logging.getLogger("churnguard.producer")


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


class Handoff:
    """Hands closed batches to the producer in the background, in order per topic partition.

    aiokafka's accumulator holds one batch per topic partition that has not gone out in a
    request yet: ``send_batch`` of the next one waits until it has, a produce round trip. A
    flush whose changelog fills several batches would wait that long per batch on the
    reader's path. Here each batch waits behind the previous one of its topic partition in a
    task of its own, and the caller gets its :class:`Sent` at once (done when the broker
    acknowledged the batch). At most ``max_waiting`` batches wait to be handed over; beyond
    that the caller waits for room, as it waited for the accumulator before.
    """

    def __init__(self, max_waiting: int = 64) -> None:
        self.max_waiting = max_waiting
        self._last: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._waiting = 0
        self._room = asyncio.Event()
        self._room.set()

    async def send(self, producer: Any, batch: Any, topic: str, partition: int, count: int) -> Sent:
        """Queue ``batch`` (closed) behind the topic partition's previous one."""
        while self._waiting >= self.max_waiting:
            self._room.clear()
            await self._room.wait()
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acked.add_done_callback(_retrieved)
        key = (topic, partition)
        self._waiting += 1
        self._last[key] = asyncio.ensure_future(
            self._hand_over(producer, batch, topic, partition, self._last.get(key), acked)
        )
        return Sent(topic, partition, count, acked)

    async def _hand_over(
        self,
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        previous: asyncio.Future[None] | None,
        acked: asyncio.Future[Any],
    ) -> None:
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            delivery = await producer.send_batch(batch, topic, partition=partition)
        except asyncio.CancelledError:
            acked.cancel()
            raise
        except Exception as exc:  # the caller learns it from the batch's Sent
            log.warning(
                "batch_not_delivered topic=%s partition=%d error=%r (not committed: the input "
                "is read again)",
                topic,
                partition,
                exc,
            )
            acked.set_exception(exc)
            return
        finally:
            self._waiting -= 1
            self._room.set()
        delivery.add_done_callback(lambda done: _settle(done, acked))


def _retrieved(acked: asyncio.Future[Any]) -> None:
    """Mark a failed batch's exception as seen: it is logged above, and a caller that is gone
    (a worker stopping) leaves it unawaited without asyncio reporting it as lost."""
    if not acked.cancelled():
        acked.exception()


def _settle(done: asyncio.Future[Any], acked: asyncio.Future[Any]) -> None:
    """Pass a delivery's outcome on to the future the caller holds."""
    if acked.done():
        return
    if done.cancelled():
        acked.cancel()
    elif done.exception() is not None:
        acked.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        acked.set_result(done.result())


async def send_batches(
    producer: Any, records: Sequence[OutRecord], handoff: Handoff | None = None
) -> list[Sent]:
    """Hand ``records`` to the aiokafka ``producer`` in batches; per topic partition, in order
    (through ``handoff`` when given, else waiting for the producer's accumulator)."""
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
            producer,
            topic,
            partition,
            [(rec.key, rec.value, rec.headers) for rec in group],
            handoff,
        )
    return sent


async def send_to_partition(
    producer: Any,
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]],
    handoff: Handoff | None = None,
) -> list[Sent]:
    """Hand (key, value, headers) records to one topic partition in batches, in order."""
    send = handoff.send if handoff is not None else _send
    sent: list[Sent] = []
    batch = producer.create_batch()
    count = 0
    for key, value, headers in records:
        if batch.append(key=key, value=value, timestamp=None, headers=headers):
            count += 1
            continue
        batch.close()
        sent.append(await send(producer, batch, topic, partition, count))
        batch = producer.create_batch()
        batch.append(key=key, value=value, timestamp=None, headers=headers)
        count = 1
    if count:
        batch.close()
        sent.append(await send(producer, batch, topic, partition, count))
    return sent


async def _send(producer: Any, batch: Any, topic: str, partition: int, count: int) -> Sent:
    future = await producer.send_batch(batch, topic, partition=partition)
    return Sent(topic, partition, count, future)


async def _partition_count(producer: Any, topic: str) -> int:
    await producer.client._wait_on_metadata(topic)
    found = producer.client.cluster.partitions_for_topic(topic)
    if not found:
        raise RuntimeError(f"no partitions known for topic {topic}")
    return len(found)
