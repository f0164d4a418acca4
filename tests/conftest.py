"""Shared fixtures: a real Kafka-protocol broker, real churnguard workers, output readers.

The broker is a session-scoped Tansu on a free port unless CHURNGUARD_TEST_BROKER names an
Apache Kafka bootstrap (host:port); tests that Tansu cannot show honestly are skipped on it
(see docs/broker.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.compiled import core_root, python_modules
from streams.broker import EmbeddedBroker, ensure_topics, free_port, stop_process

CORE_ROOT = core_root()
"""Where churnguard is imported from: the repository, or build/compiled (`make test-compiled`);
worker subprocesses start there, so they run the same build as the tests."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """With CHURNGUARD_TEST_COMPILED=1, refuse to run unless the core is the compiled one."""
    if os.environ.get("CHURNGUARD_TEST_COMPILED") != "1":
        return
    python = python_modules()
    if python:
        pytest.exit(
            f"CHURNGUARD_TEST_COMPILED=1 but {', '.join(python)} run as Python: put build/compiled "
            "first on PYTHONPATH and use --import-mode=append (make test-compiled)",
            returncode=2,
        )


KINDS = ("logins", "orders", "tickets", "contacts", "accounts", "task_updates")
OUTPUTS = ("alerts", "tasks", "health", "deadletter", "rekeyed", "ticks", "rfm")


@dataclass(frozen=True)
class Broker:
    """Where the tests' broker listens."""

    bootstrap: str
    is_tansu: bool

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("CHURNGUARD_TEST_BROKER")
    if external:
        yield Broker(external, is_tansu=False)
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield Broker(embedded.bootstrap, is_tansu=True)


@dataclass
class Topics:
    """A private set of churnguard topic names for one worker under test."""

    prefix: str

    def name(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    def env(self) -> dict[str, str]:
        return {f"CHURNGUARD_TOPIC_{k.upper()}": self.name(k) for k in (*KINDS, *OUTPUTS)}

    def all(self) -> list[str]:
        return [self.name(k) for k in (*KINDS, *OUTPUTS)]


@dataclass
class Worker:
    """A ``churnguard worker`` subprocess with its own topics, group and data directory."""

    broker: Broker
    topics: Topics
    data_dir: Path
    log_path: Path
    app_id: str
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        env = {
            **os.environ,
            **self.topics.env(),
            "CHURNGUARD_BROKER": self.broker.url,
            "CHURNGUARD_APP_ID": self.app_id,
            "CHURNGUARD_DATA_DIR": str(self.data_dir),
            "CHURNGUARD_WEB_PORT": str(self.web_port),
            "CHURNGUARD_PARTITIONS": "2",
            "CHURNGUARD_BROKER_SESSION_TIMEOUT_S": "6",
            "CHURNGUARD_BROKER_HEARTBEAT_INTERVAL_S": "1",
            "CHURNGUARD_TICK_INTERVAL_S": "0.5",
            "CHURNGUARD_FLUSH_INTERVAL_S": "0.2",
            # broker-notes item 1: one changelog record per batch keeps end offsets right
            "CHURNGUARD_PRODUCER_MAX_BATCH_SIZE": "1",
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agents", "worker", "-l", "info"],
                cwd=CORE_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        proc, self.proc = self.proc, None
        return 0 if proc is None else stop_process(proc, timeout, sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def customer(self, customer_id: str) -> dict[str, Any] | None:
        """The worker's snapshot of a customer, or None if unknown/unreachable."""
        url = f"http://127.0.0.1:{self.web_port}/customers/{customer_id}/"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp,
            ):
                if resp.status != 200:
                    return None
                return dict(await resp.json())
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """``/readyz``: its status code and JSON body, or None while the port does not answer."""
        url = f"http://127.0.0.1:{self.web_port}/readyz"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp,
            ):
                return resp.status, dict(await resp.json())
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_ready(
        self, partitions: Callable[[list[int]], bool] = bool, timeout: float = 90.0
    ) -> list[tuple[int, dict[str, Any]]]:
        """Poll ``/readyz`` until it says ready with owned partitions matching ``partitions``;
        every answer seen on the way, in order (a 503 among them says why it was not ready)."""
        deadline = time.monotonic() + timeout
        seen: list[tuple[int, dict[str, Any]]] = []
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
                )
            answer = await self.readiness()
            if answer is not None:
                if not seen or seen[-1] != answer:
                    seen.append(answer)
                status, body = answer
                if status == 200 and partitions(body["partitions"]):
                    return seen
            await asyncio.sleep(0.05)
        raise AssertionError(f"never ready as wanted; answers seen: {seen[-10:]}")

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return await resp.text()

    async def wait_customer(
        self, customer_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll the customer's snapshot until ``check`` holds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
                )
            last = await self.customer(customer_id)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.3)
        raise AssertionError(f"customer {customer_id} never matched; last snapshot: {last}")


class Producer:
    """Sends test input one record per batch (broker-notes item 1)."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: dict[str, Any] | bytes,
        key: str | bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        k = key.encode() if isinstance(key, str) else key
        await self._producer.send_and_wait(topic, raw, key=k, headers=headers)


class Outputs:
    """Reads output topics from the beginning and waits for matching records."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self.records: list[tuple[str, dict[str, Any], dict[str, bytes]]] = []

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=300)
        for tp, msgs in batch.items():
            for m in msgs:
                self.records.append((tp.topic, orjson.loads(m.value or b"{}"), dict(m.headers)))

    async def wait_for(
        self,
        predicate: Callable[[str, dict[str, Any]], bool],
        timeout: float = 60.0,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        """Records (value dicts) matching ``predicate``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [v for t, v, _ in self.records if predicate(t, v)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} matching records, got {len(found)}; "
                    f"last: {self.records[-20:]}"
                )
            await self.poll()

    def matching(self, predicate: Callable[[str, dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [v for t, v, _ in self.records if predicate(t, v)]

    def headers_of(
        self, predicate: Callable[[str, dict[str, Any]], bool]
    ) -> list[dict[str, bytes]]:
        return [h for t, v, h in self.records if predicate(t, v)]


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


async def private_topics(broker: Broker, letter: str) -> Topics:
    """A fresh set of churnguard topics (2 partitions) on ``broker``, named ``letter`` + random."""
    topics = Topics(f"{letter}{uuid.uuid4().hex[:6]}")
    await ensure_topics(broker.bootstrap, topics.all(), 2)
    return topics


async def _pipeline(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str]
) -> AsyncIterator[tuple[Worker, Producer, Outputs]]:
    base = tmp_path_factory.mktemp("worker")
    topics = await private_topics(broker, "t")
    worker = Worker(
        broker,
        topics,
        base / "data",
        base / "worker.log",
        app_id=f"cg-{topics.prefix}",
        extra_env=extra_env,
    ).start()
    producer = Producer(broker.bootstrap)
    await producer.start()
    outputs = Outputs(
        broker.bootstrap,
        [topics.name(k) for k in ("alerts", "tasks", "health", "deadletter")],
    )
    await outputs.start()
    try:
        yield worker, producer, outputs
    finally:
        await outputs.stop()
        await producer.stop()
        worker.stop()


@pytest.fixture(scope="module")
async def pipeline(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Worker, Producer, Outputs]]:
    """A live (wall-clock) worker on private topics, a producer and an output reader."""
    async for parts in _pipeline(broker, tmp_path_factory, {}):
        yield parts


@pytest.fixture(scope="module")
async def replay_pipeline(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Worker, Producer, Outputs]]:
    """A replay-mode worker: sweeps follow each partition's event-time watermark."""
    async for parts in _pipeline(broker, tmp_path_factory, {"CHURNGUARD_CLOCK": "event"}):
        yield parts
