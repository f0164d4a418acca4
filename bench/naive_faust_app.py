"""The textbook Faust app the benchmark compares churnguard with (stage b of bench.throughput).

One agent reads the five input topics and counts events per customer in a RocksDB-backed
Table, writing the table once per event (``table[key] += 1``): the way most Faust examples
keep state, so every event costs one table write and one changelog record.

It is configured by environment variables (``bench.throughput`` sets them) and run as::

    python -m faust -A bench.naive_faust_app worker -l warn

``GET /bench/progress/`` on the web port returns the number of events processed and the
wall-clock times (``time.time()``) of the first event and of the ``BENCH_NAIVE_TARGET``-th
event, so the measured interval excludes start-up and the consumer-group join.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust

BROKER = os.environ.get("BENCH_NAIVE_BROKER", "kafka://127.0.0.1:9092")
APP_ID = os.environ.get("BENCH_NAIVE_APP_ID", "bench-naive-faust")
DATADIR = os.environ.get("BENCH_NAIVE_DATADIR", "bench-naive-data")
PARTITIONS = int(os.environ.get("BENCH_NAIVE_PARTITIONS", "4"))
WEB_PORT = int(os.environ.get("BENCH_NAIVE_WEB_PORT", "6067"))
TARGET = int(os.environ.get("BENCH_NAIVE_TARGET", "0"))
TOPICS = tuple(
    os.environ.get(
        "BENCH_NAIVE_TOPICS", "crm.logins,crm.orders,crm.tickets,crm.contacts,crm.accounts"
    ).split(",")
)

app = faust.App(
    APP_ID,
    broker=BROKER,
    store="rocksdb://",
    datadir=DATADIR,
    web_host="127.0.0.1",
    web_port=WEB_PORT,
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
    # broker-notes item 2: Tansu makes the first join wait session_timeout / 2
    broker_session_timeout=6,
    broker_heartbeat_interval=1,
    table_standby_replicas=0,
    autodiscover=False,
)

source = app.topic(
    *TOPICS,
    key_type=bytes,
    key_serializer="raw",
    value_serializer="json",
    partitions=PARTITIONS,
)

counts = app.Table("counts", default=int, key_type=str, value_type=int, partitions=PARTITIONS)

progress: dict[str, Any] = {"count": 0, "first_ts": None, "target_ts": None, "target": TARGET}


@app.agent(source)
async def count_events(stream: Any) -> None:
    """Count events per customer: one table write (and one changelog record) per event."""
    async for key, _value in stream.items():
        customer = key.decode()
        counts[customer] = counts[customer] + 1
        progress["count"] += 1
        if progress["first_ts"] is None:
            progress["first_ts"] = time.time()
        if progress["count"] == TARGET:
            progress["target_ts"] = time.time()


@app.page("/bench/progress/")
async def progress_view(web: Any, request: Any) -> Any:
    """Events processed so far and when the first and the target-th were processed."""
    return web.json(progress)
