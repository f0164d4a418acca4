"""The Redis read-model sink: folds cs.customer-health, cs.alerts and cs.tasks into Redis.

Its own consumer group (``Settings.readmodel_group``); one pipeline of Lua calls per fetched
batch; offsets are committed only after Redis acknowledged the batch. While Redis is down the
batch is retried with capped exponential backoff and consumption is paused, so nothing is
buffered beyond one batch and nothing is lost. Layout and rules: docs/read-model.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from agents.readmodel import (
    BatchPlan,
    OutputKind,
    OutputRecord,
    ReadModelKeys,
    ScriptCall,
    WriteOptions,
    lua_source,
    plan_batch,
)
from agents.redis_client import make_redis
from agents.sink_metrics import SinkMetrics
from streams.kafka_security import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.1
IDLE_PING_S = 5.0
POLL_TIMEOUT_MS = 1000
REDIS_FAILURES = (RedisError, OSError)
TRANSIENT_ERRORS = (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    MasterDownError,
    ClusterDownError,
)
TRANSIENT_CODES = frozenset(
    {"BUSY", "OOM", "READONLY", "LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "NOSCRIPT"}
)


def output_kinds(settings: Settings) -> dict[str, OutputKind]:
    """The read model's topics and what each carries."""
    return {
        settings.topic_health: "health",
        settings.topic_alerts: "alert",
        settings.topic_tasks: "task",
    }


def write_options(settings: Settings) -> WriteOptions:
    """The write knobs from settings."""
    return WriteOptions(
        churned_ttl_s=settings.redis_churned_ttl_s, recent_alerts=settings.redis_recent_alerts
    )


def is_transient(error: ResponseError) -> bool:
    """Whether a Redis error reply may pass by itself (retry) rather than repeat forever."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    return code in TRANSIENT_CODES


def backoff_delays(first_s: float, max_s: float) -> Iterator[float]:
    """Seconds to wait before each retry: doubling from ``first_s``, capped at ``max_s``."""
    delay = first_s
    while True:
        yield min(delay, max_s)
        delay *= 2


class ReadModelWriter:
    """Writes batches of output records to Redis: one pipeline of Lua calls per batch."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = ReadModelKeys(settings.redis_key_prefix)
        self.kinds = output_kinds(settings)
        self.options = write_options(settings)
        self._script = redis.register_script(lua_source())

    def plan(self, records: Iterable[OutputRecord]) -> BatchPlan:
        """The writes of ``records`` (pure; see agents/readmodel.py)."""
        return plan_batch(records, self.kinds, self.keys, self.options)

    async def write(self, plan: BatchPlan) -> list[tuple[ScriptCall, ResponseError]]:
        """Send the plan's calls in one pipeline; returns the calls Redis rejected for good.

        Raises RedisError/OSError when Redis fails in a way that may pass (connection,
        timeout, loading, out of memory, read-only replica): the caller retries the whole
        plan, which is safe because every call is idempotent. A call rejected for good (a
        key of the wrong type, say) is returned instead, so one bad key cannot stall the sink.
        """
        if not plan.calls:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for call in plan.calls:
            await self._script(keys=call.keys, args=call.args, client=pipe)
        results = await pipe.execute(raise_on_error=False)
        rejected: list[tuple[ScriptCall, ResponseError]] = []
        for call, result in zip(plan.calls, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ResponseError) or is_transient(result):
                    raise result
                rejected.append((call, result))
        return rejected


async def apply_records(
    redis: aioredis.Redis, settings: Settings, records: Iterable[OutputRecord]
) -> BatchPlan:
    """Write output records to the read model once (no retry); returns what was planned.

    Raises RedisError/OSError when Redis fails; skipped and rejected records are logged.
    """
    writer = ReadModelWriter(redis, settings)
    plan = writer.plan(records)
    log_skipped(plan)
    log_rejected(await writer.write(plan))
    return plan


def log_rejected(
    rejected: list[tuple[ScriptCall, ResponseError]], metrics: SinkMetrics | None = None
) -> None:
    """Log (and count) each write Redis refused for good."""
    for call, error in rejected:
        if metrics is not None:
            metrics.errors.labels("rejected").inc()
        log.error("read model: Redis rejected the write of %s: %s", call.origin, error)


def log_skipped(plan: BatchPlan, metrics: SinkMetrics | None = None) -> None:
    """Log (and count) each record of the plan that could not be decoded."""
    for skipped in plan.skipped:
        if metrics is not None:
            metrics.errors.labels(skipped.reason).inc()
        log.warning(
            "read model: skipped %s[%d]@%d: %s: %s",
            skipped.topic,
            skipped.partition,
            skipped.offset,
            skipped.reason,
            skipped.error,
        )


class _Assignment(ConsumerRebalanceListener):
    """Forgets the lag of partitions the sink no longer owns."""

    def __init__(self, metrics: SinkMetrics) -> None:
        self._metrics = metrics

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(tp.topic, str(tp.partition))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info(
            "read model: assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        )


class ReadModelSink:
    """Consumes the output topics in the read-model group and keeps Redis up to date."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = SinkMetrics.create(registry)
        self._redis = redis
        self._owns_redis = redis is None
        self._consumer: AIOKafkaConsumer | None = None
        self._writer: ReadModelWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._redis_up = False
        self._outage_since: float | None = None
        self._outage_failures = 0
        self._last_redis_check = 0.0
        self._metrics.redis_up.set(0)

    @property
    def ready(self) -> bool:
        """Partitions assigned and Redis reachable."""
        consumer = self._consumer
        return (
            self._redis_up
            and consumer is not None
            and self._task is not None
            and not self._task.done()
            and bool(consumer.assignment())
        )

    async def start(self) -> None:
        """Connect to the broker and start consuming in a task (Redis may still be down)."""
        settings = self._settings
        if self._redis is None:
            self._redis = make_redis(settings)
        self._writer = ReadModelWriter(self._redis, settings)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.readmodel_group,
            client_id=f"{settings.readmodel_group}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.broker_heartbeat_interval_s * 1000),
            fetch_max_wait_ms=settings.readmodel_fetch_max_wait_ms,
        )
        await self._consumer.start()
        self._consumer.subscribe(
            topics=list(output_kinds(settings)), listener=_Assignment(self._metrics)
        )
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="readmodel-sink")
        log.info(
            "read model: sink started (group %s, topics %s, prefix %r)",
            settings.readmodel_group,
            ", ".join(output_kinds(settings)),
            settings.redis_key_prefix,
        )

    async def stop(self) -> None:
        """Stop consuming; what Redis acknowledged is committed; close the clients."""
        self._stopping.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("read model: sink loop failed")
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._owns_redis and self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        log.info("read model: sink stopped")

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            try:
                if not await self._step(consumer):
                    return  # stopping during an outage: nothing acknowledged, nothing committed
            except Exception:
                # the loop must outlive surprises; the batch was not committed, so it comes back
                self._metrics.errors.labels("internal").inc()
                log.exception("read model: sink step failed; continuing")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def _step(self, consumer: AIOKafkaConsumer) -> bool:
        batch = await consumer.getmany(
            timeout_ms=POLL_TIMEOUT_MS, max_records=self._settings.readmodel_batch_max
        )
        records = [record for tp_records in batch.values() for record in tp_records]
        if records:
            if not await self._write(records):
                return False
        elif time.monotonic() - self._last_redis_check > IDLE_PING_S:
            await self._ping()
        await self._update_lag(consumer.assignment())
        return True

    async def _write(self, records: list[Any]) -> bool:
        """Write the batch (retrying while Redis fails), then commit; False if stopped first."""
        writer, consumer = self._writer, self._consumer
        assert writer is not None and consumer is not None
        plan = writer.plan(records)
        log_skipped(plan, self._metrics)
        delays = backoff_delays(BACKOFF_FIRST_S, self._settings.readmodel_backoff_max_s)
        while True:
            try:
                rejected = await writer.write(plan)
            except REDIS_FAILURES as exc:
                self._redis_failed(exc, consumer)
                await self._update_lag(consumer.assignment(), refresh_ends=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), next(delays))
                if self._stopping.is_set():
                    return False
                continue
            break
        self._redis_ok(consumer)
        log_rejected(rejected, self._metrics)
        for topic, count in plan.events.items():
            self._metrics.events.labels(topic).inc(count)
        await self._commit(plan.last_offsets)
        return True

    async def _commit(self, last_offsets: Mapping[tuple[str, int], int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        offsets = {TopicPartition(t, p): offset + 1 for (t, p), offset in last_offsets.items()}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # a rebalance took the partitions: their next owner replays them (writes are
            # idempotent), so this only costs time
            self._metrics.errors.labels("commit").inc()
            log.warning("read model: offset commit failed (%s); the records will be replayed", exc)

    async def _ping(self) -> None:
        assert self._redis is not None and self._consumer is not None
        try:
            await self._redis.ping()
        except REDIS_FAILURES as exc:
            self._redis_failed(exc, self._consumer)
        else:
            self._redis_ok(self._consumer)

    def _redis_failed(self, exc: BaseException, consumer: AIOKafkaConsumer) -> None:
        self._last_redis_check = time.monotonic()
        self._metrics.errors.labels("redis").inc()
        self._metrics.redis_up.set(0)
        self._redis_up = False
        self._outage_failures += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            consumer.pause(*consumer.assignment())
            log.warning(
                "read model: Redis unavailable (%s: %s); consumption paused, retrying with "
                "backoff up to %.1f s",
                type(exc).__name__,
                exc,
                self._settings.readmodel_backoff_max_s,
            )

    def _redis_ok(self, consumer: AIOKafkaConsumer) -> None:
        self._last_redis_check = time.monotonic()
        self._metrics.redis_up.set(1)
        self._redis_up = True
        if self._outage_since is not None:
            log.info(
                "read model: Redis is back after %.1f s (%d failed attempts); consuming again",
                time.monotonic() - self._outage_since,
                self._outage_failures,
            )
            consumer.resume(*consumer.paused())
            self._outage_since = None
            self._outage_failures = 0

    async def _update_lag(
        self, partitions: Iterable[TopicPartition], refresh_ends: bool = False
    ) -> None:
        """Set the lag gauge: high-water mark (from fetches, or asked for) minus position."""
        consumer = self._consumer
        assert consumer is not None
        tps = list(partitions)
        ends: dict[TopicPartition, int] = {}
        if refresh_ends and tps:
            # paused partitions are not fetched, so their fetched high-water marks go stale
            try:
                ends = await consumer.end_offsets(tps)
            except KafkaError as exc:
                log.debug("read model: end offsets unavailable: %s", exc)
        for tp in tps:
            highwater = max(consumer.highwater(tp) or 0, ends.get(tp, 0))
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1.0)
            except (KafkaError, TimeoutError, AssertionError):
                continue  # not assigned any more, or no position yet
            self._metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
