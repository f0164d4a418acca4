"""What the worker's glue costs per event, in-process and without a broker.

    python -m bench.glue_cost --events 120000 --customers 20000 [--digest] [--state-cache 0]

The bench's synthetic events go through the reader's path as the worker runs it: each input
topic partition's records in offset order, fetched in rounds of ``--fetch`` records,
``Pipeline.decode``, the ``Aligner``, ``Pipeline.process`` in batches, ``send_outputs``, then
per partition and round a sweep and a flush whose deliveries are awaited. The producer is a
fake that builds aiokafka's real batches and acknowledges them at once; the table is in
memory; the watermark's wall clock stands still, so flush points and outputs are the same in
every run. Printed per event: the main thread's CPU time, the part of it inside the engine
(``apply_batch``, ``advance``, ``next_deadline``, timed around each call), the rest (the
glue) and the garbage collector's time (which lands in either). ``--digest`` also prints a
digest of every record produced (wall-clock fields left out) and of the final table, to show
that a change left the outputs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatch

import agents.runtime as runtime
from agents.ingest import make_engine
from agents.metrics import Metrics
from agents.runtime import Pipeline
from bench.throughput import TOPIC_BY_KIND
from streams.alignment import Aligner
from streams.app import create_app
from streams.clock import WatermarkClock
from streams.partitioning import partition_of_key
from streams.settings import Settings
from streams.synthetic import generate_events

START = datetime(2025, 3, 3, tzinfo=UTC)
PARTITIONS = 4
WALL_FIELDS = ("emitted_at", "created_at")  # wall time: left out of the digest


@dataclass(frozen=True, slots=True)
class Message:
    """An input record as aiokafka's consumer hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class _Meta:
    offset: int


class FakeProducer:
    """aiokafka's batch builder, with batches acknowledged as soon as they are handed over."""

    def __init__(self, digest: list[tuple[Any, ...]] | None) -> None:
        self._real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=262144)
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._digest = digest
        self.batches = 0
        self.client = self

    def create_batch(self) -> Any:
        """A real aiokafka batch builder."""
        return self._real.create_batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        """Acknowledge the batch at once (and note its records for the digest)."""
        count = batch.record_count()
        if self._digest is not None:
            for record in DefaultRecordBatch(bytearray(batch._build())):
                value = record.value
                if value and value[:1] == b"{" and topic.startswith("cs."):
                    fields = orjson.loads(value)
                    for name in WALL_FIELDS:
                        fields.pop(name, None)
                    value = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
                self._digest.append((topic, partition, record.key, value, record.headers))
        future = asyncio.get_running_loop().create_future()
        future.set_result(_Meta(self._offsets[(topic, partition)]))
        self._offsets[(topic, partition)] += count
        self.batches += 1
        return future

    async def _wait_on_metadata(self, topic: str) -> None:
        return None

    @property
    def cluster(self) -> Any:
        return self

    def partitions_for_topic(self, topic: str) -> set[int]:
        """Every topic has the bench's partitions."""
        return set(range(PARTITIONS))

    def _ensure_producer(self) -> FakeProducer:
        return self

    async def close(self) -> None:
        """Close the real producer the batch builders came from."""
        await self._real.stop()


class FakeApp:
    """What the pipeline asks of the Faust app: its producer."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    async def maybe_start_producer(self) -> FakeProducer:
        """The fake producer."""
        return self.producer


class FakeStore:
    """The table's local store: a dict, nothing to persist."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        """Nothing to persist."""


class FakeTable:
    """An in-memory table with its changelog topic's name."""

    def __init__(self) -> None:
        self.data = FakeStore()
        self.changelog_topic = self

    def get_topic_name(self) -> str:
        """The changelog topic."""
        return "bench-glue-customer-state-changelog"


def _engine_timer(pipeline: Pipeline) -> list[float]:
    """Time every engine call the pipeline makes (thread CPU, outermost call only)."""
    spent = [0.0]
    depth = [0]

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] = 1
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - started
                depth[0] = 0

        return call

    class TimedEngine:
        """The pipeline's engine with its entry points timed (a compiled one's are read-only)."""

        def __init__(self, engine: Any) -> None:
            self._engine = engine
            self.advance = timed(engine.advance)
            self.next_deadline = timed(engine.next_deadline)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._engine, name)

    runtime.apply_batch = timed(runtime.apply_batch)
    pipeline.engine = TimedEngine(pipeline.engine)  # type: ignore[assignment]
    return spent


def _gc_timer() -> list[float]:
    """Time the garbage collector's runs (thread CPU)."""
    spent = [0.0, 0.0]  # total, start of the current run

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.thread_time()
        else:
            spent[0] += time.thread_time() - spent[1]

    gc.callbacks.append(callback)
    return spent


async def run(args: argparse.Namespace) -> None:
    """Build the pipeline, feed it every record round by round, print the costs."""
    settings = Settings(
        clock="event",
        partitions=PARTITIONS,
        store="memory://",
        state_cache_customers=args.state_cache,
    )
    app = create_app(settings)
    topics = app.churnguard_topics  # type: ignore[attr-defined]
    digest: list[tuple[Any, ...]] | None = [] if args.digest else None
    producer = FakeProducer(digest)
    table = FakeTable()
    clock = WatermarkClock(settings.allowed_lateness_s, settings.watermark_idle_s, wall=lambda: 0.0)
    pipeline = Pipeline(
        app=FakeApp(producer),  # type: ignore[arg-type]
        settings=settings,
        topics=topics,
        table=table,
        engine=make_engine(settings),
        clock=clock,
        metrics=Metrics.create(),
    )
    pipeline.index_stale = False  # no Faust assignment to rebuild from
    engine_s = _engine_timer(pipeline)

    logs: dict[tuple[str, int], list[Message]] = defaultdict(list)
    for r in generate_events(args.customers, args.events, start=START, seed=7):
        topic, key = TOPIC_BY_KIND[r.topic_kind], r.key.encode()
        partition = partition_of_key(key, PARTITIONS)
        log = logs[(topic, partition)]
        log.append(Message(topic, partition, len(log), key, orjson.dumps(r.value)))
    names = [t.get_topic_name() for t in topics.inputs.values()]
    names.append(topics.rekeyed.get_topic_name())
    aligners: dict[int, Aligner[runtime.Record]] = {}
    for p in range(PARTITIONS):
        aligners[p] = Aligner(settings.max_idle_ms / 1000.0)
        for name in names:
            aligners[p].source(name, 0.0)
    positions: dict[tuple[str, int], int] = defaultdict(int)
    limit = settings.batch_max_records

    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.gc_gen0_threshold, 20, 100)
    gc_s = _gc_timer()
    started = time.thread_time()
    done = False
    while not done:
        for (topic, p), log in logs.items():  # one round of fetches
            at = positions[(topic, p)]
            chunk = log[at : at + args.fetch]
            if chunk:
                aligners[p].add(
                    topic,
                    [
                        pipeline.decode(m.topic, m.partition, m.offset, m.key, m.value, m.headers)
                        for m in chunk
                    ],
                )
                positions[(topic, p)] = at + len(chunk)
        done = all(positions[k] >= len(log) for k, log in logs.items())
        for p, aligner in aligners.items():
            for name in names:
                aligner.set_caught_up(name, positions[(name, p)] >= len(logs.get((name, p), ())))
            while True:
                ready = aligner.drain(1.0, limit)
                if ready:
                    pipeline.process(p, ready)
                    await pipeline.send_outputs(p)
                if len(ready) < limit:
                    break
            pipeline.sweep(p, pipeline.watermarks.now(p))
            flushed = await pipeline.flush(p)
            if flushed is not None:
                await pipeline.delivered(flushed)
    cpu = time.thread_time() - started
    gc.callbacks.clear()
    await producer.close()

    n = args.events
    us = 1e6 / n
    print(
        f"{n:,} events, {args.customers:,} customers, state cache {args.state_cache:,}: "
        f"{producer.batches:,} producer batches"
    )
    print(
        f"CPU per event {cpu * us:.1f} µs: engine {engine_s[0] * us:.1f} µs, "
        f"glue {(cpu - engine_s[0]) * us:.1f} µs; garbage collector {gc_s[0] * us:.1f} µs"
    )
    if digest is not None:
        outputs = hashlib.sha256(repr(sorted(digest, key=repr)).encode()).hexdigest()[:16]
        final = hashlib.sha256()
        for key, value in sorted(table.data.data.items()):
            final.update(key + value)
        print(
            f"{len(digest):,} records produced, digest {outputs}; "
            f"table of {len(table.data.data):,} customers, digest {final.hexdigest()[:16]}"
        )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--fetch", type=int, default=5000, help="records per fetch per topic")
    parser.add_argument(
        "--state-cache", type=int, default=Settings().state_cache_customers, metavar="N"
    )
    parser.add_argument("--digest", action="store_true", help="digest the outputs and table")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
