"""A batch of one partition's events through the engine: grouped by customer, in order.

The runtime hands the core whole batches: the events of one partition number, already merged
in event time across the input topics, each with the partition's watermark at its place in
the stream (``not_before``). Customers are independent, so each customer's events are applied
in their order with one state in hand; the outputs are those of applying the events one by
one (tests/test_batch.py), grouped by customer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rules.engine import Engine, Result
from schemas import InputEvent
from streams.state import CustomerState

Timed = tuple[InputEvent, float, str]
"""An event, the watermark it is evaluated no earlier than, and the topic it came from."""


@dataclass
class BatchResult:
    """What a batch did, per customer (only customers that had an event applied)."""

    results: dict[str, list[Result]] = field(default_factory=dict)  # one per applied event
    applied: Counter[str] = field(default_factory=Counter)  # by topic
    duplicates: Counter[str] = field(default_factory=Counter)  # by topic


def group_by_customer(items: Sequence[Timed]) -> dict[str, list[Timed]]:
    """Each customer's events of the batch, in batch order."""
    groups: dict[str, list[Timed]] = {}
    for item in items:
        cid = item[0].customer_id
        group = groups.get(cid)
        if group is None:
            groups[cid] = [item]
        else:
            group.append(item)
    return groups


def apply_batch(
    engine: Engine, states: dict[str, CustomerState], groups: dict[str, list[Timed]]
) -> BatchResult:
    """Apply each customer's events to its state in ``states`` (created when missing)."""
    out = BatchResult()
    results = out.results
    for cid, items in groups.items():
        state = states.get(cid)
        if state is None:
            state = states[cid] = CustomerState(cid)
        applied: list[Result] = []
        for event, not_before, topic in items:
            one = engine.apply(state, event, not_before)
            if one.applied:
                out.applied[topic] += 1
                applied.append(one)
            else:
                out.duplicates[topic] += 1
        if applied:
            results[cid] = applied
    return out
