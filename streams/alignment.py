"""Event-time alignment of one partition number's input topics (pure, no Kafka).

Every input topic of a partition number is a *source*: a queue of records in offset order,
each with its event time. :meth:`Aligner.drain` hands out records in event-time order across
the sources, the way Kafka Streams picks the lowest buffered timestamp of a task's inputs:

* the record taken next is the head with the lowest event time (ties: sources in the order
  they were registered), so within a source the offset order is kept;
* while a source has nothing buffered but the broker still holds unread data for it (it is
  *behind*), nothing is taken: that data may be older than every buffered head;
* a source that has been empty and behind for ``max_idle_s`` stops holding the others back
  (Kafka Streams' ``max.task.idle.ms``): its data, when it comes, is late;
* a source that is caught up (read to the broker's high-water mark) never holds anything back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
UNTIMED = float("-inf")
"""Event time of a record that has none (it cannot be decoded): taken as soon as it heads."""


@dataclass
class _Source(Generic[T]):
    name: str
    rank: int
    queue: deque[tuple[float, T]] = field(default_factory=deque)
    caught_up: bool = False
    empty_since: float | None = None  # when it last ran empty (while behind: idle wait)
    gave_up: bool = False  # its wait ran out during the current empty spell


class Aligner(Generic[T]):
    """Merges the buffered records of one partition number's sources in event-time order."""

    def __init__(self, max_idle_s: float) -> None:
        self.max_idle_s = max_idle_s
        self._sources: dict[str, _Source[T]] = {}
        self.gave_up: list[str] = []  # sources whose wait ran out, since last read

    def source(self, name: str, now: float) -> None:
        """Register a source (an input topic of this partition); it starts empty and behind."""
        if name not in self._sources:
            self._sources[name] = _Source(name, len(self._sources), empty_since=now)

    def remove(self, name: str) -> None:
        """Forget a source and whatever it buffered."""
        self._sources.pop(name, None)

    def add(self, name: str, records: Iterable[tuple[float, T]]) -> None:
        """Append records (event time, item) read from source ``name``, in offset order."""
        src = self._sources[name]
        src.queue.extend(records)
        if src.queue:
            src.empty_since = None
            src.gave_up = False

    def set_caught_up(self, name: str, caught_up: bool) -> None:
        """Whether the source has read everything the broker holds for it."""
        self._sources[name].caught_up = caught_up

    def buffered(self, name: str) -> int:
        """Records of ``name`` waiting to be taken."""
        return len(self._sources[name].queue)

    def head(self, name: str) -> T | None:
        """The next record of ``name``, or None."""
        queue = self._sources[name].queue
        return queue[0][1] if queue else None

    def waiting_on(self, now: float) -> list[str]:
        """Sources that hold the partition back now: empty, behind, and not yet idle."""
        return [
            name
            for name, src in self._sources.items()
            if not src.queue
            and not src.caught_up
            and (src.empty_since is None or now - src.empty_since < self.max_idle_s)
        ]

    def drain(self, now: float, limit: int | None = None) -> list[T]:
        """Take the records that may be processed now, in event-time order (at most ``limit``)."""
        out: list[T] = []
        sources = sorted(self._sources.values(), key=lambda s: s.rank)
        room = float("inf") if limit is None else limit
        while room > 0:
            best: _Source[T] | None = None
            runner_up: _Source[T] | None = None  # the next lowest head: best's run ends there
            for src in sources:
                if src.queue:
                    if best is None or src.queue[0][0] < best.queue[0][0]:
                        best, runner_up = src, best
                    elif runner_up is None or src.queue[0][0] < runner_up.queue[0][0]:
                        runner_up = src
                elif not src.caught_up:
                    if src.empty_since is None:
                        src.empty_since = now
                    if now - src.empty_since < self.max_idle_s:
                        return out  # its unread data may be older than every head
                    if not src.gave_up:
                        src.gave_up = True
                        self.gave_up.append(src.name)
            if best is None:
                return out
            # take best's records up to the runner-up's head (ties go to the lower rank)
            queue = best.queue
            if runner_up is None:
                bound, inclusive = float("inf"), True
            else:
                bound, inclusive = runner_up.queue[0][0], best.rank < runner_up.rank
            while queue and room > 0:
                head = queue[0][0]
                if head > bound or (head == bound and not inclusive):
                    break
                out.append(queue.popleft()[1])
                room -= 1
            if not queue:
                best.empty_since = now
        return out

    def is_idle(self) -> bool:
        """True when nothing is buffered and every source is caught up."""
        return all(src.caught_up and not src.queue for src in self._sources.values())
