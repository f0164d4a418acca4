"""Tests of the per-partition deadline index (streams.deadlines)."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.deadlines import DeadlineIndex


def test_pop_due_returns_only_due_customers_in_deadline_order() -> None:
    index = DeadlineIndex()
    index.set("c", 30.0)
    index.set("a", 10.0)
    index.set("late", 100.0)
    index.set("b", 20.0)
    index.set("edge", 50.0)
    assert index.peek() == 10.0
    assert index.pop_due(50.0) == ["a", "b", "c", "edge"]  # deadline == now is due
    assert len(index) == 1
    assert index.pop_due(99.9) == []
    assert index.peek() == 100.0
    assert index.pop_due(1e9) == ["late"]
    assert len(index) == 0
    assert index.peek() is None
    assert index.pop_due(1e9) == []


def test_pop_due_respects_limit() -> None:
    index = DeadlineIndex()
    for i in range(10):
        index.set(f"c{i}", float(i))
    assert index.pop_due(100.0, limit=3) == ["c0", "c1", "c2"]
    assert index.pop_due(100.0, limit=0) == []
    assert index.pop_due(100.0) == [f"c{i}" for i in range(3, 10)]


def test_resetting_a_deadline_replaces_the_old_one() -> None:
    index = DeadlineIndex()
    index.set("a", 10.0)
    index.set("b", 15.0)
    index.set("a", 20.0)  # later
    assert len(index) == 2
    assert index.peek() == 15.0
    assert index.pop_due(12.0) == []  # a's old deadline is gone
    assert index.pop_due(20.0) == ["b", "a"]
    assert index.pop_due(1e9) == []  # no duplicate pop

    index.set("a", 50.0)
    index.set("a", 5.0)  # earlier
    assert index.pop_due(5.0) == ["a"]
    assert index.pop_due(1e9) == []


def test_resetting_to_a_previous_deadline_pops_once() -> None:
    index = DeadlineIndex()
    index.set("a", 10.0)
    index.set("a", 20.0)
    index.set("a", 10.0)
    index.set("a", 10.0)
    assert len(index) == 1
    assert index.pop_due(30.0) == ["a"]
    index.set("a", 20.0)
    assert index.pop_due(30.0) == ["a"]
    assert index.pop_due(30.0) == []


def test_set_none_removes() -> None:
    index = DeadlineIndex()
    index.set("a", 10.0)
    index.set("b", 20.0)
    index.set("a", None)
    index.set("never-set", None)
    assert len(index) == 1
    assert index.peek() == 20.0
    assert index.pop_due(100.0) == ["b"]
    index.set("a", 30.0)  # can be scheduled again after removal
    assert index.pop_due(100.0) == ["a"]


def test_heap_is_compacted_under_churn() -> None:
    index = DeadlineIndex()
    for step in range(20_000):
        index.set(f"c{step % 10}", float(step))
    assert len(index) == 10
    assert len(index._heap) <= 4 * len(index) + 1024 + 1
    assert index.pop_due(1e9) == [f"c{i}" for i in range(10)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([f"c{i}" for i in range(8)]),
            st.none() | st.integers(0, 50).map(float),
        ),
        max_size=60,
    ),
    st.integers(-1, 55).map(float),
)
def test_matches_a_dict_model(ops: list[tuple[str, float | None]], now: float) -> None:
    index = DeadlineIndex()
    model: dict[str, float] = {}
    for customer, deadline in ops:
        index.set(customer, deadline)
        if deadline is None:
            model.pop(customer, None)
        else:
            model[customer] = deadline
    assert len(index) == len(model)
    assert index.peek() == (min(model.values()) if model else None)
    due = index.pop_due(now)
    assert sorted(due) == sorted(c for c, d in model.items() if d <= now)
    assert [model[c] for c in due] == sorted(model[c] for c in due)
    assert len(due) == len(set(due))
    rest = index.pop_due(1e9)
    assert sorted(rest) == sorted(c for c, d in model.items() if d > now)


def test_million_customers_thousand_due() -> None:
    rng = random.Random(7)
    customers = 1_000_000
    due_ids = set(rng.sample(range(customers), 1000))
    now = 1_700_000_000.0
    index = DeadlineIndex()
    started = time.perf_counter()
    for i in range(customers):
        offset = -rng.random() * 3600 if i in due_ids else 1 + rng.random() * 86400
        index.set(f"cust-{i}", now + offset)
    popped_at = time.perf_counter()
    due = index.pop_due(now)
    popped = time.perf_counter() - popped_at
    elapsed = time.perf_counter() - started
    assert len(due) == 1000
    assert set(due) == {f"cust-{i}" for i in due_ids}
    assert len(index) == customers - 1000
    assert index.pop_due(now) == []
    assert popped < 0.5  # touches only the due customers
    assert elapsed < 30
