"""What rule evaluation adds to per-event processing, with the whole built-in pack.

Pure and in-process (no broker): synthetic traffic is generated, decoded once, then run
through, in the same process and on the same events:

* ``decode``: ``schemas.decode_input`` of the raw JSON (part of per-event processing);
* ``state``: ``streams.state.apply_event`` only — state keeping without rules (the baseline);
* ``engine``: ``Engine.apply`` with the built-in pack, plus what the worker does around it:
  each dirty customer's next deadline at every flush (here: every 500 dirty customers) and
  hourly sweeps of the due customers through a ``DeadlineIndex``.

Printed: µs per event for each, rules cost = engine − state, and the ratios
``rules / state`` and ``rules / (decode + state)`` (the goal: rules add ≤ 30 % to per-event
processing). Each figure is the best of ``--repeat`` runs.

    python -m bench.rules_cost [--customers 2000] [--days 90] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import InputEvent, decode_input
from streams.deadlines import DeadlineIndex
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState, StateConfig, apply_event
from streams.synthetic import generate, plan_customers

START = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = 3600.0
FLUSH_DIRTY = 500


def _best(runs: int, once: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - started)
    return best


def run_state(events: list[InputEvent], config: StateConfig) -> None:
    """State keeping alone."""
    states: dict[str, CustomerState] = {}
    for event in events:
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        apply_event(state, event, config)


def run_engine(events: list[InputEvent], engine: Engine) -> dict[str, int]:
    """The engine as the worker drives it: apply, next deadline, hourly sweeps."""
    states: dict[str, CustomerState] = {}
    index = DeadlineIndex()
    counts = {"outputs": 0, "evaluations": 0, "swept": 0}
    dirty: set[str] = set()
    next_sweep = events[0].occurred_at.timestamp() + HOUR if events else 0.0
    for event in events:
        ts = event.occurred_at.timestamp()
        while ts >= next_sweep:
            for customer_id in index.pop_due(next_sweep):
                state = states[customer_id]
                result = engine.advance(state, next_sweep)
                counts["outputs"] += len(result.outputs)
                counts["evaluations"] += result.evaluations
                counts["swept"] += 1
                index.set(customer_id, engine.next_deadline(state))
            next_sweep += HOUR
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        result = engine.apply(state, event)
        counts["outputs"] += len(result.outputs)
        counts["evaluations"] += result.evaluations
        dirty.add(event.customer_id)
        if len(dirty) >= FLUSH_DIRTY:  # the worker's flush: one deadline per dirty customer
            for customer_id in dirty:
                index.set(customer_id, engine.next_deadline(states[customer_id]))
            dirty.clear()
    return counts


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000, help="synthetic customers")
    parser.add_argument("--days", type=int, default=90, help="simulated days of traffic")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--packs", type=Path, nargs="*", default=[BUILTIN_PACKS])
    args = parser.parse_args(argv)

    records = list(generate(plan_customers(args.customers), start=START, days=args.days))
    raw = [(r.topic_kind, orjson.dumps(r.value)) for r in records]
    events = [decode_input(kind, value) for kind, value in raw]
    n = len(events)
    config = EngineConfig()
    rules = load_rules(args.packs)

    decode_s = _best(args.repeat, lambda: [decode_input(k, v) for k, v in raw])
    state_s = _best(args.repeat, lambda: run_state(events, config.state))
    counts: dict[str, int] = {}

    def engine_once() -> None:
        counts.update(run_engine(events, Engine(rules, config, wall_clock=lambda: 0.0)))

    engine_s = _best(args.repeat, engine_once)
    rules_s = engine_s - state_s
    per = 1e6 / n
    print(f"events: {n:,} from {args.customers:,} customers over {args.days} days")
    print(f"rules: {len(rules.rules)} ({', '.join(r.id for r in rules.rules)})")
    print(
        f"rule evaluations: {counts['evaluations']:,} ({counts['evaluations'] / n:.2f}/event), "
        f"sweep wake-ups: {counts['swept']:,}, outputs: {counts['outputs']:,}"
    )
    print(f"decode        {decode_s * per:8.2f} µs/event")
    print(f"state         {state_s * per:8.2f} µs/event   (baseline)")
    print(f"engine        {engine_s * per:8.2f} µs/event   (state + rules + deadlines + sweeps)")
    print(f"rules cost    {rules_s * per:8.2f} µs/event")
    print(f"ratio rules/state            {rules_s / state_s:6.2f}")
    print(f"ratio rules/(decode+state)   {rules_s / (decode_s + state_s):6.2f}   (goal ≤ 0.30)")


if __name__ == "__main__":
    main()
