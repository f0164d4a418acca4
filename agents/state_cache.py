"""Persisted customer states kept decoded between flushes, least recently flushed out first.

A flush writes a partition's dirty states and empties its buffer; without this cache the
customer's next event decodes its state from the table again (and the flush frees every
state object it held). Only clean states are kept: a state is taken out when a batch or a
sweep loads it into the partition's buffer, and put back by the flush that persisted it, so
a cached state always equals what the table holds. A revoked partition's states are dropped
with its buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice

from streams.state import CustomerState


class StateCache:
    """Clean decoded states, at most ``capacity``, the least recently put evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # customer id → (partition, state); a dict keeps the order they were put in
        self._states: dict[str, tuple[int, CustomerState]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def take(self, partition: int, customer_id: str) -> CustomerState | None:
        """Remove and return the customer's cached state (None when not cached)."""
        cached = self._states.pop(customer_id, None)
        if cached is None:
            return None
        if cached[0] != partition:  # not this partition's state: keep it where it was
            self._states[customer_id] = cached
            return None
        return cached[1]

    def put(self, partition: int, states: Mapping[str, CustomerState]) -> None:
        """Keep ``states`` of ``partition``, just persisted, as the most recent; evict the
        least recently put beyond the capacity."""
        if self.capacity <= 0:
            return
        cached = self._states
        for customer_id, state in states.items():
            cached.pop(customer_id, None)  # a newer copy moves to the end
            cached[customer_id] = (partition, state)
        excess = len(cached) - self.capacity
        if excess > 0:
            # one pass over the front: deleting there and looking for the front again is
            # quadratic in a dict
            for customer_id in list(islice(cached, excess)):
                del cached[customer_id]

    def forget(self, partition: int) -> None:
        """Drop a partition's states (revoked: its next owner reads the table)."""
        self._states = {cid: kept for cid, kept in self._states.items() if kept[0] != partition}
