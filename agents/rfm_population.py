"""The RFM population behind quintile scores: per-partition sketches, merged across workers.

Each worker remembers, for the customers of its partitions, the last purchase day, the repeat
purchase days and the average repeat value (updated at every flush). On a schedule it
summarises each owned partition into an :class:`~streams.sketch.RfmSketch` (recency counted
to the partition's clock) and publishes it to the compacted internal topic
``churnguard.rfm-sketches``, keyed by partition. Every worker reads that whole topic (no
consumer group: a global table kept in memory), merges the newest summary of each partition
and gives the engine the new cut points.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from streams.features import purchase_history
from streams.kafka_security import client_options
from streams.settings import Settings
from streams.sketch import CutPoints, RfmSketch, cut_points, merge_sketches
from streams.state import CustomerState, day_of

log = logging.getLogger("churnguard.rfm")


class RfmPopulation:
    """What this worker knows of its partitions' purchase histories."""

    def __init__(self) -> None:
        self._points: dict[int, dict[str, tuple[int, int, float]]] = {}

    def note(self, partition: int, state: CustomerState) -> None:
        """Remember the customer's purchase history (nothing before its first order)."""
        history = purchase_history(state, 0.0)  # frequency and monetary do not age
        if history is None or state.rfm_last_day is None:
            return
        repeat, _, _, monetary = history
        self._points.setdefault(partition, {})[state.customer_id] = (
            state.rfm_last_day,
            repeat,
            monetary,
        )

    def forget(self, partition: int) -> None:
        """Drop a revoked partition (its next owner summarises it)."""
        self._points.pop(partition, None)

    def sketch(self, partition: int, now: float) -> RfmSketch:
        """The partition's summary, recency in whole days up to ``now``."""
        sketch = RfmSketch(partition=partition, as_of=now)
        today = day_of(now)
        for last, repeat, monetary in self._points.get(partition, {}).values():
            sketch.add(max(0, today - last), repeat, monetary)
        return sketch


def merged_cut_points(summaries: Mapping[bytes, bytes]) -> CutPoints | None:
    """Cut points of all partitions' summaries in the global table (unreadable ones skipped)."""
    good: list[RfmSketch] = []
    for key, raw in summaries.items():
        if not raw:
            continue
        try:
            good.append(RfmSketch.from_bytes(raw))
        except ValueError as exc:
            log.warning("rfm_summary_unreadable key=%r error=%s action=skipped", key, exc)
    return cut_points(merge_sketches(good)) if good else None


async def read_rfm_summaries(settings: Settings, into: dict[bytes, bytes]) -> None:
    """Follow the summaries topic from its start, keeping the newest summary per partition.

    Runs for the worker's lifetime; reconnects after broker errors.
    """
    while True:
        consumer = AIOKafkaConsumer(
            settings.topic_rfm,
            **client_options(settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        if record.key is not None and record.value:
                            into[record.key] = record.value
        except (KafkaError, OSError, ValueError) as exc:  # never stop the worker for this
            log.warning("rfm_summaries_read_failed error=%r action=retry_in_5s", exc)
            await asyncio.sleep(5)
        finally:
            await consumer.stop()
