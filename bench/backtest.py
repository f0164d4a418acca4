"""Backtest events/s against the worker's end-to-end events/s, on the same events, in one run.

* ``backtest``: the synthetic events of ``bench.throughput`` (same generator, seed, customers)
  written as a JSON-lines history file, then ``streams.history.read_all`` (read, decode,
  sort) and ``rules.backtest.run_backtest`` (the engine in-process with daily sweeps), timed
  end to end; best of ``--repeat``;
* ``worker``: stage (c) of ``bench.throughput`` — the same events produced to an embedded
  Tansu broker, then ``churnguard worker`` timed from its first processed event to the last
  (skip with ``--skip-worker`` and give ``--worker-rate`` from an earlier run instead);
* ``cdnow`` (with ``--cdnow``): CDNOW end to end as ``churnguard backtest`` runs it
  (calibration to 1997-09-30), timed, with and without scoring.

Printed: events/s of each and the ratio backtest / worker (goal: at least 10).

    python -m bench.backtest [--events 100000] [--customers 20000] [--cdnow] [--skip-worker]
"""

from __future__ import annotations

import argparse
import gc
import importlib.resources
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from rules.backtest import run_backtest
from rules.engine import Engine, EngineConfig
from rules.loader import RuleSet, load_rules
from streams.gc_tuning import tune_gc
from streams.history import Problems, read_all
from streams.settings import BUILTIN_PACKS, Settings
from streams.synthetic import generate_events

CDNOW_END = datetime(1997, 10, 1, tzinfo=UTC).timestamp()


def write_history(path: Path, customers: int, events: int) -> int:
    """The throughput bench's synthetic events as a JSON-lines history (with a kind field)."""
    from bench.throughput import SEED, START

    count = 0
    with path.open("wb") as out:
        for record in generate_events(customers, events, start=START, seed=SEED):
            out.write(orjson.dumps({**record.value, "kind": record.topic_kind}) + b"\n")
            count += 1
    return count


def backtest_seconds(specs: list[str], until: float | None, scoring: bool) -> tuple[float, int]:
    """Seconds to read, sort and backtest the history end to end, and the events run."""
    settings = Settings()
    gc.collect()
    started = time.perf_counter()
    events = read_all(specs, Problems())
    rules = load_rules([BUILTIN_PACKS])
    if not scoring:
        rules = RuleSet(rules.rules, rules.fingerprint, scoring=None)
    # as `churnguard backtest` runs it: no snapshots, alert texts or task events
    config = EngineConfig(state=settings.state_config, snapshots=False, texts=False)
    engine = Engine(rules, config, wall_clock=lambda: 0.0)
    tune_gc(settings.gc_gen0_threshold)  # as `churnguard backtest` does
    end = until if until is not None else events[-1].occurred_at.timestamp() + 1.0
    run = run_backtest(engine, events, until=end)
    return time.perf_counter() - started, run.applied + run.duplicates


def worker_rate(history_events: int, args: argparse.Namespace, workdir: Path) -> float | None:
    """Stage (c) of bench.throughput on the same events: the worker's events/s."""
    import asyncio

    from bench import throughput as tp
    from streams.broker import EmbeddedBroker, ensure_topics

    targs = tp.parse_args(
        [
            "--events",
            str(history_events),
            "--customers",
            str(args.customers),
            "--partitions",
            str(args.partitions),
            "--timeout",
            str(args.timeout),
        ]
    )
    records = tp.build_records(args.customers, targs.produced)
    broker = EmbeddedBroker(log_path=workdir / "tansu.log")
    broker.start()
    try:
        asyncio.run(
            ensure_topics(broker.bootstrap, tp.INPUT_TOPICS + tp.OTHER_TOPICS, args.partitions)
        )
        tp.run_bounded(tp.produce(broker.bootstrap, records), args.timeout, "produce")
        stage = tp.run_churnguard(broker, targs, workdir)
    finally:
        broker.stop()
    return stage.rate


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.backtest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=100_000, help="synthetic events")
    parser.add_argument("--customers", type=int, default=20_000, help="synthetic customers")
    parser.add_argument("--partitions", type=int, default=4, help="worker stage partitions")
    parser.add_argument("--repeat", type=int, default=1, help="backtest runs (best is kept)")
    parser.add_argument("--timeout", type=float, default=900.0, help="worker stage limit (s)")
    parser.add_argument("--skip-worker", action="store_true", help="no broker, no worker stage")
    parser.add_argument("--worker-rate", type=float, help="worker events/s from an earlier run")
    parser.add_argument("--cdnow", action="store_true", help="also time CDNOW end to end")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="churnguard-bench-backtest-") as tmp:
        workdir = Path(tmp)
        history = workdir / "history.jsonl"
        n = write_history(history, args.customers, args.events)
        best = min(backtest_seconds([str(history)], None, True)[0] for _ in range(args.repeat))
        rate = n / best
        print(f"history: {n:,} synthetic events of {args.customers:,} customers")
        print(f"backtest      {rate:10,.0f} events/s  ({best:.1f} s end to end, scoring on)")
        worker = args.worker_rate
        if worker is None and not args.skip_worker:
            worker = worker_rate(n, args, workdir)
        if worker:
            ratio = rate / worker
            verdict = "PASS" if ratio >= 10 else "FAIL"
            print(f"worker        {worker:10,.0f} events/s  (bench.throughput stage c)")
            print(f"ratio backtest/worker {ratio:6.2f}   (goal >= 10: {verdict})")
        if args.cdnow:
            resource = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
            with importlib.resources.as_file(resource) as path:
                spec = [f"cdnow:{path}"]
                for scoring in (True, False):
                    took, ran = backtest_seconds(spec, CDNOW_END, scoring)
                    print(
                        f"cdnow         {ran / took:10,.0f} events/s  ({took:.1f} s end to "
                        f"end, {ran:,} events, scoring {'on' if scoring else 'off'})"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
