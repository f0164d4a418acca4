"""Per-partition index of each customer's next deadline, so a sweep touches only due customers."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class DeadlineIndex:
    """Earliest-deadline-first index of one partition's customers (lazy deletion heap)."""

    _heap: list[tuple[float, str]] = field(default_factory=list)
    _due: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._due)

    def set(self, customer_id: str, deadline: float | None) -> None:
        """Record the customer's next deadline (None: nothing scheduled)."""
        if deadline is None:
            self._due.pop(customer_id, None)
            return
        if self._due.get(customer_id) == deadline:
            return
        self._due[customer_id] = deadline
        heapq.heappush(self._heap, (deadline, customer_id))
        if len(self._heap) > 4 * len(self._due) + 1024:
            self._compact()

    def items(self) -> list[tuple[str, float]]:
        """Every scheduled (customer id, deadline)."""
        return list(self._due.items())

    def pop_due(self, now: float, limit: int | None = None) -> list[str]:
        """Remove and return customers whose deadline is at or before ``now``, earliest first."""
        out: list[str] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            deadline, customer_id = heapq.heappop(heap)
            if due.get(customer_id) == deadline:
                del due[customer_id]
                out.append(customer_id)
        return out

    def peek(self) -> float | None:
        """The earliest live deadline, or None."""
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _compact(self) -> None:
        self._heap = [(d, c) for c, d in self._due.items()]
        heapq.heapify(self._heap)
