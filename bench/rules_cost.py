"""What rule evaluation and scoring add to per-event processing, with the built-in packs.

Pure and in-process (no broker): synthetic traffic is generated, decoded once, then run
through, in the same process and on the same events:

* ``decode``: ``schemas.decode_input`` of the raw JSON (part of per-event processing);
* ``state``: ``streams.state.apply_event`` only — state keeping without rules (the baseline);
* ``engine``: ``Engine.apply`` with the built-in pack, plus what the worker does around it:
  each dirty customer's next deadline at every flush (here: every 500 dirty customers) and
  hourly sweeps of the due customers through a ``DeadlineIndex``;
* ``scored``: the same with scoring (RFM, CLV when ``--clv-model`` is given, lifecycle stage,
  health, tier, snapshots) — ``engine`` runs the same rules without it.

Printed: µs per event for each, rules cost = engine − state, scoring cost = scored − engine,
and the ratios ``rules / state``, ``rules / (decode + state)`` (goal: rules add ≤ 30 %) and
``scoring / (decode + engine)`` (goal: scoring adds ≤ 20 % to per-event processing). Each
figure is the best of ``--repeat`` runs.

    python -m bench.rules_cost [--customers 2000] [--days 90] [--repeat 3] [--clv-model F]
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
from rules.loader import RuleSet, load_rules
from schemas import InputEvent, decode_input
from streams.clv import load_model
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


def run_engine(
    events: list[InputEvent], engine: Engine, flush_dirty: int = FLUSH_DIRTY
) -> dict[str, int]:
    """The engine as the worker drives it: apply, next deadline of each dirty customer every
    ``flush_dirty`` of them, hourly sweeps."""
    states: dict[str, CustomerState] = {}
    index = DeadlineIndex()
    counts = {"outputs": 0, "evaluations": 0, "swept": 0, "snapshots": 0}
    dirty: set[str] = set()
    next_sweep = events[0].occurred_at.timestamp() + HOUR if events else 0.0
    for event in events:
        ts = event.occurred_at.timestamp()
        while ts >= next_sweep:
            for customer_id in index.pop_due(next_sweep):
                state = states[customer_id]
                result = engine.advance(state, next_sweep)
                counts["outputs"] += len(result.outputs)
                counts["snapshots"] += len(result.snapshots)
                counts["evaluations"] += result.evaluations
                counts["swept"] += 1
                index.set(customer_id, engine.next_deadline(state))
            next_sweep += HOUR
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        result = engine.apply(state, event)
        counts["outputs"] += len(result.outputs)
        counts["snapshots"] += len(result.snapshots)
        counts["evaluations"] += result.evaluations
        dirty.add(event.customer_id)
        if len(dirty) >= flush_dirty:  # the worker's flush: one deadline per dirty customer
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
    parser.add_argument("--clv-model", type=Path, help="a `churnguard fit` parameter file")
    args = parser.parse_args(argv)

    records = list(generate(plan_customers(args.customers), start=START, days=args.days))
    raw = [(r.topic_kind, orjson.dumps(r.value)) for r in records]
    events = [decode_input(kind, value) for kind, value in raw]
    n = len(events)
    model = load_model(args.clv_model) if args.clv_model else None
    config = EngineConfig(clv_model=model)
    scored_rules = load_rules(args.packs)
    rules = RuleSet(scored_rules.rules, scored_rules.fingerprint, scoring=None)

    decode_s = _best(args.repeat, lambda: [decode_input(k, v) for k, v in raw])
    state_s = _best(args.repeat, lambda: run_state(events, config.state))
    counts: dict[str, int] = {}

    def engine_once() -> None:
        counts.update(run_engine(events, Engine(rules, config, wall_clock=lambda: 0.0)))

    engine_s = _best(args.repeat, engine_once)
    scored_counts: dict[str, int] = {}

    def scored_once() -> None:
        scored_counts.update(
            run_engine(events, Engine(scored_rules, config, wall_clock=lambda: 0.0))
        )

    scored_s = _best(args.repeat, scored_once)
    rules_s = engine_s - state_s
    scoring_s = scored_s - engine_s
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
    print(
        f"with scoring: evaluations {scored_counts['evaluations']:,}, sweep wake-ups "
        f"{scored_counts['swept']:,}, snapshots {scored_counts['snapshots']:,}, "
        f"CLV model: {'yes' if model else 'no'}"
    )
    print(f"scored        {scored_s * per:8.2f} µs/event   (engine + scoring + snapshots)")
    print(f"scoring cost  {scoring_s * per:8.2f} µs/event")
    ratio = scoring_s / (decode_s + engine_s)
    verdict = "PASS" if ratio <= 0.20 else "FAIL"
    print(f"ratio scoring/(decode+engine) {ratio:6.2f}   (goal ≤ 0.20: {verdict})")


if __name__ == "__main__":
    main()
