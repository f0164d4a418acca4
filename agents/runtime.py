"""The glue between Faust events and the pure engine: decode, buffer, flush, sweep.

Each partition has a write-behind buffer. Events update customer states in the buffer; a
flush writes each dirty customer to the table once (with its next deadline, which also goes
into the partition's deadline index), delivers the buffered alerts and tasks, and only then
acks the events, so committed offsets never run ahead of persisted state.
A flush happens when a buffer gets old or large, and on every tick of the partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faust.types import TP, AppT, EventT, TopicT

from agents.metrics import Metrics
from agents.rfm_population import RfmPopulation, merged_cut_points
from rules.engine import TIER_CHANGED, Engine, Output, Result
from schemas import (
    AlertEvent,
    CustomerHealth,
    DecodeError,
    InputEvent,
    TaskEvent,
    cloudevent_headers,
    decode_input,
    encode,
    make_dead_letter,
)
from streams.app import Topics
from streams.clock import Clock, WatermarkClock
from streams.deadlines import DeadlineIndex
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.state import CustomerState
from streams.storage import decode_stored, encode_stored, stored_deadline, stored_fingerprint

log = logging.getLogger("churnguard.runtime")
KIND_HEADER = "churnguard-kind"
STALE_TICK_S = 30.0


@dataclass
class PartitionBuffer:
    """Unpersisted work of one partition."""

    states: dict[str, CustomerState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    outputs: list[Output | CustomerHealth] = field(default_factory=list)
    pending: list[EventT] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)


def _header_items(headers: Any) -> list[tuple[str, bytes]]:
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in items]


def _header(headers: Any, name: str) -> bytes | None:
    return next((v for k, v in _header_items(headers) if k == name), None)


class Pipeline:
    """Per-worker runtime: partition buffers, deadline indexes, the engine and the sinks."""

    def __init__(
        self,
        app: AppT,
        settings: Settings,
        topics: Topics,
        table: Any,
        engine: Engine,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.settings = settings
        self.topics = topics
        self.table = table
        self.engine = engine
        self.clock = clock
        self.metrics = metrics
        self.buffers: dict[int, PartitionBuffer] = {}
        self.indexes: dict[int, DeadlineIndex] = {}
        self.index_stale = True
        self.rfm = RfmPopulation()
        self.rfm_summaries: dict[bytes, bytes] = {}  # partition → newest summary, all workers
        # event mode sweeps on the watermark itself: one clock, observed once per event
        self.watermarks = (
            clock
            if isinstance(clock, WatermarkClock)
            else WatermarkClock(settings.allowed_lateness_s, settings.watermark_idle_s)
        )

    # -- per event ----------------------------------------------------------------------
    async def handle(self, kind: str | None, event: EventT) -> None:
        """Process one input record: dead-letter, re-key, or apply to its customer."""
        msg = event.message
        topic = msg.topic
        if kind is None:  # the re-key topic says the kind in a header
            raw_kind = _header(msg.headers, KIND_HEADER)
            kind = raw_kind.decode() if raw_kind else None
        try:
            if kind is None:
                raise DecodeError("schema", f"missing {KIND_HEADER} header on re-keyed record")
            parsed = decode_input(kind, msg.value, msg.headers)
            self._check_time(parsed)
        except DecodeError as exc:
            await self._dead_letter(event, exc.reason, exc.message)
            return
        customer_key = parsed.customer_id.encode()
        partition = partition_for(parsed.customer_id, self.settings.partitions)
        if msg.key != customer_key or msg.partition != partition:
            await self._rekey(event, kind, parsed, partition)
            return
        occurred = parsed.occurred_at.timestamp()
        watermark = self.watermarks.now(msg.partition)
        if watermark is not None and occurred < watermark:
            self.metrics.late_events.labels(topic).inc()
        self.watermarks.observe(msg.partition, occurred, topic)
        if self.clock is not self.watermarks:
            self.clock.observe(msg.partition, occurred, topic)
        buf = self._buffer(msg.partition)
        state = self._load(buf, parsed.customer_id)
        started = time.perf_counter()
        result = self.engine.apply(state, parsed, not_before=watermark or 0.0)
        self.metrics.engine_seconds.inc(time.perf_counter() - started)
        self.metrics.events.labels(topic, "applied" if result.applied else "duplicate").inc()
        if result.applied:
            self._record(buf, msg.partition, state, result)
        buf.pending.append(event)
        if (
            len(buf.dirty) >= self.settings.flush_max_dirty
            or time.monotonic() - buf.opened >= self.settings.flush_interval_s
        ):
            await self.flush(msg.partition)

    async def tick(self, event: EventT) -> None:
        """Sweep the partition's due customers, then flush it."""
        partition = event.message.partition
        if self.index_stale:
            self.rebuild_indexes()
        now = self.clock.now(partition)
        fresh = time.time() - event.message.timestamp <= STALE_TICK_S
        buf = self._buffer(partition)
        if now is not None and fresh:
            index = self.indexes.setdefault(partition, DeadlineIndex())
            due = index.pop_due(now)
            self.metrics.sweep_due.inc(len(due))
            for customer_id in due:
                state = self._load(buf, customer_id)
                started = time.perf_counter()
                result = self.engine.advance(state, now)
                self.metrics.engine_seconds.inc(time.perf_counter() - started)
                self._record(buf, partition, state, result)
            self.metrics.scheduled_customers.labels(str(partition)).set(len(index))
        buf.pending.append(event)
        await self.flush(partition)

    def _check_time(self, event: InputEvent) -> None:
        if self.settings.clock != "wall":
            return
        ahead = event.occurred_at.timestamp() - time.time()
        if ahead > self.settings.max_future_skew_s:
            raise DecodeError(
                "timestamp_out_of_range",
                f"occurred_at is {ahead:.0f}s in the future "
                f"(limit CHURNGUARD_MAX_FUTURE_SKEW_S={self.settings.max_future_skew_s:.0f})",
            )

    # -- buffers and state ----------------------------------------------------------------
    def _buffer(self, partition: int) -> PartitionBuffer:
        buf = self.buffers.get(partition)
        if buf is None:
            buf = self.buffers[partition] = PartitionBuffer()
        return buf

    def _load(self, buf: PartitionBuffer, customer_id: str) -> CustomerState:
        state = buf.states.get(customer_id)
        if state is not None:
            return state
        raw = self.table.get(customer_id.encode())
        if raw is None:
            state = CustomerState(customer_id)
        else:
            try:
                state = decode_stored(raw)
            except (ValueError, KeyError) as exc:
                log.error(
                    "state_unreadable customer_id=%s error=%r action=start_fresh", customer_id, exc
                )
                state = CustomerState(customer_id)
        buf.states[customer_id] = state
        return state

    def _record(
        self, buf: PartitionBuffer, partition: int, state: CustomerState, result: Result
    ) -> None:
        buf.dirty.add(state.customer_id)
        buf.outputs.extend(result.outputs)
        buf.outputs.extend(result.snapshots)
        if result.evaluations:
            self.metrics.rule_eval_seconds.observe(result.eval_seconds)
        for rule_id, alert_id in result.forgotten:
            log.warning(
                "rule_removed_from_pack customer_id=%s rule_id=%s alert_id=%s "
                "action=forgotten (its alert and task are not resolved by churnguard)",
                state.customer_id,
                rule_id,
                alert_id,
            )
        for error in result.errors:
            self.metrics.rule_errors.labels(error.rule_id).inc()
            log.warning(
                "rule_error rule_id=%s customer_id=%s error=%r",
                error.rule_id,
                error.customer_id,
                error.message,
            )

    async def flush(self, partition: int) -> None:
        """Persist the partition's dirty states, deliver its outputs, then ack its events.

        Must run while the current Faust event belongs to ``partition`` (table writes go to
        the current event's partition).
        """
        buf = self.buffers.pop(partition, None)
        if buf is None:
            return
        started = time.perf_counter()
        index = self.indexes.setdefault(partition, DeadlineIndex())
        scoring = self.engine.scorer is not None
        engine_s = 0.0
        for customer_id in buf.dirty:
            state = buf.states[customer_id]
            t0 = time.perf_counter()
            deadline = self.engine.next_deadline(state)  # once per customer per flush
            engine_s += time.perf_counter() - t0
            index.set(customer_id, deadline)
            if scoring:
                self.rfm.note(partition, state)
            self.table[customer_id.encode()] = encode_stored(
                state, deadline, self.engine.rules.fingerprint
            )
        self.metrics.engine_seconds.inc(engine_s)
        deliveries = [await self._send_output(out) for out in buf.outputs]
        if deliveries:
            await asyncio.gather(*deliveries)
        for event in buf.pending:
            event.ack()
        self.metrics.flushed_states.inc(len(buf.dirty))
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        if buf.outputs:
            log.info(
                "flushed partition=%d states=%d outputs=%d events=%d ms=%.1f",
                partition,
                len(buf.dirty),
                len(buf.outputs),
                len(buf.pending),
                (time.perf_counter() - started) * 1000,
            )

    def on_revoked(self, revoked: set[TP]) -> None:
        """Forget unflushed work of revoked partitions; their next owner replays it."""
        for partition in {tp.partition for tp in revoked}:
            dropped = self.buffers.pop(partition, None)
            self.indexes.pop(partition, None)
            self.rfm.forget(partition)
            self.watermarks.forget(partition)
            if dropped is not None and dropped.pending:
                log.info(
                    "revoked partition=%d unflushed_events=%d action=replay_by_next_owner",
                    partition,
                    len(dropped.pending),
                )

    def on_assigned(self, assigned: set[TP]) -> None:
        """Deadline indexes are rebuilt from the table before the next sweep."""
        self.index_stale = True

    def rebuild_indexes(self) -> None:
        """Rebuild every owned partition's deadline index from the stored deadline prefixes."""
        owned = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.topics.ticks.get_topic_name()
        }
        indexes = {p: DeadlineIndex() for p in owned}
        count = recomputed = 0
        fingerprint = self.engine.rules.fingerprint
        scoring = self.engine.scorer is not None
        for key, raw in self.table.items():
            if raw is None:
                continue
            customer_id = key.decode()
            partition = partition_for(customer_id, self.settings.partitions)
            index = indexes.get(partition)
            if index is None:
                continue
            count += 1
            current = stored_fingerprint(raw) == fingerprint
            state: CustomerState | None = None
            if scoring or not current:  # decoded only for the RFM population or new rules
                try:
                    state = decode_stored(raw)
                except (ValueError, KeyError):
                    state = None
            if state is not None and scoring:
                self.rfm.note(partition, state)
            if current or state is None:
                index.set(customer_id, stored_deadline(raw))
                continue
            # written under other rules: their deadline may be late for these rules
            recomputed += 1
            index.set(customer_id, self.engine.next_deadline(state))
        for partition, index in indexes.items():
            pending = self.indexes.get(partition)
            if pending is not None:  # deadlines set since assignment are newer
                for customer_id, due in pending.items():
                    index.set(customer_id, due)
        self.indexes = indexes
        self.index_stale = False
        log.info(
            "deadline_index_rebuilt partitions=%s customers=%d recomputed_for_new_rules=%d",
            sorted(owned),
            count,
            recomputed,
        )

    # -- RFM population ---------------------------------------------------------------------
    async def publish_rfm(self) -> None:
        """Publish each owned partition's RFM summary, then refresh the engine's cut points
        from every partition's newest summary (``rfm_summaries``, read from the topic)."""
        if self.index_stale or self.engine.scorer is None:
            return  # rebuilt with the indexes on the next tick; nothing to do without scoring
        ticks = self.topics.ticks.get_topic_name()
        for tp in self.app.consumer.assignment():
            if tp.topic != ticks:
                continue
            now = self.clock.now(tp.partition)
            if now is None:
                continue
            raw = self.rfm.sketch(tp.partition, now).to_bytes()
            key = str(tp.partition).encode()
            self.rfm_summaries[key] = raw
            await self._produce(self.topics.rfm, key, raw, partition=0)
        cuts = merged_cut_points(self.rfm_summaries)
        if cuts is None:
            return
        self.engine.set_cut_points(cuts)
        self.metrics.rfm_customers.set(cuts.customers)
        self.metrics.rfm_cut_points_age.set(cuts.as_of)
        log.info(
            "rfm_cut_points_refreshed customers=%d recency=%s frequency=%s monetary=%s",
            cuts.customers,
            [round(c, 1) for c in cuts.recency],
            [round(c, 1) for c in cuts.frequency],
            [round(c, 1) for c in cuts.monetary],
        )

    # -- sinks ------------------------------------------------------------------------------
    async def _send_output(self, out: Output | CustomerHealth) -> asyncio.Future[Any]:
        if isinstance(out, CustomerHealth):
            topic, ce_type = self.topics.health, f"churnguard.customer.{out.event}"
            ce_id = f"{out.customer_id}:{out.as_of.timestamp():.3f}"
            self.metrics.snapshots.labels(out.event).inc()
        elif isinstance(out, AlertEvent):
            topic, ce_type, ce_id = (
                self.topics.alerts,
                f"churnguard.alert.{out.status}",
                out.alert_id,
            )
            self.metrics.alerts.labels(out.rule_id, out.severity, out.status).inc()
            if out.status == "notice" and out.rule_id == TIER_CHANGED:
                moved = out.evidence
                self.metrics.tiers_changed.labels(moved["from"], moved["to"]).inc()
        else:
            assert isinstance(out, TaskEvent)
            status = "created" if out.status == "open" else out.status
            topic, ce_type = self.topics.tasks, f"churnguard.task.{status}"
            ce_id = f"{out.task_id}:{out.status}"
            self.metrics.tasks.labels(out.assignee_role, out.status).inc()
        headers = cloudevent_headers(
            ce_type=ce_type, ce_source=self.settings.source, ce_id=ce_id, ce_subject=out.customer_id
        )
        return await self._produce(topic, out.customer_id.encode(), encode(out), headers=headers)

    async def _produce(
        self,
        topic: TopicT,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one record to the app's producer; the future completes on delivery.

        Straight to the producer rather than ``topic.send``, which adds a future message,
        sensor calls, a debug log call and a callback per record; a worker sends an output
        for about every third event. Faust still flushes this producer before it commits.
        """
        producer = await self.app.maybe_start_producer()
        return await producer.send(
            topic.get_topic_name(), key, value, partition, timestamp=None, headers=headers
        )

    async def _rekey(self, event: EventT, kind: str, parsed: InputEvent, partition: int) -> None:
        msg = event.message
        headers = [(k, v) for k, v in _header_items(msg.headers) if k != KIND_HEADER]
        headers.append((KIND_HEADER, kind.encode()))
        await (
            await self._produce(
                self.topics.rekeyed,
                parsed.customer_id.encode(),
                msg.value,
                headers=headers,
                partition=partition,
            )
        )
        self.metrics.events.labels(msg.topic, "rekeyed").inc()
        event.ack()

    async def _dead_letter(self, event: EventT, reason: str, error: str) -> None:
        msg = event.message
        letter = make_dead_letter(
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            raw=msg.value,
            reason=reason,
            error=error,
            rejected_at=datetime.now(UTC),
            max_raw_bytes=self.settings.deadletter_max_raw_bytes,
        )
        await (await self._produce(self.topics.deadletter, msg.key, encode(letter)))
        self.metrics.events.labels(msg.topic, "deadletter").inc()
        self.metrics.deadletter.labels(reason).inc()
        log.warning(
            "deadletter topic=%s partition=%d offset=%d reason=%s error=%r",
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
            error[:300],
        )
        event.ack()
