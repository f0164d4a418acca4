"""The batch path (rules/batch.py) against the engine event by event.

Synthetic traffic with replays (duplicates) and late events is cut at random batch
boundaries; between batches both paths flush (next deadline per dirty customer into a
deadline index) and sweep the due customers, as the worker does. Per customer, the outputs
(alert ids, fired_at, resolved_at, tasks), the snapshots and the final state bytes must be
the same.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.batch import Timed, apply_batch, group_by_customer
from rules.engine import Engine, EngineConfig, Result
from rules.loader import RuleSet, load_rules
from schemas import InputEvent, decode_input
from streams.deadlines import DeadlineIndex
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState
from streams.synthetic import generate_events

START = datetime(2025, 3, 3, tzinfo=UTC)
LATENESS = 300.0


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules([BUILTIN_PACKS])


def _stream(seed: int, customers: int, events: int) -> list[tuple[InputEvent, str]]:
    """Synthetic events in time order with some replays and some late events mixed in."""
    rng = random.Random(seed)
    records = list(generate_events(customers, events, start=START, seed=seed))
    out = [(decode_input(r.topic_kind, orjson.dumps(r.value)), r.topic_kind) for r in records]
    for _ in range(len(out) // 20):  # replays: an earlier event read again
        i = rng.randrange(len(out))
        out.insert(rng.randrange(i, len(out) + 1), out[i])
    for _ in range(len(out) // 30):  # late: an event moved behind later ones
        i = rng.randrange(len(out))
        j = min(len(out), i + rng.randint(1, 60))
        out.insert(j, out.pop(i))
    return out


def _timed(stream: list[tuple[InputEvent, str]]) -> list[Timed]:
    """Each event with the watermark before it (max event time seen minus the lateness)."""
    out: list[Timed] = []
    newest = float("-inf")
    for event, topic in stream:
        mark = newest - LATENESS
        out.append((event, mark if mark > 0 else 0.0, topic))
        newest = max(newest, event.occurred_at.timestamp())
    return out


class Run:
    """One path's states, index and outputs per customer."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.engine = Engine(ruleset, EngineConfig(), wall_clock=lambda: 0.0)
        self.states: dict[str, CustomerState] = {}
        self.index = DeadlineIndex()
        self.dirty: set[str] = set()
        self.outputs: dict[str, list[Any]] = {}

    def note(self, cid: str, result: Result) -> None:
        self.dirty.add(cid)
        shown = self.outputs.setdefault(cid, [])
        shown += [o.model_dump(mode="json") for o in result.outputs]
        shown += [orjson.loads(s.to_bytes()) for s in result.snapshots]

    def flush_and_sweep(self, now: float) -> None:
        for cid in sorted(self.dirty):
            self.index.set(cid, self.engine.next_deadline(self.states[cid]))
        self.dirty.clear()
        for cid in self.index.pop_due(now):
            self.note(cid, self.engine.advance(self.states[cid], now))

    def final(self) -> tuple[dict[str, list[Any]], dict[str, bytes]]:
        return self.outputs, {cid: s.to_bytes() for cid, s in sorted(self.states.items())}


def _one_by_one(ruleset: RuleSet, timed: list[Timed], cuts: list[int]) -> Run:
    run = Run(ruleset)
    for lo, hi in pairwise(cuts):
        for event, not_before, _ in timed[lo:hi]:
            state = run.states.setdefault(event.customer_id, CustomerState(event.customer_id))
            result = run.engine.apply(state, event, not_before)
            if result.applied:
                run.note(event.customer_id, result)
        run.flush_and_sweep(max(nb for _, nb, _ in timed[lo:hi]))
    return run


def _batched(ruleset: RuleSet, timed: list[Timed], cuts: list[int]) -> Run:
    run = Run(ruleset)
    for lo, hi in pairwise(cuts):
        batch = apply_batch(run.engine, run.states, group_by_customer(timed[lo:hi]))
        for cid, results in batch.results.items():
            for result in results:
                run.note(cid, result)
        run.flush_and_sweep(max(nb for _, nb, _ in timed[lo:hi]))
    return run


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), data=st.data())
def test_batches_give_the_outputs_and_states_of_one_event_at_a_time(
    ruleset: RuleSet, seed: int, data: st.DataObject
) -> None:
    timed = _timed(_stream(seed, customers=30, events=600))
    inner = data.draw(
        st.lists(st.integers(1, len(timed) - 1), unique=True, max_size=40).map(sorted),
        label="batch boundaries",
    )
    cuts = [0, *inner, len(timed)]
    expected = _one_by_one(ruleset, timed, cuts).final()
    got = _batched(ruleset, timed, cuts).final()
    assert got[1] == expected[1]  # final state bytes, customer by customer
    assert got[0] == expected[0]  # alerts, tasks and snapshots, in order per customer
    assert any(out for out in expected[0].values())  # the stream does fire something


def test_batch_counts_applied_and_duplicates_by_topic(ruleset: RuleSet) -> None:
    timed = _timed(_stream(3, customers=5, events=120))
    engine = Engine(ruleset, EngineConfig(), wall_clock=lambda: 0.0)
    states: dict[str, CustomerState] = {}
    first = apply_batch(engine, states, group_by_customer(timed))
    again = apply_batch(engine, states, group_by_customer(timed))
    assert sum(first.applied.values()) + sum(first.duplicates.values()) == len(timed)
    assert sum(first.applied.values()) == len({e.event_id for e, _, _ in timed})
    assert not again.applied and sum(again.duplicates.values()) == len(timed)
    assert not again.results
