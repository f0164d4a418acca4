"""Quix Streams doing the naive Faust app's work (stage q of bench.throughput).

A standalone script, run as a subprocess by ``bench.quix_stage.run_quix``::

    python -m bench.quix_app --broker HOST:PORT --topics t1,t2,... --events N \\
        --state-dir DIR --group G --result FILE

One Quix Streams ``Application`` (at-least-once, ``auto_offset_reset="earliest"``, RocksDB
state in DIR, changelog topics on — Quix's defaults) reads every input topic with the
value deserialised from JSON and the key as ``str``. Like ``bench.naive_faust_app`` (one
agent over all topics, one table keyed by customer), the topics' dataframes are concatenated
into one, so there is one state store over all of them (``--merge concat``; ``--merge
separate`` keeps one dataframe and store per topic instead, which skips Quix's partition
time alignment of concatenated topics). Per event: one state read and one state write of
the customer's ``[count, sum of "amount"]``.

Two consumer settings differ from Quix's defaults, both for this broker (Tansu): a 6 s
session timeout (the first group join waits half of it: ~3 s instead of ~23 s with the 45 s
default; the naive Faust app uses 6 s too), and a 20 ms ``consumer_poll_timeout`` instead of
1 s (``--poll-timeout``; the buffered reads of concatenated topics otherwise wait out most of
each timeout: ~8,000 instead of ~40,000 events/s).

Progress is counted per processed message (``on_message_processed``), never from end
offsets (broker-notes deviation 1). At the first message and at the N-th it records
``time.time()``; at the N-th it stops the app, which then commits its last checkpoint. The
result is written as JSON to FILE once the app has stopped::

    {"first": t_1, "last": t_N, "processed": N, "stopped": t_after_final_commit, ...}

``quixstreams`` comes with the ``bench`` extra (``pip install '.[bench]'``); the packages
never import it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.time()  # before the heavy imports, for the start-up breakdown

from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)
from quixstreams import Application, State  # noqa: E402

IMPORTED = time.time()

# Quix derives its changelog topics' configs from the input topics' and needs "retention.ms"
# there (KeyError otherwise); "retention.bytes" is optional (-1 when absent, quixstreams
# 3.28). Tansu returns no configs at all for topics created without explicit ones
# (broker-notes deviation 6), so those get explicit values before the app starts.
REQUIRED_CONFIGS = {"retention.ms": "604800000", "retention.bytes": "-1"}


def ensure_topic_configs(broker: str, topics: list[str], timeout: float = 30.0) -> list[str]:
    """Give input topics that lack them explicit retention configs; returns those altered."""
    admin = AdminClient({"bootstrap.servers": broker})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    altered = []
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        configs = future.result(timeout)
        if "retention.ms" in configs:
            continue
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in REQUIRED_CONFIGS.items()
        ]
        target = ConfigResource(
            ConfigResource.Type.TOPIC, resource.name, incremental_configs=entries
        )
        for done in admin.incremental_alter_configs([target], request_timeout=timeout).values():
            done.result(timeout)
        altered.append(resource.name)
    return altered


def count_and_sum(value: dict[str, Any], state: State[str, Any]) -> None:
    """Per customer: events and the sum of "amount" (0 when absent), one read + one write."""
    amount = value.get("amount")
    count, total = state.get("totals", (0, 0.0))
    state.set("totals", (count + 1, total + (float(amount) if amount is not None else 0.0)))


class Progress:
    """Counts processed messages; times the first and the N-th and stops the app at N."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.processed = 0
        self.first: float | None = None
        self.last: float | None = None
        self.app: Application | None = None

    def on_processed(self, topic: str, partition: int, offset: int) -> None:
        self.processed += 1
        if self.processed == 1:
            self.first = time.time()
        if self.processed == self.target:
            self.last = time.time()
            if self.app is not None:
                self.app.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_app", description=__doc__)
    parser.add_argument("--broker", required=True, help="bootstrap HOST:PORT")
    parser.add_argument("--topics", required=True, help="comma-separated input topics")
    parser.add_argument("--events", type=int, required=True, help="stop after N messages")
    parser.add_argument("--state-dir", type=Path, required=True, help="RocksDB state dir")
    parser.add_argument("--group", required=True, help="consumer group (names the changelogs)")
    parser.add_argument("--result", type=Path, required=True, help="write the JSON result here")
    parser.add_argument(
        "--merge",
        choices=("concat", "separate"),
        default="concat",
        help="concat: one dataframe and state store over all topics (like the naive Faust "
        "app's one table); separate: one per topic (default concat)",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="consumer session.timeout.ms; Tansu makes the first join wait half of it "
        "(broker-notes item 2; the naive Faust app uses 6 s too; default 6000)",
    )
    parser.add_argument(
        "--poll-timeout",
        type=float,
        default=0.02,
        help="Application consumer_poll_timeout in seconds (Quix's default is 1.0). With "
        "concatenated topics Quix reads through a buffer, consume(10,000 messages, this "
        "timeout), and on the embedded broker nearly every call waits the whole timeout: "
        "about 8,000 events/s at 1.0 against about 40,000 at 0.02 (default 0.02)",
    )
    parser.add_argument("--loglevel", default="INFO", help="Quix log level (default INFO)")
    args = parser.parse_args(argv)
    args.topic_list = [t for t in args.topics.split(",") if t]
    if args.events < 1 or not args.topic_list:
        parser.error("--events must be positive and --topics non-empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    altered = ensure_topic_configs(args.broker, args.topic_list)
    progress = Progress(args.events)
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        state_dir=args.state_dir,
        use_changelog_topics=True,
        consumer_extra_config={
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(100, min(1000, args.session_timeout_ms // 3)),
        },
        on_message_processed=progress.on_processed,
        consumer_poll_timeout=args.poll_timeout,
        loglevel=args.loglevel,
    )
    progress.app = app
    dataframes = [
        app.dataframe(app.topic(name, key_deserializer="str", value_deserializer="json"))
        for name in args.topic_list
    ]
    if args.merge == "concat":
        dataframes = [functools.reduce(lambda a, b: a.concat(b), dataframes)]
    for sdf in dataframes:
        sdf.update(count_and_sum, stateful=True)
    run_at = time.time()
    app.run()
    stopped = time.time()
    result = {
        "first": progress.first,
        "last": progress.last,
        "processed": progress.processed,
        "stopped": stopped,
        "started": STARTED,
        "imported": IMPORTED,
        "run_at": run_at,
        "merge": args.merge,
        "altered_topics": altered,
    }
    tmp = args.result.with_name(args.result.name + ".tmp")
    tmp.write_text(json.dumps(result) + "\n")
    tmp.replace(args.result)
    return 0 if progress.last is not None else 1


if __name__ == "__main__":
    sys.exit(main())
