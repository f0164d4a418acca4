"""The input reader: every input topic of the owned partitions, read in bulk, merged in event time.

Faust's consumer group decides which partition numbers this worker owns (the partitions of
``churnguard.ticks`` it is assigned, together with the table's changelog partitions, which
Faust recovers). Beside it, one aiokafka consumer reads the input topics (``crm.*``,
``cs.task-updates`` and the re-key topic) of exactly those partition numbers, fetches in
bulk, decodes each record once, and per partition number merges the topics in event time
(:class:`streams.alignment.Aligner`), then hands the pipeline whole batches.

Offsets of the input topics are committed under the group ``<app id>-inputs`` (the reader
assigns its partitions itself, so it is not a member of Faust's group), only after the
flush that covers them has been acknowledged: state changelog, alerts, tasks, snapshots,
dead letters and re-keyed records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agents.runtime import Flushed, Pipeline, Record
from streams.alignment import Aligner
from streams.kafka_security import client_options
from streams.settings import Settings

log = logging.getLogger("churnguard.reader")
POLL_TIMEOUT_MS = 100
REVOKE_WAIT_S = 10.0


class InputReader:
    """Reads the owned partitions' input topics and drives the pipeline in batches."""

    def __init__(self, app: Any, settings: Settings, pipeline: Pipeline) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        topics = pipeline.topics
        self.input_topics = [t.get_topic_name() for t in topics.inputs.values()]
        self.input_topics.append(topics.rekeyed.get_topic_name())
        self.ticks_topic = topics.ticks.get_topic_name()
        self.group_id = f"{settings.app_id}-inputs"
        self.consumer: AIOKafkaConsumer | None = None
        self.owned: list[int] = []
        self.active = False  # false while Faust rebalances and recovers the table
        self.generation = 0  # +1 at every revocation and assignment
        self.assigned = asyncio.Event()
        self.aligners: dict[int, Aligner[Record]] = {}
        self.paused: set[TopicPartition] = set()
        self.record_bytes: dict[TopicPartition, int] = {}  # mean value size of the last fetch
        self.commits: dict[int, asyncio.Future[None]] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.last_sweep: dict[int, float] = {}
        self.max_idle_s = settings.max_idle_ms / 1000.0
        self._step_lock = asyncio.Lock()  # a drain waits for the round in progress
        self.last_contact = time.monotonic()  # the broker last answered a fetch (or we were busy)
        self._last_poll_ms = 0  # newest fetch answer seen (aiokafka's wall-clock ms)
        self.unreachable = False  # broker_unreachable logged, broker_reachable not yet
        self.silent_since = 0.0  # when the broker last answered before it was unreachable

    # -- rebalancing (Faust's signals) -------------------------------------------------------
    async def on_revoked(self) -> None:
        """Stop processing; unflushed work is dropped (replayed from the committed offsets)."""
        self.active = False
        self.generation += 1
        self._forget_owned()
        pending = [c for c in self.commits.values() if not c.done()]
        if pending:
            await asyncio.wait(pending, timeout=REVOKE_WAIT_S)

    async def on_rebalance_complete(self) -> None:
        """The table is recovered: read the input topics of the partitions now owned."""
        self._forget_owned()  # if not revoked first: positions restart, unflushed work goes
        owned = sorted(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.ticks_topic
        )
        self.owned = owned
        self.pipeline.on_assigned()
        await self.pipeline.restore_lost_changelog(owned)
        now = time.monotonic()
        self.aligners = {}
        for p in owned:
            aligner: Aligner[Record] = Aligner(self.max_idle_s)
            for name in self.input_topics:
                aligner.source(name, now)
            self.aligners[p] = aligner
        self.paused.clear()
        self.committed.clear()
        self.last_sweep = tick_phases(owned, now, self.settings.tick_interval_s)
        self.last_contact = now
        if self.consumer is not None:
            tps = [TopicPartition(t, p) for p in owned for t in self.input_topics]
            self.consumer.assign(tps)  # positions restart from the committed offsets
            await self._resume_from_faust_group(self.consumer, tps)
        log.info(
            "inputs_assigned partitions=%s topics=%d group=%s max_idle_ms=%d",
            owned,
            len(self.input_topics),
            self.group_id,
            self.settings.max_idle_ms,
        )
        self.generation += 1
        self.active = True
        self.assigned.set()

    def _forget_owned(self) -> None:
        """Drop the owned partitions' unflushed work and buffered records."""
        self.pipeline.on_revoked(self.owned)
        self.pipeline.metrics.consumer_lag.clear()  # the next owner reports these partitions
        self.owned = []
        self.aligners = {}

    async def _resume_from_faust_group(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> None:
        """Where the inputs group has no offset yet, start from the app's own group's.

        Before the reader existed, Faust's agents committed the input offsets under the app
        id; a worker upgraded in place goes on from there instead of reading from the start.
        """
        missing = [tp for tp in tps if await consumer.committed(tp) is None]
        if not missing:
            return
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        try:
            await admin.start()
            earlier = await admin.list_consumer_group_offsets(
                self.settings.app_id, partitions=missing
            )
        except KafkaError as exc:
            log.warning("earlier_offsets_unreadable group=%s error=%r", self.settings.app_id, exc)
            return
        finally:
            await admin.close()
        for tp, meta in earlier.items():
            if meta.offset >= 0:
                consumer.seek(tp, meta.offset)
                log.info(
                    "input_resumed_from_app_group topic=%s partition=%d offset=%d",
                    tp.topic,
                    tp.partition,
                    meta.offset,
                )

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Fetch, align, process, sweep, flush and commit until the app stops."""
        settings = self.settings
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=self.group_id,
            client_id=f"{settings.app_id}-inputs",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.fetch_partition_max_bytes,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        await consumer.start()
        self.consumer = consumer
        if self.active:  # assigned before the consumer started
            await self.on_rebalance_complete()
        try:
            while not self.app.should_stop:
                if not self.active:
                    self.assigned.clear()
                    await self.assigned.wait()
                    continue
                async with self._step_lock:
                    if self.active:
                        await self.step(consumer)
        finally:
            self.consumer = None
            await consumer.stop()

    async def drain(self) -> None:
        """Stop reading, flush what was processed and wait for its commit (a graceful stop).

        Runs before Faust stops its consumer (which closes the stores) and its producer: the
        partitions' next owner then starts where this worker stopped instead of replaying the
        uncommitted tail.
        """
        owned = list(self.owned)
        async with self._step_lock:
            consumer = self.consumer
            if self.active and consumer is not None:
                generation = self.generation
                for p in owned:
                    await self._flush(consumer, p, generation)
                self.active = False
                self.generation += 1
        pending = [c for c in self.commits.values() if not c.done()]
        if pending:
            await asyncio.wait(pending, timeout=REVOKE_WAIT_S)
        log.info(
            "inputs_drained partitions=%s uncommitted_flushes=%d",
            owned,
            sum(1 for c in self.commits.values() if not c.done()),
        )

    def _current(self, generation: int) -> bool:
        """True while no rebalance happened since ``generation`` was read."""
        return self.active and self.generation == generation

    async def step(self, consumer: AIOKafkaConsumer) -> None:
        """One round: fetch what is there, process what alignment allows, sweep, flush.

        Every await may let a rebalance in: the round ends there if one did (the stores of
        revoked partitions may be closed, and positions restart on assignment).
        """
        generation = self.generation
        fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
        if not self._current(generation):
            return
        self._note_contact(consumer, bool(fetched))
        decode = self.pipeline.decode
        for tp, messages in fetched.items():
            aligner = self.aligners.get(tp.partition)
            if aligner is None:
                continue
            size = sum(len(m.value) for m in messages if m.value is not None)
            self.record_bytes[tp] = max(1, size // len(messages)) if messages else 1
            aligner.add(
                tp.topic,
                [
                    decode(m.topic, m.partition, m.offset, m.key, m.value, m.headers)
                    for m in messages
                ],
            )
        now = time.monotonic()
        limit = self.settings.batch_max_records
        for p in self.owned:
            aligner = self.aligners[p]
            caught_up = True
            for name in self.input_topics:
                tp = TopicPartition(name, p)
                position = await consumer.position(tp)
                if not self._current(generation):
                    return
                highwater = consumer.highwater(tp)
                up = highwater is not None and position >= highwater
                if highwater is not None:
                    lag = self.pipeline.metrics.consumer_lag
                    lag.labels(name, str(p)).set(max(0, highwater - position))
                aligner.set_caught_up(name, up)
                caught_up = caught_up and up
                self._backpressure(consumer, tp, aligner.buffered(name))
            while self._current(generation):
                ready = aligner.drain(now, limit)
                if ready:
                    self.pipeline.process(p, ready)
                    await self.pipeline.send_outputs(p)
                if len(ready) < limit:
                    break
                # a backlog: batch after batch, but the flush bounds hold between them
                if self.pipeline.flush_due(p):
                    await self._flush(consumer, p, generation)
                await asyncio.sleep(0)  # let the web server and timers in between batches
            if not self._current(generation):
                return
            if aligner.gave_up:
                self._report_timeouts(p, aligner)
            ticked = tick_due(self.last_sweep[p], now, self.settings.tick_interval_s)
            if ticked is not None:
                self.last_sweep[p] = ticked
                self.pipeline.sweep(p, self._sweep_time(p, caught_up))
                await self._flush(consumer, p, generation)
            elif self.pipeline.flush_due(p):
                await self._flush(consumer, p, generation)
            if not self._current(generation):
                return

    def broker_silence_s(self) -> float:
        """Seconds since the broker last answered a fetch of an owned input partition."""
        return time.monotonic() - self.last_contact

    def _note_contact(self, consumer: AIOKafkaConsumer, fetched: bool) -> None:
        """Remember whether the broker answered this round's fetch; log the transitions.

        aiokafka retries an unreachable broker by itself (and logs every failed attempt); the
        reader only sees empty rounds. A fetch answer, even an empty one, moves
        ``last_poll_timestamp``; paused partitions are not fetched, so while any is paused the
        worker counts as busy, not cut off.
        """
        now = time.monotonic()
        newest = max(
            (consumer.last_poll_timestamp(tp) or 0 for tp in consumer.assignment()), default=0
        )
        # no partition owned (more workers than partitions): nothing to fetch, nothing to say
        answered = fetched or not self.owned or bool(self.paused) or newest > self._last_poll_ms
        self._last_poll_ms = max(self._last_poll_ms, newest)
        if answered:
            if self.unreachable:
                log.warning(
                    "broker_reachable_again silent_s=%.1f action=resume",
                    now - self.silent_since,
                )
                self.unreachable = False
            self.last_contact = now
            return
        silent = now - self.last_contact
        if not self.unreachable and silent >= self.settings.broker_unreachable_s:
            self.unreachable = True
            self.silent_since = self.last_contact
            log.error(
                "broker_unreachable silent_s=%.1f threshold_s=%.1f partitions=%s "
                "action=retry_until_back (readyz 503; nothing committed meanwhile)",
                silent,
                self.settings.broker_unreachable_s,
                self.owned,
            )

    def _report_timeouts(self, partition: int, aligner: Aligner[Record]) -> None:
        for topic in aligner.gave_up:
            self.pipeline.metrics.alignment_timeouts.labels(topic).inc()
            log.warning(
                "alignment_wait_timed_out topic=%s partition=%d max_idle_ms=%d "
                "action=process_other_topics (its older records will be late)",
                topic,
                partition,
                self.settings.max_idle_ms,
            )
        aligner.gave_up.clear()

    def _sweep_time(self, partition: int, caught_up: bool) -> float | None:
        """Wall time once the partition has read everything; while it reads a backlog, its
        event-time watermark (so no customer is swept past events still unread)."""
        if self.settings.clock == "wall" and caught_up:
            return time.time()
        return self.pipeline.watermarks.now(partition)

    def _backpressure(self, consumer: AIOKafkaConsumer, tp: TopicPartition, buffered: int) -> None:
        limit = buffer_limit(
            self.settings.max_buffered_records,
            self.settings.max_buffered_bytes,
            self.record_bytes.get(tp, 1),
        )
        if tp not in self.paused and buffered >= limit:
            consumer.pause(tp)
            self.paused.add(tp)
        elif tp in self.paused and buffered < limit // 2:
            consumer.resume(tp)
            self.paused.discard(tp)

    # -- flush and commit --------------------------------------------------------------------
    async def _positions(
        self, consumer: AIOKafkaConsumer, partition: int, generation: int
    ) -> dict[Any, int] | None:
        """Offsets to commit for ``partition``: the first record not yet taken, per topic
        (None when a rebalance came in between)."""
        aligner = self.aligners[partition]
        offsets: dict[Any, int] = {}
        for name in self.input_topics:
            tp = TopicPartition(name, partition)
            head = aligner.head(name)
            offset = head.offset if head is not None else await consumer.position(tp)
            if not self._current(generation):
                return None
            if self.committed.get(tp) != offset:
                offsets[tp] = offset
        return offsets

    async def _flush(self, consumer: AIOKafkaConsumer, partition: int, generation: int) -> None:
        offsets = await self._positions(consumer, partition, generation)
        if offsets is None or not self._current(generation):  # its store may be gone
            return
        flushed = await self.pipeline.flush(partition)
        if not self._current(generation):  # revoked while the outputs were acknowledged
            return
        if flushed is None and not offsets:
            return
        previous = self.commits.get(partition)
        self.commits[partition] = asyncio.ensure_future(
            self._commit(consumer, flushed, offsets, previous)
        )

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        flushed: Flushed | None,
        offsets: dict[Any, int],
        previous: asyncio.Future[None] | None,
    ) -> None:
        """Commit ``offsets`` once the flush is acknowledged (and the one before it)."""
        if previous is not None:
            await asyncio.wait([previous])
        try:
            if flushed is not None:
                await self.pipeline.delivered(flushed)
        except Exception as exc:  # the records are not written: stop before committing
            if self.app.should_stop:  # the producer closed under a stopping worker
                log.warning(
                    "flush_not_committed partition=%s reason=stopping error=%r "
                    "(its input is read again by the partition's next owner)",
                    flushed.partition if flushed else None,
                    exc,
                )
                return
            log.critical(
                "delivery_failed partition=%s error=%r action=stop_worker "
                "(uncommitted input is read again on restart)",
                flushed.partition if flushed else None,
                exc,
            )
            await self.app.crash(exc)
            return
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # the next flush commits newer offsets
            log.warning(
                "commit_failed group=%s error=%r action=retry_next_flush", self.group_id, exc
            )
            return
        self.committed.update(offsets)


def buffer_limit(max_records: int, max_bytes: int, record_bytes: int) -> int:
    """Records an input topic partition may buffer before fetching pauses: ``max_records``,
    or fewer when records of ``record_bytes`` (the mean size lately fetched) would exceed
    ``max_bytes`` together; at least 2, so a paused partition can resume at half."""
    return max(2, min(max_records, max_bytes // max(1, record_bytes)))


def tick_phases(owned: list[int], now: float, tick: float) -> dict[int, float]:
    """The time each owned partition last ticked, as if: spread over one interval, so that
    the partitions' sweeps and flushes fall into different rounds of the reader instead of
    all holding up the same one (the first tick comes within two intervals)."""
    return {p: now + tick * k / len(owned) for k, p in enumerate(owned)}


def tick_due(last: float, now: float, tick: float) -> float | None:
    """When a partition that last ticked at ``last`` ticks now: the latest time of its own
    phase not after ``now`` (so a slow round does not bring the partitions into step);
    None while its next tick is not due."""
    since = now - last
    if since < tick:
        return None
    return last + tick * (since // tick)
