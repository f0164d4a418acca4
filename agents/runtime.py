"""The glue between the input reader and the pure engine: decode, batch, buffer, flush, sweep.

The input reader (agents/reader.py) hands a partition's records here in event-time order.
They are decoded and validated as they are read; a batch is grouped by customer and applied
with one state in hand per customer (rules/batch.py). Each partition has a write-behind
buffer: a flush first waits until the broker acknowledged the outputs of its events
(alerts, tasks, snapshots, dead letters, re-keyed records: a persisted state makes a replay of
its events a duplicate, so outputs must not be lost after it), then writes each dirty customer
to the table once (with its next deadline, which also goes into the partition's deadline
index), hands the changelog records to the producer without waiting per record, and gives
back the deliveries; the reader commits the partition's input offsets only once they are all
acknowledged, so committed offsets never run ahead of persisted state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faust.types import TP, AppT

from agents.metrics import Metrics
from agents.producer import Handoff, OutRecord, Sent, send_batches, send_to_partition
from agents.rfm_population import RfmPopulation, merged_cut_points
from agents.state_cache import StateCache
from agents.store import StateStore
from rules.batch import Timed, apply_batch, group_by_customer
from rules.engine import TIER_CHANGED, Engine, Output, Result
from rules.results import HealthSnapshot
from schemas import (
    AlertEvent,
    DecodeError,
    InputEvent,
    TaskEvent,
    cloudevent_headers,
    decode_input,
    encode,
    make_dead_letter,
)
from streams.alignment import UNTIMED
from streams.app import Topics
from streams.clock import Clock, WatermarkClock
from streams.deadlines import DeadlineIndex
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.state import CustomerState
from streams.storage import decode_stored, encode_stored, stored_deadline, stored_fingerprint

log = logging.getLogger("churnguard.runtime")
KIND_HEADER = "churnguard-kind"


@dataclass(slots=True)
class Record:
    """One input record as read, with its decoded event or the reason it was rejected."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    kind: str | None
    event: InputEvent | None = None
    error: DecodeError | None = None
    occurred: float = UNTIMED  # the event's time in epoch seconds (untimed when rejected)


@dataclass
class PartitionBuffer:
    """Unpersisted work of one partition."""

    states: dict[str, CustomerState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    outputs: list[Output | HealthSnapshot | OutRecord] = field(default_factory=list)
    deliveries: list[Sent] = field(default_factory=list)  # outputs already sent
    records: int = 0  # input records taken into this buffer
    sent: int = 0  # outputs handed to the producer before the flush
    opened: float = field(default_factory=time.monotonic)


@dataclass
class Flushed:
    """A flush handed to the producer: what must be acknowledged before its offsets commit."""

    partition: int
    deliveries: list[Sent]
    changelog: list[Sent]
    states: int
    outputs: int
    records: int
    started: float


_NO_HEADERS: tuple[tuple[str, bytes], ...] = ()


def _header_items(headers: Any) -> list[tuple[str, bytes]]:
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in items]


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


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
        self.store = StateStore(table)
        self.engine = engine
        self.clock = clock
        self.metrics = metrics
        self.buffers: dict[int, PartitionBuffer] = {}
        self.cache = StateCache(settings.state_cache_customers)
        self.handoff = Handoff()
        self.indexes: dict[int, DeadlineIndex] = {}
        self.index_stale = True
        self.epoch = 0  # +1 at every revocation: a flush that spans one is dropped
        self.rfm = RfmPopulation()
        self.rfm_summaries: dict[bytes, bytes] = {}  # partition → newest summary, all workers
        # event mode sweeps on the watermark itself: one clock, observed once per event
        self.watermarks = (
            clock
            if isinstance(clock, WatermarkClock)
            else WatermarkClock(settings.allowed_lateness_s, settings.watermark_idle_s)
        )
        self.kind_of_topic = {t.get_topic_name(): k for k, t in topics.inputs.items()}
        self._health_topic = topics.health.get_topic_name()
        self._alerts_topic = topics.alerts.get_topic_name()
        self._tasks_topic = topics.tasks.get_topic_name()
        self._snapshot_counters: dict[str, Any] = {}

    # -- decoding (as records are read) -----------------------------------------------------
    def decode(
        self, topic: str, partition: int, offset: int, key: Any, value: Any, headers: Any
    ) -> tuple[float, Record]:
        """Decode and validate one input record; returns its event time and the record.

        A record that cannot be used carries its error and no event time (it is dead-lettered
        as soon as it heads its topic).
        """
        items = _header_items(headers) if headers else _NO_HEADERS
        kind = self.kind_of_topic.get(topic)
        if kind is None:  # the re-key topic says the kind in a header
            raw_kind = _header(items, KIND_HEADER)
            kind = raw_kind.decode(errors="replace") if raw_kind else None
        rec = Record(topic, partition, offset, key, value, items, kind)
        try:
            if kind is None:
                raise DecodeError("schema", f"missing {KIND_HEADER} header on re-keyed record")
            if value is not None and len(value) > self.settings.max_event_bytes:
                raise DecodeError(
                    "too_large",
                    f"value of {len(value)} bytes "
                    f"(limit CHURNGUARD_MAX_EVENT_BYTES={self.settings.max_event_bytes})",
                )
            event = decode_input(kind, value, items)
            self._check_time(event)
        except DecodeError as exc:
            rec.error = exc
            return UNTIMED, rec
        rec.event = event
        rec.occurred = event.occurred_at.timestamp()
        return rec.occurred, rec

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

    # -- a batch of one partition ------------------------------------------------------------
    def process(self, partition: int, records: list[Record]) -> None:
        """Apply a partition's records, merged in event time, to its buffered states."""
        buf = self._buffer(partition)
        buf.records += len(records)
        outputs = buf.outputs
        partitions = self.settings.partitions
        accepted: list[Record] = []
        for rec in records:
            event = rec.event
            if event is None:
                assert rec.error is not None
                outputs.append(self._dead_letter(rec, rec.error))
                continue
            cid = event.customer_id
            target = partition_for(cid, partitions)
            if rec.partition != target or rec.key != cid.encode():
                outputs.append(self._rekey(rec, target))
                continue
            accepted.append(rec)
        if not accepted:
            return
        marks = self.watermarks.observe_all(partition, [(r.occurred, r.topic) for r in accepted])
        if self.clock is not self.watermarks:
            observe = self.clock.observe
            for rec in accepted:
                observe(partition, rec.occurred, rec.topic)
        late = self.metrics.late_events
        timed: list[Timed] = []
        for rec, mark in zip(accepted, marks, strict=True):
            if mark is None:
                mark = 0.0
            elif rec.occurred < mark:
                late.labels(rec.topic).inc()
            timed.append((rec.event, mark, rec.topic))  # type: ignore[arg-type]
        groups = group_by_customer(timed)
        self._load_many(buf, partition, list(groups))
        started = time.perf_counter()
        batch = apply_batch(self.engine, buf.states, groups)
        self.metrics.engine_seconds.inc(time.perf_counter() - started)
        dirty = buf.dirty
        eval_seconds = self.metrics.rule_eval_seconds.observe
        for cid, results in batch.results.items():
            dirty.add(cid)
            for result in results:
                outputs += result.outputs
                outputs += result.snapshots
                if result.evaluations:
                    eval_seconds(result.eval_seconds)
                if result.forgotten or result.errors:
                    self._report(buf.states[cid], result)
        for topic, n in batch.applied.items():
            self.metrics.events.labels(topic, "applied").inc(n)
        for topic, n in batch.duplicates.items():
            self.metrics.events.labels(topic, "duplicate").inc(n)

    def sweep(self, partition: int, now: float | None) -> None:
        """Advance the partition's customers whose deadline is due at ``now``."""
        if self.index_stale:
            self.rebuild_indexes()
        if now is None:
            return
        started = time.perf_counter()
        buf = self._buffer(partition)
        index = self.indexes.setdefault(partition, DeadlineIndex())
        due = index.pop_due(now)
        self.metrics.sweep_due.inc(len(due))
        if due:
            self._load_many(buf, partition, due)
        for customer_id in due:
            state = buf.states[customer_id]
            started = time.perf_counter()
            result = self.engine.advance(state, now)
            self.metrics.engine_seconds.inc(time.perf_counter() - started)
            self._record(buf, state, result)
        self.metrics.scheduled_customers.labels(str(partition)).set(len(index))
        self.metrics.sweep_seconds.observe(time.perf_counter() - started)

    async def send_outputs(self, partition: int) -> None:
        """Hand the partition's new outputs to the producer now, not at the next flush.

        Alerts reach their consumers within one batch; the flush that persists the states
        waits for their acknowledgement before the offsets are committed. A crash in between
        re-sends them on replay with the same ids (at least once).
        """
        buf = self.buffers.get(partition)
        if buf is None or not buf.outputs:
            return
        outputs, buf.outputs = buf.outputs, []
        buf.deliveries += await self._send([self._output_record(out) for out in outputs])
        buf.sent += len(outputs)

    def flush_due(self, partition: int) -> bool:
        """True when the partition's buffer is large or old enough to be flushed."""
        buf = self.buffers.get(partition)
        if buf is None:
            return False
        return (
            len(buf.dirty) >= self.settings.flush_max_dirty
            or time.monotonic() - buf.opened >= self.settings.flush_interval_s
        )

    # -- buffers and state ----------------------------------------------------------------
    def _buffer(self, partition: int) -> PartitionBuffer:
        buf = self.buffers.get(partition)
        if buf is None:
            buf = self.buffers[partition] = PartitionBuffer()
        return buf

    def _load_many(self, buf: PartitionBuffer, partition: int, customer_ids: list[str]) -> None:
        """Bring the customers' states into the buffer: from the cache of persisted states,
        then one store read for those missing."""
        states = buf.states
        take = self.cache.take
        missing: list[str] = []
        for cid in customer_ids:
            if cid in states:
                continue
            state = take(partition, cid)
            if state is None:
                missing.append(cid)
            else:
                states[cid] = state
        if not missing:
            return
        raws = self.store.get_many(partition, [cid.encode() for cid in missing])
        for cid, raw in zip(missing, raws, strict=True):
            if raw is None:
                states[cid] = CustomerState(cid)
                continue
            try:
                states[cid] = decode_stored(raw)
            except (ValueError, KeyError) as exc:
                log.error("state_unreadable customer_id=%s error=%r action=start_fresh", cid, exc)
                states[cid] = CustomerState(cid)

    def _record(self, buf: PartitionBuffer, state: CustomerState, result: Result) -> None:
        buf.dirty.add(state.customer_id)
        buf.outputs.extend(result.outputs)
        buf.outputs.extend(result.snapshots)
        if result.evaluations:
            self.metrics.rule_eval_seconds.observe(result.eval_seconds)
        self._report(state, result)

    def _report(self, state: CustomerState, result: Result) -> None:
        """Log and count the result's forgotten alerts and rule errors."""
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

    async def flush(self, partition: int) -> Flushed | None:
        """Persist the partition's dirty states and hand them and its outputs to the producer.

        Returns what must be acknowledged before the partition's input offsets may be
        committed (None when there was nothing to flush).
        """
        buf = self.buffers.pop(partition, None)
        if buf is None:
            return None
        started = time.perf_counter()
        epoch = self.epoch
        deliveries = buf.deliveries + await self._send(
            [self._output_record(out) for out in buf.outputs]
        )
        await self._outputs_acknowledged(partition, deliveries)
        if self.epoch != epoch:  # revoked meanwhile: its store may be closed, the offsets
            log.info(  # are not committed, and the next owner replays these events
                "flush_dropped partition=%d reason=rebalance events=%d", partition, buf.records
            )
            return None
        index = self.indexes.setdefault(partition, DeadlineIndex())
        scoring = self.engine.scorer is not None
        fingerprint = self.engine.rules.fingerprint
        engine_s = 0.0
        items: list[tuple[bytes, bytes]] = []
        for customer_id in buf.dirty:
            state = buf.states[customer_id]
            t0 = time.perf_counter()
            deadline = self.engine.next_deadline(state)  # once per customer per flush
            engine_s += time.perf_counter() - t0
            index.set(customer_id, deadline)
            if scoring:
                self.rfm.note(partition, state)
            items.append((customer_id.encode(), encode_stored(state, deadline, fingerprint)))
        self.metrics.engine_seconds.inc(engine_s)
        self.store.write(partition, items)
        self.cache.put(partition, buf.states)  # every state of the buffer is persisted now
        changelog = (
            await send_to_partition(
                await self._producer(),
                self.store.changelog_topic,
                partition,
                [(key, value, None) for key, value in items],
                self.handoff,
            )
            if items
            else []
        )
        self.metrics.flushed_states.inc(len(items))
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        return Flushed(
            partition,
            deliveries,
            changelog,
            len(items),
            buf.sent + len(buf.outputs),
            buf.records,
            started,
        )

    async def _outputs_acknowledged(self, partition: int, deliveries: list[Sent]) -> None:
        """Wait until the broker acknowledged the outputs of the events about to be persisted.

        A state is written (table and changelog) only after the alerts, tasks, snapshots, dead
        letters and re-keyed records its events produced are on the broker: a state that
        records an event makes its replay a duplicate (``event_id``), so outputs lost after
        it was persisted would never be sent again. Raises what the producer raised.
        """
        if not deliveries:
            return
        try:
            await asyncio.gather(*(sent.future for sent in deliveries))
        except Exception as exc:
            log.critical(
                "delivery_failed partition=%d error=%r action=stop_worker (no state "
                "persisted for these events; uncommitted input is read again on restart)",
                partition,
                exc,
            )
            raise

    async def delivered(self, flushed: Flushed) -> None:
        """Wait until a flush's records are acknowledged; then its changelog is persisted.

        Raises what the producer raised when a record could not be delivered.
        """
        if flushed.changelog:
            last = await asyncio.gather(*(sent.last_offset() for sent in flushed.changelog))
            self.store.persisted(flushed.partition, max(last))
        if flushed.deliveries:
            await asyncio.gather(*(sent.future for sent in flushed.deliveries))
        if flushed.outputs:
            log.info(
                "flushed partition=%d states=%d outputs=%d events=%d ms=%.1f",
                flushed.partition,
                flushed.states,
                flushed.outputs,
                flushed.records,
                (time.perf_counter() - flushed.started) * 1000,
            )

    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Forget unflushed work of revoked partitions; their next owner replays it."""
        self.epoch += 1
        for partition in partitions:
            dropped = self.buffers.pop(partition, None)
            self.cache.forget(partition)
            self.indexes.pop(partition, None)
            self.rfm.forget(partition)
            self.watermarks.forget(partition)
            if dropped is not None and dropped.records:
                log.info(
                    "revoked partition=%d unflushed_events=%d action=replay_by_next_owner",
                    partition,
                    dropped.records,
                )

    async def restore_lost_changelog(self, partitions: Iterable[int]) -> int:
        """Write the local states back to changelogs that lost records; returns states written.

        A changelog whose last offset is below the one the local store recorded as persisted
        lost records: a topic deleted and re-created, a broker that lost its data (the
        embedded test broker on restart), an unclean leader election. Faust would stop the
        worker (``ConsistencyError``, exit 1; its check is off, see streams/app.py); the local
        store is the better copy, so its states are sent to the changelog again, and a worker
        that later recovers the partition from the changelog gets all of them back.
        """
        recovery = getattr(getattr(self.app, "tables", None), "recovery", None)
        last_offsets = getattr(recovery, "active_highwaters", None) or {}
        written = 0
        for partition in partitions:
            persisted = self.store.persisted_offset(partition)
            last = last_offsets.get(TP(self.store.changelog_topic, partition))
            if persisted is None or last is None or persisted <= last:
                continue
            log.critical(
                "changelog_behind_local_store partition=%d persisted_offset=%d "
                "changelog_last_offset=%d action=republish_local_states",
                partition,
                persisted,
                last,
            )
            items = list(self.store.items(partition))
            sent = await send_to_partition(
                await self._producer(),
                self.store.changelog_topic,
                partition,
                [(key, value, None) for key, value in items],
                self.handoff,
            )
            offsets = await asyncio.gather(*(s.last_offset() for s in sent))
            self.store.persisted(partition, max(offsets, default=last))
            written += len(items)
            log.warning("changelog_restored partition=%d states=%d", partition, len(items))
        return written

    def on_assigned(self) -> None:
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
            await self._send([OutRecord(self.topics.rfm.get_topic_name(), key, raw, None, 0)])
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
    async def _producer(self) -> Any:
        """The aiokafka producer under the app's (started on first use)."""
        producer = await self.app.maybe_start_producer()
        return producer._ensure_producer()

    async def _send(self, records: list[OutRecord]) -> list[Sent]:
        """Hand records to the app's producer in batches (one future per batch)."""
        if not records:
            return []
        return await send_batches(await self._producer(), records, self.handoff)

    def _output_record(self, out: Output | HealthSnapshot | OutRecord) -> OutRecord:
        """The record of an output: its topic, key, JSON value and CloudEvents headers."""
        if isinstance(out, OutRecord):  # a dead letter or a re-keyed input, as it is
            return out
        if isinstance(out, HealthSnapshot):
            topic, ce_type = self._health_topic, f"churnguard.customer.{out.event}"
            ce_id = f"{out.customer_id}:{out.as_of.timestamp():.3f}"
            value = out.to_bytes()
            counter = self._snapshot_counters.get(out.event)
            if counter is None:  # a child per label value, looked up once
                counter = self._snapshot_counters[out.event] = self.metrics.snapshots.labels(
                    out.event
                )
            counter.inc()
        elif isinstance(out, AlertEvent):
            topic, ce_type, ce_id = (
                self._alerts_topic,
                f"churnguard.alert.{out.status}",
                out.alert_id,
            )
            value = encode(out)
            self.metrics.alerts.labels(out.rule_id, out.severity, out.status).inc()
            self.metrics.observe_alert(out)
            if out.status == "notice" and out.rule_id == TIER_CHANGED:
                moved = out.evidence
                self.metrics.tiers_changed.labels(moved["from"], moved["to"]).inc()
        else:
            assert isinstance(out, TaskEvent)
            status = "created" if out.status == "open" else out.status
            topic, ce_type = self._tasks_topic, f"churnguard.task.{status}"
            ce_id = f"{out.task_id}:{out.status}"
            value = encode(out)
            self.metrics.tasks.labels(out.assignee_role, out.status).inc()
        headers = cloudevent_headers(
            ce_type=ce_type, ce_source=self.settings.source, ce_id=ce_id, ce_subject=out.customer_id
        )
        return OutRecord(topic, out.customer_id.encode(), value, headers)

    def _rekey(self, rec: Record, partition: int) -> OutRecord:
        """The record for the re-key topic: keyed and partitioned by its customer."""
        assert rec.event is not None and rec.kind is not None
        headers = [(k, v) for k, v in rec.headers if k != KIND_HEADER]
        headers.append((KIND_HEADER, rec.kind.encode()))
        self.metrics.events.labels(rec.topic, "rekeyed").inc()
        return OutRecord(
            self.topics.rekeyed.get_topic_name(),
            rec.event.customer_id.encode(),
            rec.value or b"",
            headers,
            partition,
        )

    def _dead_letter(self, rec: Record, error: DecodeError) -> OutRecord:
        """The dead-letter record of a rejected input, with its reason."""
        letter = make_dead_letter(
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            raw=rec.value,
            reason=error.reason,
            error=error.message,
            rejected_at=datetime.now(UTC),
            max_raw_bytes=self.settings.deadletter_max_raw_bytes,
        )
        self.metrics.events.labels(rec.topic, "deadletter").inc()
        self.metrics.deadletter.labels(error.reason).inc()
        log.warning(
            "deadletter topic=%s partition=%d offset=%d reason=%s error=%r",
            rec.topic,
            rec.partition,
            rec.offset,
            error.reason,
            error.message[:300],
        )
        return OutRecord(self.topics.deadletter.get_topic_name(), rec.key, encode(letter))
