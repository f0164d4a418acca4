"""The Redis read model on a real Redis and the real broker.

Each module run starts its own redis-server on a free port (the shared one on 6379 belongs
to everybody); the outage test starts one more with an append-only file, so that a restart
keeps what was acknowledged and only the outage is tested. Output events are produced to
private topics; no worker runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from agents.redis_cli import rebuild_read_model
from agents.redis_sink import ReadModelSink, apply_records
from schemas.codec import encode
from schemas.outputs import AlertEvent, CustomerHealth, TaskEvent
from streams.broker import ensure_topics, free_port, stop_process
from streams.settings import Settings
from tests.conftest import Broker

pytestmark = pytest.mark.integration

REDIS_SERVER = "/usr/bin/redis-server"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT_S = 120.0

if not Path(REDIS_SERVER).exists():  # pragma: no cover - CI installs it
    pytest.skip(f"{REDIS_SERVER} not found (apt-get install redis-server)", allow_module_level=True)


@dataclass
class RedisServer:
    """A redis-server child process on 127.0.0.1:``port``."""

    workdir: Path
    persistent: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes" if self.persistent else "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, 10.0)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


# --- events -----------------------------------------------------------------------------------


def health(
    cid: str,
    score: int | None,
    tier: str | None,
    at: datetime,
    stage: str = "active",
    open_alerts: tuple[str, ...] = (),
) -> CustomerHealth:
    factors = {
        "logins": {
            "value": 3.0,
            "points": score or 0,
            "weight": 100.0,
            "contribution": float(score or 0),
            "missing": False,
        }
    }
    return CustomerHealth.model_validate(
        {
            "customer_id": cid,
            "name": f"Customer {cid}",
            "tier": tier,
            "lifecycle_stage": stage,
            "at_risk": score is not None and score < 40,
            "health": None
            if score is None
            else {"score": score, "trend_7d": -4, "profile": "", "factors": factors},
            "features": {"days_since_last_login": 3},
            "open_alerts": list(open_alerts),
            "as_of": at,
        }
    )


def alert(
    aid: str, cid: str, rule: str, status: str, fired: datetime, resolved: datetime | None = None
) -> AlertEvent:
    return AlertEvent.model_validate(
        {
            "alert_id": aid,
            "customer_id": cid,
            "rule_id": rule,
            "severity": "high" if status != "notice" else "info",
            "status": status,
            "summary": f"{rule} for {cid}",
            "evidence": {"x": 1},
            "tier": "key",
            "fired_at": fired,
            "resolved_at": resolved,
            "resolution": "cleared" if status == "resolved" else None,
            "emitted_at": resolved or fired,
        }
    )


def task(tid: str, aid: str, cid: str, status: str, created: datetime) -> TaskEvent:
    return TaskEvent.model_validate(
        {
            "task_id": tid,
            "alert_id": aid,
            "customer_id": cid,
            "rule_id": "inactivity",
            "assignee": "ann",
            "assignee_role": "csm",
            "title": f"Call {cid}",
            "priority": "high",
            "due_at": created + timedelta(days=1),
            "status": status,
            "created_at": created,
        }
    )


def scripted_stream() -> list[tuple[str, BaseModel | bytes, str]]:
    """(kind, event or raw bytes, key): several customers and tiers, alerts, tasks, junk."""
    h = timedelta(hours=1)
    return [
        ("health", health("c1", 30, "strategic", T0, open_alerts=("a1",)), "c1"),
        ("health", health("c2", 80, "strategic", T0), "c2"),
        ("health", health("c3", 50, "key", T0), "c3"),
        ("health", health("c4", 90, None, T0), "c4"),
        ("health", health("c5", 60, "growth", T0), "c5"),
        ("health", health("c6", None, "normal", T0), "c6"),
        ("alerts", alert("a1", "c1", "inactivity", "firing", T0), "c1"),
        ("alerts", alert("a2", "c3", "complaint-spike", "firing", T0), "c3"),
        ("tasks", task("t1", "a1", "c1", "open", T0), "c1"),
        ("tasks", task("t2", "a2", "c3", "open", T0), "c3"),
        ("alerts", b"this is not JSON", "c3"),
        ("alerts", alert("a2", "c3", "complaint-spike", "resolved", T0, T0 + h), "c3"),
        ("tasks", task("t2", "a2", "c3", "cancelled", T0 + h), "c3"),
        ("health", health("c5", 55, "key", T0 + h), "c5"),  # tier change: growth → key
        ("alerts", alert("a3", "c5", "tier_changed", "notice", T0 + h), "c5"),
        ("health", health("c7", 20, "key", T0), "c7"),
        ("health", health("c7", 10, "key", T0 + h, stage="churned"), "c7"),
        ("health", health("c3", 45, "key", T0 + 2 * h), "c3"),
    ]


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class OutputTopics:
    """Private output topic names and the settings of a sink reading them."""

    broker: Broker
    prefix: str
    redis_url: str

    def topic(self, kind: str) -> str:
        return f"rm{self.prefix}.{kind}"

    def settings(self, key_prefix: str | None = None) -> Settings:
        return Settings(
            broker=self.broker.url,
            app_id=f"rm-{self.prefix}",
            topic_health=self.topic("health"),
            topic_alerts=self.topic("alerts"),
            topic_tasks=self.topic("tasks"),
            redis_url=self.redis_url,
            redis_key_prefix=key_prefix or f"rm{self.prefix}:",
            broker_session_timeout_s=6,
            broker_heartbeat_interval_s=1,
            readmodel_backoff_max_s=1.0,
            redis_timeout_s=2.0,
        )

    async def create(self) -> None:
        await ensure_topics(
            self.broker.bootstrap, [self.topic(k) for k in ("health", "alerts", "tasks")], 2
        )


class EventProducer:
    """Sends one record per batch (broker-notes item 1) and remembers the last offsets."""

    def __init__(self, topics: OutputTopics) -> None:
        self.topics = topics
        self.producer = AIOKafkaProducer(bootstrap_servers=topics.broker.bootstrap, linger_ms=0)
        self.last: dict[str, str] = {}

    async def __aenter__(self) -> EventProducer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, kind: str, event: BaseModel | bytes, key: str) -> None:
        raw = event if isinstance(event, bytes) else encode(event)
        meta = await self.producer.send_and_wait(self.topics.topic(kind), raw, key=key.encode())
        self.last[f"{meta.topic}:{meta.partition}"] = str(meta.offset)

    async def send_all(self, events: list[tuple[str, BaseModel | bytes, str]]) -> None:
        for kind, event, key in events:
            await self.send(kind, event, key)


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_S
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def wait_applied(redis: aioredis.Redis, key_prefix: str, last: dict[str, str]) -> None:
    """Wait until the sink wrote every offset in ``last`` (its sink:applied hash)."""

    async def done() -> bool:
        applied = await redis.hgetall(f"{key_prefix}sink:applied")
        return all(int(applied.get(tp, -1)) >= int(off) for tp, off in last.items())

    await wait_until(done, f"the sink to apply {last}")


async def dump(redis: aioredis.Redis, key_prefix: str) -> dict[str, Any]:
    """Every key under the prefix (prefix stripped): type, whether it has a TTL, value.

    Stream entries are compared without their ids (arrival times) and their interleaving."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"{key_prefix}*"):
        kind = await redis.type(key)
        if kind == "hash":
            value: Any = await redis.hgetall(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "stream":  # arrival order across partitions depends on the fetches
            value = sorted(str(sorted(fields.items())) for _, fields in await redis.xrange(key))
        else:
            value = await redis.get(key)
        out[key.removeprefix(key_prefix)] = (kind, await redis.ttl(key) > 0, value)
    return out


@dataclass(frozen=True)
class Rec:
    """A record as the sink sees it, for writes without the broker."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


async def running_sink(settings: Settings, registry: CollectorRegistry) -> ReadModelSink:
    sink = ReadModelSink(settings, registry)
    await sink.start()
    return sink


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# --- the Lua writes on real Redis, without the broker ----------------------------------------


async def test_writes_are_ordered_and_idempotent(redis_client: aioredis.Redis) -> None:
    settings = Settings(redis_key_prefix="lua:")
    topic = settings.topic_health
    newer = health("c1", 70, "key", T0 + timedelta(days=1))
    older = health("c1", 20, "strategic", T0)
    await apply_records(redis_client, settings, [Rec(topic, 0, 0, encode(newer))])
    await apply_records(redis_client, settings, [Rec(topic, 0, 1, encode(older))])
    stored = await redis_client.hgetall("lua:customer:c1")
    assert stored["health"] == "70" and stored["tier"] == "key"
    assert await redis_client.zrange("lua:at-risk:tier:key", 0, -1) == ["c1"]
    assert await redis_client.zrange("lua:at-risk:tier:strategic", 0, -1) == []
    # the older point still belongs in the history, oldest first
    assert await redis_client.zrange("lua:customer:c1:health", 0, -1) == [
        f"{int(T0.timestamp() * 1000)}:20",
        f"{int((T0 + timedelta(days=1)).timestamp() * 1000)}:70",
    ]

    alerts = settings.topic_alerts
    resolved = alert("a1", "c1", "inactivity", "resolved", T0, T0 + timedelta(hours=2))
    firing = alert("a1", "c1", "inactivity", "firing", T0)
    await apply_records(redis_client, settings, [Rec(alerts, 0, 0, encode(resolved))])
    await apply_records(redis_client, settings, [Rec(alerts, 0, 1, encode(firing))])
    assert AlertEvent.model_validate_json(await redis_client.get("lua:alert:a1")) == resolved
    assert await redis_client.zcard("lua:alerts:firing") == 0

    before = await dump(redis_client, "lua:")
    replay = [Rec(topic, 0, 0, encode(newer)), Rec(alerts, 0, 0, encode(resolved))]
    await apply_records(redis_client, settings, replay)
    assert await dump(redis_client, "lua:") == before  # not even a second stream entry


async def test_a_wrong_key_type_is_rejected_without_stopping_the_batch(
    redis_client: aioredis.Redis,
) -> None:
    settings = Settings(redis_key_prefix="bad:")
    await redis_client.set("bad:customer:c1", "someone else's string")
    records = [
        Rec(settings.topic_health, 0, 0, encode(health("c1", 50, "key", T0))),
        Rec(settings.topic_health, 0, 1, encode(health("c2", 50, "key", T0))),
    ]
    await apply_records(redis_client, settings, records)
    assert await redis_client.get("bad:customer:c1") == "someone else's string"
    assert (await redis_client.hgetall("bad:customer:c2"))["health"] == "50"
    assert await redis_client.hgetall("bad:sink:applied") == {f"{settings.topic_health}:0": "1"}


# --- the sink on the real broker --------------------------------------------------------------


async def test_scripted_stream_builds_the_documented_read_model(
    broker: Broker, redis_server: RedisServer, redis_client: aioredis.Redis, unique: str
) -> None:
    topics = OutputTopics(broker, unique, redis_server.url)
    await topics.create()
    settings = topics.settings()
    p = settings.redis_key_prefix
    registry = CollectorRegistry()
    sink = await running_sink(settings, registry)
    try:
        async with EventProducer(topics) as producer:
            await producer.send_all(scripted_stream())
        await wait_applied(redis_client, p, producer.last)
        await wait_until(lambda: _true(sink.ready), "the sink to be ready")
    finally:
        await sink.stop()

    c1 = await redis_client.hgetall(f"{p}customer:c1")
    assert c1["name"] == "Customer c1" and c1["tier"] == "strategic"
    assert c1["health"] == "30" and c1["health_trend_7d"] == "-4" and c1["at_risk"] == "1"
    assert c1["lifecycle_stage"] == "active" and c1["open_alerts"] == '["a1"]'
    assert c1["as_of"] == "2026-03-02T09:00:00Z"
    assert (
        '"contribution":30.0' in c1["factors"] and c1["features"] == '{"days_since_last_login":3}'
    )
    assert "health" not in await redis_client.hgetall(f"{p}customer:c6")

    assert await redis_client.zrevrange(f"{p}at-risk", 0, -1) == ["c1", "c3", "c5", "c2", "c4"]
    assert await redis_client.zscore(f"{p}at-risk", "c3") == 55.0  # its newest snapshot
    assert await redis_client.zrevrange(f"{p}at-risk:tier:strategic", 0, -1) == ["c1", "c2"]
    assert await redis_client.zrevrange(f"{p}at-risk:tier:key", 0, -1) == ["c3", "c5"]
    assert await redis_client.zcard(f"{p}at-risk:tier:growth") == 0  # c5 moved to key
    assert await redis_client.zrange(f"{p}at-risk:tier:none", 0, -1) == ["c4"]
    assert await redis_client.smembers(f"{p}tiers") == {"strategic", "key", "growth", "normal"}
    # c7 churned: out of the rankings, its keys expire
    assert await redis_client.zscore(f"{p}at-risk", "c7") is None
    assert await redis_client.ttl(f"{p}customer:c7") > 0
    assert await redis_client.ttl(f"{p}customer:c7:health") > 0

    assert await redis_client.zrange(f"{p}alerts:firing", 0, -1) == ["a1"]
    assert await redis_client.zrange(f"{p}alerts:firing:rule:inactivity", 0, -1) == ["a1"]
    assert await redis_client.zcard(f"{p}alerts:firing:rule:complaint-spike") == 0
    a2 = AlertEvent.model_validate_json(await redis_client.get(f"{p}alert:a2"))
    assert a2.status == "resolved"
    assert set(await redis_client.hkeys(f"{p}customer:c3:alerts")) == {"a2"}
    assert await redis_client.xlen(f"{p}alerts:recent") == 4  # a1, a2 firing, a2 resolved, a3
    tasks = await redis_client.hgetall(f"{p}customer:c3:tasks")
    assert TaskEvent.model_validate_json(tasks["t2"]).status == "cancelled"
    assert set(await redis_client.hkeys(f"{p}customer:c1:tasks")) == {"t1"}

    assert sample(registry, "churnguard_sink_events_total", topic=topics.topic("health")) == 10
    assert sample(registry, "churnguard_sink_events_total", topic=topics.topic("alerts")) == 4
    assert sample(registry, "churnguard_sink_errors_total", reason="not_json") == 1
    assert sample(registry, "churnguard_sink_redis_up") == 1


async def _true(value: bool) -> bool:
    return value


async def test_an_older_snapshot_never_wins(
    broker: Broker, redis_server: RedisServer, redis_client: aioredis.Redis, unique: str
) -> None:
    topics = OutputTopics(broker, unique, redis_server.url)
    await topics.create()
    settings = topics.settings()
    p = settings.redis_key_prefix
    sink = await running_sink(settings, CollectorRegistry())
    try:
        async with EventProducer(topics) as producer:
            await producer.send("health", health("c1", 75, "key", T0 + timedelta(days=2)), "c1")
            await producer.send("health", health("c1", 15, "strategic", T0), "c1")
        await wait_applied(redis_client, p, producer.last)
    finally:
        await sink.stop()
    stored = await redis_client.hgetall(f"{p}customer:c1")
    assert (stored["health"], stored["tier"]) == ("75", "key")
    assert stored["as_of_ms"] == str(int((T0 + timedelta(days=2)).timestamp() * 1000))
    assert await redis_client.zscore(f"{p}at-risk", "c1") == 25.0
    assert await redis_client.zcard(f"{p}at-risk:tier:strategic") == 0


async def test_redis_outage_of_30s_loses_nothing(
    broker: Broker, tmp_path: Path, unique: str
) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    topics = OutputTopics(broker, unique, server.url)
    await topics.create()
    settings = topics.settings()
    p = settings.redis_key_prefix
    registry = CollectorRegistry()
    sink = await running_sink(settings, registry)
    stream = scripted_stream()
    try:
        async with EventProducer(topics) as producer:
            await producer.send_all(stream[:8])
            await wait_applied(client, p, producer.last)
            assert sink.ready

            server.stop()
            outage_ends = time.monotonic() + 30
            later = iter(stream[8:])
            extra = 0
            while time.monotonic() < outage_ends:  # events keep flowing while Redis is down
                step = next(later, None)
                if step is None:
                    extra += 1
                    step = ("health", health(f"x{extra}", 40 + extra, "key", T0), f"x{extra}")
                await producer.send(*step)
                await asyncio.sleep(1.0)
            assert not sink.ready
            assert sample(registry, "churnguard_sink_redis_up") == 0
            lag = sum(
                sample(registry, "churnguard_sink_lag_records", topic=topics.topic(k), partition=i)
                for k in ("health", "alerts", "tasks")
                for i in ("0", "1")
            )
            assert lag > 0
            server.start()
            await wait_applied(client, p, producer.last)
        await wait_until(lambda: _true(sink.ready), "the sink to be ready again")
    finally:
        await sink.stop()
        after_outage = await dump(client, p)
        await client.aclose()

    try:
        assert sample(registry, "churnguard_sink_errors_total", reason="redis") >= 1
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        reference = "ref" + p
        await rebuild_read_model(topics.settings(key_prefix=reference), client)
        assert after_outage == await dump(client, reference)
        assert len(after_outage) > 20
        await client.aclose()
    finally:
        server.stop()


async def test_rebuild_gives_the_same_keys_as_the_live_sink(
    broker: Broker, redis_server: RedisServer, redis_client: aioredis.Redis, unique: str
) -> None:
    topics = OutputTopics(broker, unique, redis_server.url)
    await topics.create()
    settings = topics.settings()
    p = settings.redis_key_prefix
    sink = await running_sink(settings, CollectorRegistry())
    try:
        async with EventProducer(topics) as producer:
            await producer.send_all(scripted_stream())
        await wait_applied(redis_client, p, producer.last)
    finally:
        await sink.stop()
    live = await dump(redis_client, p)
    await redis_client.set(f"{p}customer:stale", "left over from an older layout")

    env = {
        **os.environ,
        "CHURNGUARD_BROKER": broker.url,
        "CHURNGUARD_REDIS_URL": redis_server.url,
        "CHURNGUARD_REDIS_KEY_PREFIX": p,
        "CHURNGUARD_TOPIC_HEALTH": topics.topic("health"),
        "CHURNGUARD_TOPIC_ALERTS": topics.topic("alerts"),
        "CHURNGUARD_TOPIC_TASKS": topics.topic("tasks"),
    }
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from agents.cli import main; main()",
        "redis",
        "rebuild",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await done.communicate()
    text = output.decode()
    assert done.returncode == 0, text
    assert f"deleted {len(live) + 1} keys" in text
    assert f"{topics.topic('alerts')}: read 5 records, wrote 4 events" in text
    assert "skipped 1 undecodable records: not_json" in text
    assert await dump(redis_client, p) == live
