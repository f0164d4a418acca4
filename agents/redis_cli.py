"""``churnguard redis …``: rebuild the Redis read model from the output topics.

Runs before (and without) the Faust app: it needs only Redis and the broker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections import Counter
from dataclasses import dataclass, field

import click
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from agents.redis_client import make_redis
from agents.redis_sink import ReadModelWriter, log_rejected, log_skipped, output_kinds
from streams.kafka_security import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

UNLINK_CHUNK = 500
POLL_TIMEOUT_MS = 500


@dataclass
class RebuildReport:
    """What a rebuild did."""

    deleted_keys: int = 0
    records: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    missing_topics: list[str] = field(default_factory=list)
    ends: dict[str, int] = field(default_factory=dict)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def delete_prefix(redis: aioredis.Redis, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (SCAN + UNLINK); returns how many."""
    deleted = 0
    chunk: list[bytes] = []
    async for key in redis.scan_iter(match=glob_escape(prefix) + "*", count=1000):
        chunk.append(key)
        if len(chunk) >= UNLINK_CHUNK:
            deleted += await redis.unlink(*chunk)
            chunk = []
    if chunk:
        deleted += await redis.unlink(*chunk)
    return deleted


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    existing = await consumer.topics()
    return [
        TopicPartition(topic, partition)
        for topic in topics
        if topic in existing
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def rebuild_read_model(settings: Settings, redis: aioredis.Redis) -> RebuildReport:
    """Empty the prefix, then write every record of the output topics up to their end.

    The end of a partition is the high-water mark of the first fetch response for it: Tansu
    reports ListOffsets wrong for multi-record batches, the Fetch high-water mark right
    (docs/broker.md). Records produced after that are left to the live sink.
    """
    report = RebuildReport()
    writer = ReadModelWriter(redis, settings)
    topics = list(output_kinds(settings))
    report.deleted_keys = await delete_prefix(redis, settings.redis_key_prefix)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.readmodel_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
        report.missing_topics = [t for t in topics if t not in {tp.topic for tp in partitions}]
        if not partitions:
            return report
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = {}
        remaining = set(partitions)
        while remaining:
            batch = await consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=settings.readmodel_batch_max
            )
            records = [
                record
                for tp, tp_records in batch.items()
                for record in tp_records
                if tp not in ends or record.offset < ends[tp]
            ]
            if records:
                plan = writer.plan(records)
                log_skipped(plan)
                rejected = await writer.write(plan)
                log_rejected(rejected)
                report.rejected += len(rejected)
                report.records.update(r.topic for r in records)
                report.events.update(plan.events)
                report.skipped.update(s.reason for s in plan.skipped)
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                ends.setdefault(tp, highwater)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        report.ends = {f"{tp.topic}[{tp.partition}]": end for tp, end in sorted(ends.items())}
    finally:
        await consumer.stop()
    return report


@click.group(name="redis")
def redis_group() -> None:
    """The Redis read model (docs/read-model.md): rebuild it from the output topics."""


@redis_group.command()
def rebuild() -> None:
    """Rebuild the Redis read model from cs.customer-health, cs.alerts and cs.tasks.

    Deletes every key under CHURNGUARD_REDIS_KEY_PREFIX (SCAN + UNLINK), then reads the three
    output topics (CHURNGUARD_TOPIC_HEALTH, _ALERTS, _TASKS) from their beginning to their
    current end without a consumer group, and applies the same writes as the live sink. The
    result equals what the sink builds from the same records; records that arrive meanwhile
    are the live sink's. Prints what it deleted, read and wrote; exits 1 if Redis or the
    broker cannot be reached. Redis: CHURNGUARD_REDIS_URL (and _USERNAME, _PASSWORD, _TLS,
    _CA_FILE, _CERT_FILE, _KEY_FILE); broker: CHURNGUARD_BROKER. Readers see an empty or
    partial model while it runs.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValueError as exc:
        click.echo(f"churnguard redis rebuild: bad settings: {exc}", err=True)
        sys.exit(2)
    try:
        report = asyncio.run(_rebuild(settings))
    except (RedisError, OSError) as exc:
        click.echo(f"churnguard redis rebuild: Redis failed: {exc}", err=True)
        sys.exit(1)
    except KafkaError as exc:
        click.echo(f"churnguard redis rebuild: broker failed: {exc}", err=True)
        sys.exit(1)
    _print_report(settings, report)


async def _rebuild(settings: Settings) -> RebuildReport:
    redis = make_redis(settings)
    try:
        return await rebuild_read_model(settings, redis)
    finally:
        await redis.aclose()


def _print_report(settings: Settings, report: RebuildReport) -> None:
    click.echo(f"deleted {report.deleted_keys} keys under {settings.redis_key_prefix!r}")
    for topic in output_kinds(settings):
        if topic in report.missing_topics:
            click.echo(f"{topic}: no such topic, nothing read")
            continue
        click.echo(
            f"{topic}: read {report.records[topic]} records, wrote {report.events[topic]} events"
        )
    for reason, count in sorted(report.skipped.items()):
        click.echo(f"skipped {count} undecodable records: {reason}")
    if report.rejected:
        click.echo(f"Redis rejected {report.rejected} writes (see the log above)")
    ends = ", ".join(f"{tp} {end}" for tp, end in report.ends.items())
    click.echo(f"read up to: {ends or 'nothing'}")
