"""The engine alone on the throughput benchmark's events, for instruction counts.

    python -m bench.compiled engine_mix [--customers 4000] [--events 20000] [--flush 1000]

The events of ``bench.throughput`` (same generator, start and seed), decoded and sorted by
time, go through ``Engine.apply`` with the built-in packs and scoring as the worker drives
it: the next deadline of every dirty customer each ``--flush`` dirty customers, and hourly
sweeps (in event time) of the customers due. Printed: µs per event for the whole run,
``apply``, the deadlines at flush and the sweeps, and the counts of snapshots, outputs and
rule evaluations, which must not move when a change is only about speed.

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

from bench.throughput import SEED, START
from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import decode_input
from streams.deadlines import DeadlineIndex
from streams.gc_tuning import tune_gc
from streams.settings import BUILTIN_PACKS, Settings
from streams.state import CustomerState
from streams.synthetic import generate_events

HOUR = 3600.0


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
    states: dict[str, CustomerState] = {}
    index = DeadlineIndex()
    dirty: set[str] = set()
    counts = {"snapshots": 0, "outputs": 0, "evaluations": 0, "swept": 0}
    apply_s = deadline_s = sweep_s = 0.0
    next_sweep = events[0].occurred_at.timestamp() + HOUR if events else 0.0
    clock = time.perf_counter
    started = clock()
    for event in events:
        ts = event.occurred_at.timestamp()
        while ts >= next_sweep:
            t0 = clock()
            for customer_id in index.pop_due(next_sweep):
                state = states[customer_id]
                result = engine.advance(state, next_sweep)
                counts["snapshots"] += len(result.snapshots)
                counts["outputs"] += len(result.outputs)
                counts["evaluations"] += result.evaluations
                counts["swept"] += 1
                index.set(customer_id, engine.next_deadline(state))
            sweep_s += clock() - t0
            next_sweep += HOUR
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        t0 = clock()
        result = engine.apply(state, event)
        apply_s += clock() - t0
        counts["snapshots"] += len(result.snapshots)
        counts["outputs"] += len(result.outputs)
        counts["evaluations"] += result.evaluations
        dirty.add(event.customer_id)
        if len(dirty) >= args.flush:
            t0 = clock()
            for customer_id in dirty:
                index.set(customer_id, engine.next_deadline(states[customer_id]))
            deadline_s += clock() - t0
            dirty.clear()
    total_s = clock() - started
    per = 1e6 / max(1, len(events))
    print(
        f"{len(events):,} events of {len(states):,} customers: {total_s * per:.1f} µs/event "
        f"(apply {apply_s * per:.1f}, deadlines at flush {deadline_s * per:.1f}, "
        f"sweeps {sweep_s * per:.1f})"
    )
    print(", ".join(f"{name} {n:,}" for name, n in counts.items()))


if __name__ == "__main__":
    main()
