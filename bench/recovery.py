"""How long a worker takes to rebuild its state table from the changelog (the sizing model's
recovery time).

On the embedded broker: synthetic events for ``--customers`` customers are published, a
worker processes them all and stops (SIGTERM: it flushes and commits first); a second worker
of the same application then starts with an empty data directory, as a pod rescheduled on
another node does, and restores every partition's table from the changelog before it
answers ``/readyz`` with 200. Printed: the first worker's start-up to ready with an empty
changelog (the baseline), the second one's, their difference (the recovery), the changelog
records it read, the data directory's size afterwards, and the recovery time scaled to a
million customers (linear in the records read).

Tansu does not compact, so its changelog holds every write (about 0.6 per event here); on a
compacted Kafka topic the records read approach one per customer.

    python -m bench.recovery [--customers 50000] [--events 150000] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.throughput import (
    INPUT_TOPICS,
    OTHER_TOPICS,
    POLL_S,
    build_records,
    check_alive,
    child,
    child_env,
    churnguard_metrics,
    produce,
)
from streams.broker import EmbeddedBroker, ensure_topics, free_port

APP_ID = "bench-recovery"


def is_ready(url: str) -> bool:
    """True once ``/readyz`` answers 200 (503 while assigning or restoring)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def worker_env(
    broker: EmbeddedBroker, data_dir: Path, port: int, partitions: int
) -> dict[str, str]:
    """The worker's settings: this broker, this data directory, event-time clock."""
    return child_env(
        {
            "CHURNGUARD_BROKER": broker.url,
            "CHURNGUARD_DATA_DIR": str(data_dir),
            "CHURNGUARD_WEB_PORT": str(port),
            "CHURNGUARD_WEB_HOST": "127.0.0.1",
            "CHURNGUARD_PARTITIONS": str(partitions),
            "CHURNGUARD_BROKER_SESSION_TIMEOUT_S": "6",
            "CHURNGUARD_BROKER_HEARTBEAT_INTERVAL_S": "1",
            "CHURNGUARD_CLOCK": "event",
            "CHURNGUARD_APP_ID": APP_ID,
        }
    )


def dir_bytes(path: Path) -> int:
    """Bytes of the files below ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Both workers' phases; the figures by name."""
    records = build_records(args.customers, args.events)
    broker = EmbeddedBroker(log_path=workdir / "tansu.log")
    broker.start()
    argv = [sys.executable, "-m", "agents", "worker", "-l", "warn"]
    try:
        asyncio.run(ensure_topics(broker.bootstrap, INPUT_TOPICS + OTHER_TOPICS, args.partitions))
        asyncio.run(produce(broker.bootstrap, records))
        del records
        first_port = free_port()
        first_log = workdir / "first.log"
        env = worker_env(broker, workdir / "first-data", first_port, args.partitions)
        with child(argv, env, first_log) as proc:
            spawned = time.monotonic()
            while not is_ready(f"http://127.0.0.1:{first_port}/readyz"):
                check_alive(proc, "first worker", first_log)
                time.sleep(POLL_S)
            empty_ready = time.monotonic() - spawned
            metrics_url = f"http://127.0.0.1:{first_port}/metrics"
            flushed, stable_since = -1, time.monotonic()
            deadline = time.monotonic() + args.timeout
            while time.monotonic() - stable_since < 3.0:  # all read, last states flushed
                check_alive(proc, "first worker", first_log)
                if time.monotonic() > deadline:
                    raise SystemExit(f"the first worker did not finish in {args.timeout:.0f} s")
                snap = churnguard_metrics(metrics_url)
                if snap is None or snap["done"] < args.events or snap["flushed"] != flushed:
                    flushed = snap["flushed"] if snap else -1
                    stable_since = time.monotonic()
                time.sleep(POLL_S)
        second_port = free_port()
        second_data = workdir / "second-data"
        env = worker_env(broker, second_data, second_port, args.partitions)
        second_log = workdir / "second.log"
        with child(argv, env, second_log) as proc:
            spawned = time.monotonic()
            while not is_ready(f"http://127.0.0.1:{second_port}/readyz"):
                check_alive(proc, "second worker", second_log)
                if time.monotonic() - spawned > args.timeout:
                    raise SystemExit(f"the second worker was not ready in {args.timeout:.0f} s")
                time.sleep(POLL_S)
            restored_ready = time.monotonic() - spawned
        recovery = max(0.0, restored_ready - empty_ready)
        return {
            "customers": args.customers,
            "events": args.events,
            "changelog_records": flushed,
            "empty_ready_s": empty_ready,
            "restored_ready_s": restored_ready,
            "recovery_s": recovery,
            "data_dir_bytes": dir_bytes(second_data),
            "per_million_customers_s": recovery * 1_000_000 / args.customers,
        }
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cg-recovery-") as tmp:
        got = run(args, Path(tmp))
    print(f"customers {got['customers']:,}, events {got['events']:,}, {args.partitions} partitions")
    print(f"changelog records written (all read back) {got['changelog_records']:,}")
    print(f"start-up to ready, empty changelog     {got['empty_ready_s']:8.1f} s")
    print(f"start-up to ready, restoring           {got['restored_ready_s']:8.1f} s")
    print(f"recovery (the difference)              {got['recovery_s']:8.1f} s")
    print(f"data directory after restoring         {got['data_dir_bytes'] / 1e6:8.1f} MB")
    print(f"recovery per million customers          {got['per_million_customers_s']:8.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
