"""The engine alone on the throughput benchmark's events, for instruction counts.

    python -m bench.compiled engine_mix [--customers 4000] [--events 20000] [--flush 1000]

The events of ``bench.throughput`` (same generator, start and seed), decoded and sorted by
time, go through the engine with the built-in packs and scoring as the worker drives it
(``bench.rules_cost.run_engine``: ``Engine.apply``, the next deadline of every dirty customer
each ``--flush`` dirty customers, hourly sweeps in event time). Printed: µs per event and the
counts of snapshots, outputs, rule evaluations and sweeps, which must not move when a change
is only about speed.

Timings on a shared machine drift; instruction counts do not. To count the compiled
engine's instructions (about two minutes)::

    valgrind --tool=callgrind --callgrind-out-file=mix.cg \\
      --toggle-collect='CPyPy_engine___Engine___apply' \\
      --toggle-collect='CPyPy_engine___Engine___advance' \\
      --toggle-collect='CPyPy_engine___Engine___next_deadline' \\
      .venv/bin/python -m bench.compiled engine_mix
    callgrind_annotate --inclusive=yes --tree=calling mix.cg | less

docs/performance.md keeps the counts.
"""

from __future__ import annotations

import argparse
import time

import orjson

from bench.rules_cost import run_engine
from bench.throughput import SEED, START
from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import decode_input
from streams.gc_tuning import tune_gc
from streams.settings import BUILTIN_PACKS, Settings
from streams.synthetic import generate_events


def main(argv: list[str] | None = None) -> None:
    """Run the mix once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=4000, help="distinct customers")
    parser.add_argument("--events", type=int, default=20_000, help="events")
    parser.add_argument(
        "--flush", type=int, default=1000, help="dirty customers between deadline rounds"
    )
    args = parser.parse_args(argv)
    records = generate_events(args.customers, args.events, start=START, seed=SEED)
    events = [decode_input(r.topic_kind, orjson.dumps(r.value)) for r in records]
    events.sort(key=lambda e: e.occurred_at)
    tune_gc(Settings().gc_gen0_threshold)  # as the worker does
    engine = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    started = time.perf_counter()
    counts = run_engine(events, engine, args.flush)
    per_event_us = (time.perf_counter() - started) * 1e6 / max(1, len(events))
    print(f"{len(events):,} events of {args.customers:,} customers: {per_event_us:.1f} µs/event")
    print(", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
